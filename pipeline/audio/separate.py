"""Vocal separation with Spleeter 2stems (official checkpoint), from arrays, in chunks.

Spleeter works on 44.1 kHz stereo. :class:`VocalSeparator` upsamples the 16 kHz mono
input, separates it in overlapping chunks (bounded memory for long videos; linear
cross-fades hide the seams), and returns the vocals as 16 kHz mono. The model is loaded once
per process. The checkpoint is verified file by file before Spleeter is imported: an empty
model folder would otherwise make Spleeter run with untrained weights.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np

from pipeline.errors import PipelineError
from pipeline.pretrained import verify_checkpoint

log = logging.getLogger(__name__)

SPLEETER_RATE_HZ = 44100


def crossfade_chunks(n: int, chunk: int, overlap: int) -> list[tuple[int, int, np.ndarray]]:
    """Chunk ``[0, n)`` into windows of ``chunk`` samples overlapping by ``overlap``.

    Returns ``(start, end, weight)`` triples. The weights ramp linearly over the overlaps
    (and are flat at the signal's ends), so they sum to 1 at every sample.
    """
    if n <= chunk:
        return [(0, n, np.ones(n, np.float32))]
    hop = chunk - overlap
    starts = list(range(0, n - overlap, hop))
    out = []
    for i, s in enumerate(starts):
        e = min(s + chunk, n)
        w = np.ones(e - s, np.float32)
        if i > 0:
            w[:overlap] = np.linspace(0, 1, overlap + 2, dtype=np.float32)[1:-1]
        if i < len(starts) - 1 and e - s > overlap:
            w[-overlap:] = np.minimum(
                w[-overlap:], np.linspace(1, 0, overlap + 2, dtype=np.float32)[1:-1]
            )
        out.append((s, e, w))
    return out


class VocalSeparator:
    """Spleeter 2stems vocals from mono waveforms.

    Parameters
    ----------
    model_dir : path-like
        Folder holding the official ``2stems`` checkpoint (``get_pretrained``'s
        ``models/pretrained/spleeter/2stems``).
    chunk_s, overlap_s : float
        Chunk length and overlap in seconds.
    """

    def __init__(self, model_dir: str | Path, chunk_s: float = 30.0, overlap_s: float = 1.0):
        model_dir = Path(model_dir).resolve()
        verify_checkpoint("spleeter_2stems", model_dir)
        if model_dir.name != "2stems":
            raise PipelineError(
                f"{model_dir}: the Spleeter checkpoint folder must be named '2stems'"
            )
        # MODEL_PATH is read when spleeter is imported; set it first (and on the class, in
        # case another part of this process imported spleeter already).
        os.environ["MODEL_PATH"] = str(model_dir.parent)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from spleeter.model.provider import ModelProvider
        from spleeter.separator import Separator

        ModelProvider.DEFAULT_MODEL_PATH = str(model_dir.parent)
        self._sep = Separator("spleeter:2stems", multiprocess=False)
        self._sep._get_model()  # load now, once
        loaded = Path(self._sep._params["model_dir"]).resolve()
        if loaded != model_dir:
            raise PipelineError(f"spleeter loaded {loaded}, expected {model_dir}")
        self.chunk_s, self.overlap_s = chunk_s, overlap_s

    def vocals(self, wave: np.ndarray, rate_hz: int) -> np.ndarray:
        """Separate the vocals of ``wave`` [S] (mono, ``rate_hz``) -> [S] at ``rate_hz``."""
        if wave.size == 0:
            return wave.astype(np.float32)
        x = librosa.resample(
            wave.astype(np.float32),
            orig_sr=rate_hz,
            target_sr=SPLEETER_RATE_HZ,
            res_type="soxr_hq",
        )
        chunk = int(self.chunk_s * SPLEETER_RATE_HZ)
        overlap = min(int(self.overlap_s * SPLEETER_RATE_HZ), chunk // 2)
        out = np.zeros_like(x)
        for s, e, w in crossfade_chunks(len(x), chunk, overlap):
            stereo = np.repeat(x[s:e, None], 2, axis=1)
            v = self._sep.separate(stereo)["vocals"].mean(axis=1)
            out[s:e] += w * v[: e - s]
        y = librosa.resample(out, orig_sr=SPLEETER_RATE_HZ, target_sr=rate_hz, res_type="soxr_hq")
        return y[: len(wave)].astype(np.float32)


@lru_cache(maxsize=2)
def get_separator(model_dir: str, chunk_s: float, overlap_s: float) -> VocalSeparator:
    """One :class:`VocalSeparator` per process and setting."""
    return VocalSeparator(model_dir, chunk_s, overlap_s)


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio 10 log10(|s|^2 / |s - s_hat|^2) in dB (no scaling)."""
    n = min(len(reference), len(estimate))
    s, e = reference[:n].astype(np.float64), estimate[:n].astype(np.float64)
    return float(10 * np.log10(np.sum(s**2) / max(np.sum((s - e) ** 2), 1e-20)))


def separate_vocals_job(
    job, digest: str, method: str, model_dir: str, chunk_s: float, overlap_s: float
) -> None:
    """Per-video worker of ``separate_vocals``: audio HDF5 -> vocals HDF5 (``wave`` [S]).

    ``method='none'`` copies the audio unchanged (the ablation without separation). The
    report entry (seconds, vocals-to-input level) is the file's ``report`` attribute.
    """
    from pipeline.io.h5 import open_writer, read_attrs, read_group

    rate = int(read_attrs(job.inputs[0])["rate_hz"])
    wave = read_group(job.inputs[0], job.video_id, ["wave"])["wave"]
    if method == "spleeter":
        vocals = get_separator(model_dir, chunk_s, overlap_s).vocals(wave, rate)
    elif method == "none":
        vocals = wave
    else:
        raise PipelineError(
            f"separate_vocals.method: unknown {method!r}; use 'spleeter' or 'none'"
        )
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)  # noqa: E731
    entry = {
        "seconds": round(len(wave) / rate, 3),
        "vocals_to_input_db": round(20 * np.log10(rms(vocals) / rms(wave)), 2),
    }
    with open_writer(
        job.out,
        stage="separate_vocals",
        params_digest=digest,
        rate_hz=rate,
        method=method,
        report=entry,
        runtime=job.info.get("runtime"),
    ) as w:
        w.add(job.video_id, wave=vocals.astype(np.float32))
