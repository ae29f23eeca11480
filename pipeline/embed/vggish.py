"""VGGish (Hershey et al., 2017), the AudioSet audio network of seed 002's audio branch.

Two geometries of one network (conv blocks 64-128-256-512 of 3x3 convolutions with ReLU, a
2x2 max-pool after the 64, 128, second 256 and second 512 convolution; then FC 4096-4096-128,
each with ReLU):

- ``official`` (:class:`VGGish` with ``sequence=False``): the released model. Input: examples
  of 96 frames x 64 log-mel bands (0.96 s; 25 ms windows, 10 ms hop, 125-7500 Hz), one 128-d
  embedding per example. This is the geometry of the AudioSet weights.
- ``sequence`` (``sequence=True``): seed 002's variant (Schoneveld et al., 2021: 40 ms windows
  and hop, 128 bands, no pooling over time), where the FC layers act on every time step of the
  last feature map (512 channels x ``n_mels / 16`` bands = 4,096 for 128 bands), so the
  network yields a sequence of 128-d vectors, one per 16 input frames. No weights of this
  geometry are released: :class:`VGGishSeqNet` wraps it with an input scaling and a classifier
  and ``pretrain_vggish`` trains it on EmoDB; :func:`embed_vggish_seq` is the ``vggish_seq``
  backbone.

Official checkpoint format
--------------------------
The PyTorch port of the released weights (``harritaylor/torchvggish``, file
``vggish-10086976.pth``): a ``state_dict`` with ``features.{0,3,6,8,11,13}.{weight,bias}``
(the six convolutions; indices of an ``nn.Sequential`` that interleaves ReLU and max-pool)
and ``embeddings.{0,2,4}.{weight,bias}`` (``(4096, 12288)``, ``(4096, 4096)``, ``(128, 4096)``).
The first FC reads the last feature map in TensorFlow's (time, band, channel) order, which
:meth:`VGGish.forward` reproduces. The port's separate PCA file (the AudioSet release's
post-processing, PCA + 8-bit quantisation) is not applied: the embeddings are the network's
128-d outputs. The weights cannot be downloaded on the machines this project is built on; a
user supplies the file (README, "Pretrained weights"), and the tests check this loader on a
checkpoint of the same format that they build.

The front end is written here rather than taken from librosa because VGGish's mel filters are
triangles in the mel domain (``mel_features.py`` of the release), while librosa's are
triangles in hertz; weights trained on one do not fit the other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn

from pipeline.embed.checkpoints import checked_state_dict
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames
EMBEDDING_DIM = 128
LOG_OFFSET = 0.01
# conv channels, "M" = 2x2 max-pool (the layout of the official model)
LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGish(nn.Module):
    """VGGish on log-mel inputs ``[B, 1, frames, n_mels]``.

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (64 official, 128 in seed 002); a multiple of 16.
    example_frames : int
        Frames per example of the official geometry (96); unused with ``sequence``.
    sequence : bool
        False: one embedding per example (the official model). True: the FC layers on every
        time step of the last feature map, ``frames // 16`` embeddings per input.
    batch_norm : bool
        A batch normalisation after every convolution (not in the official model, whose
        weights then do not load): a network trained from scratch needs it.
    """

    def __init__(
        self,
        n_mels: int = 64,
        example_frames: int = EXAMPLE_FRAMES,
        sequence: bool = False,
        batch_norm: bool = False,
    ):
        super().__init__()
        if n_mels % 16:
            raise ValueError(f"VGGish: n_mels must be a multiple of 16, got {n_mels}")
        layers: list[nn.Module] = []
        channels = 1
        for v in LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(channels, int(v), 3, padding=1))
                layers += [nn.BatchNorm2d(int(v))] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.sequence = sequence
        fc_in = 512 * (n_mels // 16) * (1 if sequence else example_frames // 16)
        self.embeddings = nn.Sequential(
            nn.Linear(fc_in, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, 1, frames, n_mels] -> [B, 128] (official) or [B, frames // 16, 128]."""
        f = self.features(x).permute(0, 2, 3, 1)  # [B, time, band, channel]: TF's order
        if self.sequence:
            return self.embeddings(f.flatten(2))
        return self.embeddings(f.flatten(1))


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as VGGish uses it."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_matrix(
    n_mels: int, n_bins: int, rate_hz: int, fmin: float = 125.0, fmax: float = 7500.0
) -> np.ndarray:
    """``[n_bins, n_mels]`` weights: triangles in the mel domain, the DC bin zeroed."""
    bins_mel = hertz_to_mel(np.linspace(0.0, rate_hz / 2, n_bins))
    edges = np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), n_mels + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (bins_mel[:, None] - lo) / (mid - lo)
    down = (hi - bins_mel[:, None]) / (hi - mid)
    w = np.maximum(0.0, np.minimum(up, down))
    w[0] = 0.0
    return w


