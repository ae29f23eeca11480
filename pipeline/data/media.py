"""Probe and decode media with PyAV (bundled FFmpeg; no system ffmpeg needed)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaInfo:
    """What the manifest records about one media file.

    ``fps`` and ``n_frames`` are 0 for audio-only files; ``audio_rate_hz`` is 0 when there
    is no audio track. ``n_frames`` is counted by decoding (container metadata lies often).
    """

    duration_s: float
    has_video: bool
    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate_hz: int


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot be opened as media ({err})") from None


def probe(path: str | Path) -> MediaInfo:
    """Probe ``path``: duration, frame rate, decoded frame count, audio presence.

    Raises
    ------
    DataError
        The file is missing, cannot be opened, has neither video nor audio, or its video
        stream yields no decodable frame (corrupt).
    """
    with _open(path) as c:
        has_video = bool(c.streams.video)
        has_audio = bool(c.streams.audio)
        if not has_video and not has_audio:
            raise DataError(path, "has neither a video nor an audio stream")
        fps, n_frames, width, height, last_t = 0.0, 0, 0, 0, 0.0
        if has_video:
            vs = c.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else 0.0
            width, height = vs.codec_context.width, vs.codec_context.height
            try:
                for pkt in c.demux(vs):
                    for frame in pkt.decode():
                        n_frames += 1
                        if frame.time is not None:
                            last_t = float(frame.time)
            except av.error.FFmpegError as err:
                raise DataError(path, f"video stream is corrupt after {n_frames} frames ({err})") from None
            if n_frames == 0:
                raise DataError(path, "video stream has no decodable frame")
            if fps <= 0:
                raise DataError(path, "video stream has no frame rate")
        audio_rate = c.streams.audio[0].rate if has_audio else 0
        duration = float(c.duration / av.time_base) if c.duration else 0.0
        if has_video:
            duration = max(duration, last_t + 1.0 / fps) if duration == 0 else duration
    return MediaInfo(
        duration_s=round(duration, 6), has_video=has_video, fps=round(fps, 6), n_frames=n_frames,
        width=width, height=height, has_audio=has_audio, audio_rate_hz=int(audio_rate),
    )


def iter_video_frames(path: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, time_s, rgb uint8 [H, W, 3])`` for every ``every``-th frame.

    Times come from the stream's presentation timestamps (true times, not index / fps).
    """
    with _open(path) as c:
        if not c.streams.video:
            raise DataError(path, "has no video stream")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        index = 0
        try:
            for frame in c.decode(vs):
                if index % every == 0:
                    t = float(frame.time) if frame.time is not None else index / float(vs.average_rate)
                    yield index, t, frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as err:
            raise DataError(path, f"video decoding failed at frame {index} ({err})") from None


def read_audio(path: str | Path, sample_rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio track to mono float32.

    Parameters
    ----------
    path : path-like
        Media file.
    sample_rate_hz : int, optional
        Resample to this rate (PyAV's FFmpeg resampler); ``None`` keeps the file's rate.

    Returns
    -------
    (wave [S] float32 in [-1, 1], rate_hz)

    Raises
    ------
    DataError
        No audio track, or the track cannot be decoded.
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise DataError(path, "has no audio track")
        stream = c.streams.audio[0]
        rate = sample_rate_hz or stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in c.decode(stream):
                frame.pts = None  # let the resampler re-time; avoids gaps on odd timestamps
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            raise DataError(path, f"audio decoding failed ({err})") from None
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        raise DataError(path, "audio track holds no samples")
    return wave, int(rate)


def as_fraction(fps: float) -> Fraction:
    """A frame rate as the fraction FFmpeg expects (29.97 -> 30000/1001)."""
    if abs(fps - 29.97) < 1e-3:
        return Fraction(30000, 1001)
    return Fraction(fps).limit_denominator(1001)


def encode_mp4(dst: str | Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: float,
               audio: np.ndarray | None = None, audio_rate_hz: int = 16000, bit_rate: int = 1_500_000) -> None:
    """Write RGB uint8 frames (MPEG-4 video) and optional mono audio (AAC) to an MP4 file.

    Parameters
    ----------
    frames : iterable of (H, W, 3) uint8, consumed one at a time (long videos stream)
    size : (W, H) in pixels; fps : frames per second (29.97 is written as 30000/1001)
    audio : (S,) float32 in [-1, 1] at ``audio_rate_hz``, or None for a video without audio

    Encoding is single-threaded and the container holds no timestamps of the run, so the
    same inputs give the same bytes.
    """
    w, h = size
    with av.open(str(dst), "w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=as_fraction(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.bit_rate = bit_rate
        vs.thread_count = 1
        aus = out.add_stream("aac", rate=audio_rate_hz, layout="mono") if audio is not None else None
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if aus is not None:
            audio = np.asarray(audio, np.float32)
            for k in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(audio[None, k:k + 1024], format="flt", layout="mono")
                af.sample_rate, af.pts = audio_rate_hz, k
                for pkt in aus.encode(af):
                    out.mux(pkt)
            for pkt in aus.encode():
                out.mux(pkt)
