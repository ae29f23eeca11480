"""PANNs CNN14 audio backbone (Kong et al., 2020) for 2048-d clip embeddings.

Re-implements the ``Cnn14`` audio-tagging network of PANNs
(``qiuqiangkong/audioset_tagging_cnn``, ``pytorch/models.py``) so that the released
AudioSet checkpoint ``Cnn14_mAP=0.431.pth`` loads with strict key matching, without
depending on ``torchlibrosa``.

Official checkpoint format
--------------------------
``torch.save({'model': state_dict, ...})`` (the training script also stores
``'iteration'`` and sometimes ``'sampler'``; only ``'model'`` is read). The state dict
holds, besides the network weights, the frozen front end of torchlibrosa:

* ``spectrogram_extractor.stft.conv_real.weight`` : (513, 1, 1024) float32
* ``spectrogram_extractor.stft.conv_imag.weight`` : (513, 1, 1024) float32
  (the STFT as ``Conv1d`` kernels: periodic Hann window times the real/imaginary DFT
  basis, stride = hop = 320 samples)
* ``logmel_extractor.melW`` : (513, 64) float32, the transposed
  ``librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)``
* ``bn0.{weight,bias,running_mean,running_var,num_batches_tracked}`` (64 mel bins),
  ``conv_block{1..6}.{conv1,conv2}.weight``, ``conv_block{1..6}.{bn1,bn2}.*``,
  ``fc1.{weight,bias}`` (2048, 2048), ``fc_audioset.{weight,bias}`` (527, 2048).

Front-end choice: the STFT is implemented, as in PANNs, as two frozen ``Conv1d`` layers
whose weights are parameters under the official names, so the checkpoint's own kernels
are loaded and used verbatim (no key is ignored). Because a checkpoint trained with a
different front end (sample rate, FFT size, mel range) would otherwise load silently
whenever the shapes agree, :func:`load_cnn14` also checks the loaded kernels and mel
filterbank against the ones computed here (``verify_front_end=True``).

The weights are published on Zenodo (record 3987831, "PANNs: Large-Scale Pretrained
Audio Neural Networks for Audio Pattern Recognition"), linked from the README of
``qiuqiangkong/audioset_tagging_cnn``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.embed.checkpoints import checked_state_dict

log = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_RATE_HZ",
    "EMBEDDING_DIM",
    "N_AUDIOSET_CLASSES",
    "ConvStft",
    "PowerSpectrogram",
    "LogMelFilterBank",
    "LogMelFrontEnd",
    "ConvBlock",
    "Cnn14",
    "front_end_reference_state",
    "load_cnn14",
    "audio_windows",
    "embed_cnn14",
]

SAMPLE_RATE_HZ = 32000
N_FFT = 1024
HOP_LENGTH = 320
N_MELS = 64
FMIN_HZ = 50.0
FMAX_HZ = 14000.0
AMIN = 1e-10
EMBEDDING_DIM = 2048
N_AUDIOSET_CLASSES = 527
_N_POOLS = 5  # conv_block1..5 halve time and frequency; conv_block6 does not pool

_FRONT_END_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)


# --------------------------------------------------------------------------- front end
def _dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed real and imaginary DFT kernels, as PANNs stores them.

    Parameters
    ----------
    n_fft : int
        FFT size in samples (window length = ``n_fft``).

    Returns
    -------
    real, imag : (n_fft // 2 + 1, 1, n_fft) float32 arrays
        ``real[k, 0, n] = w[n] cos(2 pi k n / n_fft)`` and
        ``imag[k, 0, n] = -w[n] sin(2 pi k n / n_fft)`` with ``w`` the periodic Hann
        window, so that ``conv1d(x, real)`` is the real part of ``librosa.stft``.
    """
    window = librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float64)
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    phase = 2.0 * np.pi * ((k * n) % n_fft) / n_fft  # reduce k*n first: exact angles
    real = (np.cos(phase) * window)[:, None, :]
    imag = (-np.sin(phase) * window)[:, None, :]
    return real.astype(np.float32), imag.astype(np.float32)