def log_mel(
    wave: np.ndarray, rate_hz: int, window_s: float = 0.025, hop_s: float = 0.010, n_mels: int = 64
) -> np.ndarray:
    """VGGish's log-mel frames ``[F, n_mels]`` of a mono waveform (resampled to 16 kHz).

    Frames of ``window_s`` every ``hop_s`` (no padding: ``F = 1 + (S - window) // hop``),
    periodic Hann window, FFT of the next power of two, magnitude, mel triangles over
    125-7500 Hz, ``log(mel + 0.01)``. Official: 25 ms / 10 ms / 64; seed 002: 40 / 40 / 128.
    """
    y = np.asarray(wave, np.float32)
    if rate_hz != SAMPLE_RATE_HZ:
        y = librosa.resample(y, orig_sr=rate_hz, target_sr=SAMPLE_RATE_HZ, res_type="soxr_hq")
    win = int(round(window_s * SAMPLE_RATE_HZ))
    hop = int(round(hop_s * SAMPLE_RATE_HZ))
    n_fft = 2 ** int(np.ceil(np.log2(win)))
    if len(y) < win:
        return np.zeros((0, n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(y, win)[::hop].astype(np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))  # periodic
    mag = np.abs(np.fft.rfft(frames * hann, n_fft))
    mel = mag @ mel_matrix(n_mels, n_fft // 2 + 1, SAMPLE_RATE_HZ)
    return np.log(mel + LOG_OFFSET).astype(np.float32)


def load_vggish(path: str | Path, device: str = "cpu") -> VGGish:
    """The official geometry with the weights of a torchvggish ``.pth`` (see module docstring).

    Raises
    ------
    PipelineError
        If the file lacks a tensor of the model or has one of the wrong shape (one line
        naming the file and the keys).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any unreadable file: one line naming it
        raise PipelineError(f"{path}: not a readable VGGish checkpoint ({err})") from None
    if not isinstance(state, Mapping):
        raise PipelineError(f"{path}: expected a VGGish state dict, found {type(state).__name__}")
    model = VGGish()
    try:
        state = checked_state_dict(model, state, path, "VGGish (torchvggish)")
    except ValueError as err:
        raise PipelineError(str(err)) from None
    model.load_state_dict(state, strict=True)
    log.info("loaded VGGish from %s on %s", path, device)
    return model.to(device).eval()


def embed_vggish(
    model: VGGish, wave: np.ndarray, rate_hz: int, batch_size: int = 16, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """128-d embeddings of consecutive 0.96 s examples, placed at the examples' centres.

    Returns
    -------
    x : [E, 128] float32, ``E = F // 96`` for ``F`` log-mel frames (a partial last example is
        dropped, as the release does)
    centres_s : [E] float64, the mean of the example's first and last frame centres:
        ``0.96 k + 0.4875`` s
    """
    frames = log_mel(wave, rate_hz)
    n = len(frames) // EXAMPLE_FRAMES
    examples = frames[: n * EXAMPLE_FRAMES].reshape(n, 1, EXAMPLE_FRAMES, frames.shape[1])
    out = [np.zeros((0, EMBEDDING_DIM), np.float32)]
    with torch.no_grad():
        for i in range(0, n, batch_size):
            out.append(
                model(torch.from_numpy(examples[i : i + batch_size]).to(device)).cpu().numpy()
            )
    hop_s, window_s = 0.010, 0.025
    centres = (
        np.arange(n) * EXAMPLE_FRAMES * hop_s + (EXAMPLE_FRAMES - 1) * hop_s / 2 + window_s / 2
    )
    return np.concatenate(out), centres


# ---- seed 002's sequence geometry, trained by pipeline.models.pretrain_vggish

SEQ_FRAME_S = 0.040  # seed 002: 40 ms windows and hop
SEQ_N_MELS = 128
STEP_FRAMES = 16  # four 2x2 max-pools: one embedding per 16 frames (0.64 s)
CHUNK_FRAMES = 480  # the paper's inputs: 480 x 128 (19.2 s)


def seq_log_mel(wave: np.ndarray, rate_hz: int) -> np.ndarray:
    """Seed 002's log-mel frames ``[F, 128]`` float32 (40 ms / 40 ms, VGGish's front end)."""
    return log_mel(wave, rate_hz, window_s=SEQ_FRAME_S, hop_s=SEQ_FRAME_S, n_mels=SEQ_N_MELS)


class VGGishSeqNet(nn.Module):
    """VGGish (sequence geometry) with per-band input standardisation and a classifier.

    Parameters
    ----------
    n_classes : int
        Outputs of the pre-training classifier.
    n_mels : int, default=128
    dropout : float, default=0.3
        Before the classifier.

    Shapes
    ------
    input : (B, 1, frames, n_mels) log-mel, ``frames >= 16``
    :meth:`embed` : (B, frames // 16, 128)
    output : (B, K) logits of the time-averaged embedding
    """

    def __init__(self, n_classes: int, n_mels: int = SEQ_N_MELS, dropout: float = 0.3):
        super().__init__()
        self.init_kwargs = dict(n_classes=n_classes, n_mels=n_mels, dropout=dropout)
        self.register_buffer("band_mean", torch.zeros(n_mels))
        self.register_buffer("band_std", torch.ones(n_mels))
        self.vggish = VGGish(n_mels=n_mels, sequence=True, batch_norm=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(EMBEDDING_DIM, n_classes)

    def set_input_scaling(self, frames: np.ndarray) -> None:
        """Per-band mean and standard deviation of training log-mel ``frames`` [..., n_mels]."""
        flat = frames.reshape(-1, frames.shape[-1]).astype(np.float64)
        self.band_mean.copy_(torch.from_numpy(flat.mean(axis=0)).float())
        self.band_std.copy_(torch.from_numpy(flat.std(axis=0) + 1e-5).float())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, n_mels) -> (B, frames // 16, 128) embeddings."""
        return self.vggish((x - self.band_mean) / self.band_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x).mean(dim=1)))


