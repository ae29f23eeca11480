"""Audio track -> mono waveform at the pipeline's audio rate (16 kHz by default)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from pipeline.data.media import read_audio


def extract_audio(path: str | Path, rate_hz: int = 16000) -> tuple[np.ndarray, int]:
    """Decode the first audio track (PyAV), mix to mono, resample with soxr (librosa).

    Returns
    -------
    (wave [S] float32 at ``rate_hz``, the file's original sample rate in Hz)

    Raises
    ------
    DataError
        The file has no audio track or it cannot be decoded.
    """
    wave, orig = read_audio(path)  # mono at the file's own rate
    if orig != rate_hz:
        wave = librosa.resample(wave, orig_sr=orig, target_sr=rate_hz, res_type="soxr_hq")
    return wave.astype(np.float32), orig


def extract_audio_job(job, digest: str, rate_hz: int) -> None:
    """Per-video worker of ``extract_audio``: waveform -> ``job.out`` (HDF5 ``wave`` [S]).

    A video without an audio track (``job.info["skip"]`` holds why, e.g. "no audio track
    (modality video)") raises :class:`~pipeline.io.per_video.Skip`: it gets no file, the
    report says why, and the audio stages after this one skip it too.

    The report entry (seconds, original rate) is stored as the file's ``report`` attribute.
    """
    from pipeline.io.h5 import open_writer
    from pipeline.io.per_video import Skip

    if job.info.get("skip"):
        raise Skip(job.info["skip"])
    wave, orig = extract_audio(job.inputs[0], rate_hz)
    entry = {"seconds": round(len(wave) / rate_hz, 3), "orig_rate_hz": orig}
    with open_writer(
        job.out,
        stage="extract_audio",
        params_digest=digest,
        rate_hz=rate_hz,
        report=entry,
        runtime=job.info.get("runtime"),
    ) as w:
        w.add(job.video_id, attrs={"orig_rate_hz": orig}, wave=wave)