def _mel_matrix(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Transposed librosa (Slaney) mel filterbank, shape (n_fft // 2 + 1, n_mels), float32."""
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.ascontiguousarray(mel.T, dtype=np.float32)


def front_end_reference_state(
    sample_rate: int = SAMPLE_RATE_HZ,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = FMIN_HZ,
    fmax: float = FMAX_HZ,
) -> dict[str, torch.Tensor]:
    """The front-end tensors a CNN14 checkpoint should contain, computed from scratch.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz the model expects.
    n_fft : int
        FFT / window size in samples.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Mel filterbank range in Hz.

    Returns
    -------
    dict
        ``'spectrogram_extractor.stft.conv_real.weight'`` and ``'...conv_imag.weight'``:
        (n_fft // 2 + 1, 1, n_fft) float32 tensors; ``'logmel_extractor.melW'``:
        (n_fft // 2 + 1, n_mels) float32 tensor.
    """
    real, imag = _dft_kernels(n_fft)
    mel = _mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)
    return {
        _FRONT_END_KEYS[0]: torch.from_numpy(real),
        _FRONT_END_KEYS[1]: torch.from_numpy(imag),
        _FRONT_END_KEYS[2]: torch.from_numpy(mel),
    }


class ConvStft(nn.Module):
    """Centred STFT computed with two frozen ``Conv1d`` layers (torchlibrosa layout).

    Parameters
    ----------
    n_fft : int
        FFT / window size in samples (periodic Hann window).
    hop_length : int
        Hop between frames in samples.

    Notes
    -----
    The input is reflect-padded by ``n_fft // 2`` on both sides (``center=True``), so a
    signal of ``S`` samples gives ``1 + S // hop_length`` frames, as ``librosa.stft``.
    The kernels are parameters with ``requires_grad=False`` so that they appear in the
    state dict as ``conv_real.weight`` and ``conv_imag.weight``.
    """

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        n_bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, n_bins, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, n_bins, kernel_size=n_fft, stride=hop_length, bias=False)
        real, imag = _dft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary STFT.

        Parameters
        ----------
        wave : (B, S) float tensor
            Waveforms; ``S`` must exceed ``n_fft // 2`` (reflect padding).

        Returns
        -------
        real, imag : (B, 1, T, n_fft // 2 + 1) float tensors, ``T = 1 + S // hop_length``.
        """
        x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = self.conv_real(x).transpose(1, 2)[:, None]
        imag = self.conv_imag(x).transpose(1, 2)[:, None]
        return real, imag


class PowerSpectrogram(nn.Module):
    """Power spectrogram ``|STFT|**2`` (PANNs' ``spectrogram_extractor``).

    Parameters
    ----------
    n_fft, hop_length : int
        See :class:`ConvStft`.
    """

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> None:
        super().__init__()
        self.stft = ConvStft(n_fft, hop_length)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms -> (B, 1, T, n_fft // 2 + 1) power spectrogram (amplitude**2)."""
        real, imag = self.stft(wave)
        return real**2 + imag**2


class LogMelFilterBank(nn.Module):
    """Mel projection and ``10 log10(max(x, 1e-10))`` (PANNs' ``logmel_extractor``).

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size in samples.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Filterbank range in Hz.

    Notes
    -----
    ``melW`` is a frozen parameter of shape (n_fft // 2 + 1, n_mels), i.e. the
    transposed ``librosa.filters.mel``. ``ref = 1.0`` and ``top_db = None`` as in PANNs,
    so the output equals ``librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)``.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE_HZ,
        n_fft: int = N_FFT,
        n_mels: int = N_MELS,
        fmin: float = FMIN_HZ,
        fmax: float = FMAX_HZ,
    ) -> None:
        super().__init__()
        mel = _mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)
        self.melW = nn.Parameter(torch.from_numpy(mel), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, n_fft // 2 + 1) power -> (B, 1, T, n_mels) log-mel energies in dB."""
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


class LogMelFrontEnd(nn.Module):
    """CNN14 front end: centred STFT power -> 64-band log-mel spectrogram in dB.

    Matches torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank`` as configured by
    PANNs (n_fft 1024, hop 320, Hann, ``center=True``, reflect padding, mel 50-14000 Hz,
    ``ref=1``, ``amin=1e-10``, no ``top_db``). Its state-dict keys are those of the
    official checkpoint without the model prefix
    (``spectrogram_extractor.stft.conv_real.weight``, ..., ``logmel_extractor.melW``).

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz of the input waveform.
    n_fft, hop_length : int
        STFT size and hop in samples.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Mel range in Hz.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE_HZ,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        fmin: float = FMIN_HZ,
        fmax: float = FMAX_HZ,
    ) -> None:
        super().__init__()
        self.spectrogram_extractor = PowerSpectrogram(n_fft, hop_length)
        self.logmel_extractor = LogMelFilterBank(sample_rate, n_fft, n_mels, fmin, fmax)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms at ``sample_rate`` -> (B, 1, T, n_mels) log-mel in dB.

        ``T = 1 + S // hop_length``; transpose the last two axes to compare with
        ``librosa.feature.melspectrogram`` (which returns (n_mels, T)).
        """
        return self.logmel_extractor(self.spectrogram_extractor(wave))


# --------------------------------------------------------------------------- network
class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers followed by average pooling (PANNs ``ConvBlock``).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        """(B, C_in, T, M) -> (B, C_out, T // p_t, M // p_m) with ``pool_size = (p_t, p_m)``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if pool_size != (1, 1):
            x = F.avg_pool2d(x, kernel_size=pool_size)
        return x


class Cnn14(nn.Module):
    """PANNs CNN14 AudioSet tagger with the official state-dict layout.

    Parameters
    ----------
    sample_rate : int
        Input sample rate in Hz (32 kHz for ``Cnn14_mAP=0.431.pth``).
    n_fft, hop_length : int
        STFT size and hop in samples.
    n_mels : int
        Mel bands (also the width of ``bn0``).
    fmin, fmax : float
        Mel range in Hz.
    n_classes : int
        Output classes (527 AudioSet labels).

    Notes
    -----
    Forward pass as in PANNs: log-mel -> ``bn0`` over mel bins -> six ``ConvBlock`` s
    (64, 128, 256, 512, 1024, 2048 channels; 2x2 average pooling except 1x1 for the last)
    with dropout 0.2 after each -> mean over frequency -> max + mean over time ->
    dropout 0.5 -> ``fc1`` + ReLU -> ``embedding`` (dropout 0.5) and
    ``sigmoid(fc_audioset(.))``. Dropouts are active only in training mode. The
    training-only augmentations of PANNs (SpecAugment, mixup) have no weights and are not
    implemented: this module is meant for inference and feature extraction.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE_HZ,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        fmin: float = FMIN_HZ,
        fmax: float = FMAX_HZ,
        n_classes: int = N_AUDIOSET_CLASSES,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        # Same classes as LogMelFrontEnd, registered at top level to keep the official
        # names ``spectrogram_extractor.*`` and ``logmel_extractor.*``.
        self.spectrogram_extractor = PowerSpectrogram(n_fft, hop_length)
        self.logmel_extractor = LogMelFilterBank(sample_rate, n_fft, n_mels, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(n_mels)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(EMBEDDING_DIM, EMBEDDING_DIM, bias=True)
        self.fc_audioset = nn.Linear(EMBEDDING_DIM, n_classes, bias=True)

    @property
    def min_samples(self) -> int:
        """Shortest accepted input in samples (32 STFT frames survive five 2x poolings)."""
        return (2**_N_POOLS - 1) * self.hop_length

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms -> (B, 1, T, n_mels) log-mel spectrogram in dB."""
        return self.logmel_extractor(self.spectrogram_extractor(wave))

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tag a batch of waveforms.

        Parameters
        ----------
        wave : (B, S) float32 tensor
            Mono waveforms at ``sample_rate`` Hz, nominally in [-1, 1];
            ``S >= min_samples`` (9,920 samples = 0.31 s at 32 kHz).

        Returns
        -------
        dict
            ``'embedding'``: (B, 2048) post-ReLU ``fc1`` activations;
            ``'clipwise_output'``: (B, 527) AudioSet class probabilities in [0, 1].
        """
        if wave.ndim != 2:
            raise ValueError(f"Cnn14 expects (batch, samples) waveforms, got {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(
                f"Cnn14 needs at least {self.min_samples} samples "
                f"({self.min_samples / self.sample_rate:.3f} s), got {wave.shape[1]}"
            )
        x = self.log_mel(wave)  # (B, 1, T, M)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BN over the mel axis
        for i in range(1, 7):
            block = getattr(self, f"conv_block{i}")
            x = block(x, pool_size=(2, 2) if i < 6 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
        x = torch.mean(x, dim=3)  # (B, 2048, T')
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)  # (B, 2048)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        clipwise = torch.sigmoid(self.fc_audioset(x))
        return {"clipwise_output": clipwise, "embedding": embedding}


# --------------------------------------------------------------------------- loading
def _numpy_safe_globals() -> list:
    """Numpy reconstruction helpers allowed under ``torch.load(weights_only=True)``.

    The PANNs training script may store ``'sampler'`` state (numpy index arrays) beside
    ``'model'``; these entries only rebuild plain arrays, dtypes and scalars.
    """
    from numpy._core import multiarray

    allowed: list = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
    allowed += [(multiarray.scalar, "numpy.core.multiarray.scalar")]
    allowed += [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    return allowed


def _torch_load(path: Path, map_location: str | torch.device) -> object:
    """``torch.load`` with ``weights_only=True``; numpy arrays allowed on a second try."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as first:  # noqa: BLE001 - retried, then re-raised with the file name
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except Exception:  # noqa: BLE001
            raise ValueError(
                f"{path}: not a readable PyTorch checkpoint "
                f"(torch.load(weights_only=True) failed: {first})"
            ) from first


def _verify_front_end(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise if the checkpoint's STFT kernels or mel filterbank are not the 32 kHz ones."""
    reference = front_end_reference_state()
    for key, ref in reference.items():
        got = state[key].detach().to("cpu", torch.float64)
        ref64 = ref.to(torch.float64)
        scale = float(ref64.abs().max())
        err = float((got - ref64).abs().max())
        if err > 1e-4 * scale:
            raise ValueError(
                f"{path}: {key} differs from the expected front end (max abs error {err:.3g} "
                f"vs values up to {scale:.3g}); the checkpoint was not trained on "
                f"{SAMPLE_RATE_HZ} Hz audio with n_fft={N_FFT}, {N_MELS} mels "
                f"{FMIN_HZ:g}-{FMAX_HZ:g} Hz (pass verify_front_end=False to load anyway)"
            )


def load_cnn14(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    verify_front_end: bool = True,
) -> Cnn14:
    """Load the official PANNs CNN14 checkpoint (``Cnn14_mAP=0.431.pth``).

    Parameters
    ----------
    path : str or Path
        ``.pth`` file saved by PANNs: a dict with key ``'model'`` holding the state dict
        (other top-level keys such as ``'iteration'`` or ``'sampler'`` are ignored).
        Read with ``torch.load(weights_only=True)``.
    device : str or torch.device
        Device for the returned model.
    verify_front_end : bool
        Check the stored STFT kernels and mel filterbank against
        :func:`front_end_reference_state` (relative tolerance 1e-4).

    Returns
    -------
    Cnn14
        The model in eval mode on ``device``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable checkpoint, has no ``'model'`` dict, has missing or
        unexpected keys or wrong shapes (all listed), or a different front end. Every
        message starts with the file path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CNN14 checkpoint not found")
    checkpoint = _torch_load(path, map_location=device)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        found = list(checkpoint.keys()) if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise ValueError(
            f"{path}: expected the PANNs checkpoint format, a dict with a 'model' state "
            f"dict; found {found}"
        )
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = Cnn14()
    state = checked_state_dict(model, checkpoint["model"], path, "Cnn14")
    if verify_front_end:
        _verify_front_end(state, path)
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device).eval()
    log.info("loaded CNN14 from %s (%d tensors) on %s", path, len(checkpoint["model"]), device)
    return model


# --------------------------------------------------------------------------- windows
def audio_windows(
    wave: np.ndarray,
    sr: int,
    window_s: float = 3.0,
    step_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample to 32 kHz and cut overlapping fixed-length windows.

    Parameters
    ----------
    wave : (S,) float array
        Mono waveform at ``sr`` Hz, nominally in [-1, 1].
    sr : int
        Sample rate of ``wave`` in Hz; resampled to 32,000 Hz with
        ``librosa.resample`` (soxr_hq) unless already 32 kHz.
    window_s : float
        Window length in seconds (3.0 s in Dresvyanskiy et al.).
    step_s : float
        Step between window starts in seconds (1.0 s).

    Returns
    -------
    windows : (W, round(window_s * 32000)) float32 array
        Window ``i`` covers ``[i * step_s, i * step_s + window_s)`` seconds.
    centres_s : (W,) float64 array
        Window centres in seconds from the start of ``wave``: ``i * step_s + window_s / 2``.

    Notes
    -----
    ``W = 1 + ceil((D - window_s) / step_s)`` for a duration ``D > window_s``, so the end
    of the signal is always covered; the last window is zero-padded past the end. A signal
    no longer than one window gives a single zero-padded window centred at
    ``window_s / 2`` (even if the signal itself is shorter). E.g. 10 s -> 8 windows
    centred at 1.5, 2.5, ..., 8.5 s.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"audio_windows expects a mono (S,) waveform, got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError("audio_windows got an empty waveform")
    if window_s <= 0 or step_s <= 0:
        raise ValueError(f"window_s and step_s must be positive, got {window_s}, {step_s}")
    y = wave.astype(np.float32, copy=False)
    if sr != SAMPLE_RATE_HZ:
        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE_HZ, res_type="soxr_hq")
    win = int(round(window_s * SAMPLE_RATE_HZ))
    step = int(round(step_s * SAMPLE_RATE_HZ))
    n = len(y)
    n_windows = 1 if n <= win else 1 + -(-(n - win) // step)
    padded = np.zeros((n_windows - 1) * step + win, dtype=np.float32)
    padded[:n] = y
    starts = np.arange(n_windows) * step
    windows = np.stack([padded[s : s + win] for s in starts])
    centres_s = (starts + win / 2.0) / SAMPLE_RATE_HZ
    return windows, centres_s.astype(np.float64)


def embed_cnn14(
    model: Cnn14,
    wave: np.ndarray,
    sr: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """2048-d CNN14 embeddings of 3 s windows every 1 s, placed at window centres.

    Parameters
    ----------
    model : Cnn14
        Loaded model (see :func:`load_cnn14`); moved to ``device`` and set to eval mode.
    wave : (S,) float array
        Mono waveform at ``sr`` Hz.
    sr : int
        Sample rate of ``wave`` in Hz (any; resampled to 32 kHz).
    batch_size : int
        Windows per forward pass.
    device : str or torch.device
        Where to run the model. Always float32 (the log-mel front end is not fp16-safe).

    Returns
    -------
    emb : (W, 2048) float32 array
        ``fc1`` embeddings, one per window of :func:`audio_windows`.
    centres_s : (W,) float64 array
        Window centres in seconds.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    windows, centres_s = audio_windows(wave, sr)
    model.to(device).eval()
    out = np.empty((len(windows), EMBEDDING_DIM), dtype=np.float32)
    with torch.no_grad():
        for lo in range(0, len(windows), batch_size):
            batch = torch.from_numpy(windows[lo : lo + batch_size]).to(device)
            out[lo : lo + len(batch)] = model(batch)["embedding"].float().cpu().numpy()
    log.debug("cnn14: %d windows embedded (%.2f s of audio)", len(windows), len(wave) / sr)
    return out, centres_s