def embed_vggish_seq(
    net: VGGishSeqNet, wave: np.ndarray, rate_hz: int, batch_size: int = 4, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``vggish_seq`` embeddings of a waveform, one row per 40 ms frame.

    The log-mel frames are cut into chunks of 480 (the paper's 19.2 s inputs; the last one
    shorter) and each chunk into its ``frames // 16`` embeddings (0.64 s each); every frame of
    a 16-frame group gets its group's embedding, so any 5 Hz bin holds the embedding of the
    0.64 s around it. Frames after the last complete group are dropped.

    Returns
    -------
    x : [F', 128] float32, ``F' = 16 * (frames of complete groups)``
    t : [F'] float64 frame centres in seconds (``0.04 j + 0.02``)
    """
    frames = seq_log_mel(wave, rate_hz)
    usable = len(frames) // STEP_FRAMES * STEP_FRAMES
    chunks = [frames[s : min(s + CHUNK_FRAMES, usable)] for s in range(0, usable, CHUNK_FRAMES)]
    out = [np.zeros((0, EMBEDDING_DIM), np.float32)]
    net.eval()
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            part = chunks[i : i + batch_size]
            same = [c for c in part if len(c) == len(part[0])]  # a shorter last chunk alone
            for group in (same, [c for c in part if len(c) != len(part[0])]):
                if not group:
                    continue
                x = torch.from_numpy(np.stack(group)[:, None]).to(device)
                emb = net.embed(x).cpu().numpy()  # [b, n, 128]
                out.append(np.repeat(emb.reshape(-1, EMBEDDING_DIM), STEP_FRAMES, axis=0))
    x = np.concatenate(out)
    return x, np.arange(len(x)) * SEQ_FRAME_S + SEQ_FRAME_S / 2
