"""Audio track -> mono waveform at the pipeline's audio rate (16 kHz by default), streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from pipeline.data.media import audio_rate, iter_audio


def iter_extracted(path: str | Path, rate_hz: int, orig_rate_hz: int) -> Iterator[np.ndarray]:
    """Decode the first audio track (PyAV), mix to mono, resample with soxr, chunk by chunk.

    ``orig_rate_hz`` is the track's own rate (:func:`~pipeline.data.media.audio_rate`).

    Memory holds about one second of audio whatever the length of the track. soxr's stream
    resampler at quality HQ gives the samples of ``librosa.resample(res_type="soxr_hq")`` on
    the whole waveform, bit for bit (checked on a real clip in the tests).

    Yields
    ------
    float32 chunks [s] at ``rate_hz``; concatenated, the waveform.

    Raises
    ------
    DataError
        The file has no audio track or it cannot be decoded.
    """
    orig = orig_rate_hz
    if orig == rate_hz:
        yield from iter_audio(path, orig)
        return
    stream = soxr.ResampleStream(orig, rate_hz, 1, dtype="float32", quality="HQ")
    n_in = n_out = 0
    held = np.zeros(0, np.float32)  # one chunk held back, so the end can be trimmed
    for chunk in iter_audio(path):
        n_in += len(chunk)
        out = stream.resample_chunk(chunk)
        if len(out):
            if len(held):
                n_out += len(held)
                yield held
            held = out
    tail = np.concatenate([held, stream.resample_chunk(np.zeros(0, np.float32), last=True)])
    # librosa's length: ceil(n * ratio), zero-padded or trimmed (soxr may differ by a sample)
    want = int(np.ceil(n_in * float(rate_hz) / orig)) - n_out
    yield np.pad(tail[:want], (0, max(0, want - len(tail))))


def extract_audio(path: str | Path, rate_hz: int = 16000) -> tuple[np.ndarray, int]:
    """The whole waveform of :func:`iter_extracted`.

    Returns
    -------
    (wave [S] float32 at ``rate_hz``, the file's original sample rate in Hz)
    """
    orig = audio_rate(path)
    return np.concatenate(list(iter_extracted(path, rate_hz, orig))), orig


def extract_audio_job(job, digest: str, rate_hz: int) -> None:
    """Per-video worker of ``extract_audio``: waveform -> ``job.out`` (HDF5 ``wave`` [S]),
    appended chunk by chunk (bounded memory at any length).

    The report entry (seconds, original rate) is stored as the file's ``report`` attribute.
    """
    from pipeline.io.h5 import open_writer

    orig = audio_rate(job.inputs[0])
    with open_writer(
        job.out,
        stage="extract_audio",
        params_digest=digest,
        rate_hz=rate_hz,
        runtime=job.info.get("runtime"),
    ) as w:
        wave = w.stream(
            job.video_id, {"wave": ((), np.float32)}, attrs={"orig_rate_hz": orig}, min_row_bytes=1
        )
        for chunk in iter_extracted(job.inputs[0], rate_hz, orig):
            wave.append(wave=chunk)
        w.set_attrs(report={"seconds": round(wave.n / rate_hz, 3), "orig_rate_hz": orig})
