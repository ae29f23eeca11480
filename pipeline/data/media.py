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


MODALITIES = ("audio_video", "video", "audio", "image")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IMAGE_CODECS = ("mjpeg", "png", "bmp", "tiff", "webp", "gif")
# A file that decodes to less than this fraction of its container's duration is flagged as
# partly decodable (the decoded part is used; see :func:`probe`).
MIN_DECODED_FRACTION = 0.9


@dataclass(frozen=True)
class MediaInfo:
    """What the manifest records about one media file.

    ``fps`` and ``n_frames`` are 0 for audio-only files; ``audio_rate_hz`` is 0 when there
    is no audio track. ``n_frames`` is counted by decoding (container metadata lies often);
    ``width`` x ``height`` is the displayed size (swapped for videos rotated by +-90 degrees).

    ``modality`` is one of :data:`MODALITIES`: ``audio_video``; ``video`` (no audio track);
    ``audio`` (no video stream; a cover picture of an audio file does not count as video);
    ``image`` (a still image: a ``.jpg/.jpeg/.png/.bmp`` file, or one frame of an image codec
    such as mjpeg or png, without audio).

    ``duration_s`` is the container's duration, except for a partly decodable file, where it
    is the decoded duration and ``partly_decodable`` says what decoded (``""`` otherwise; it is
    no manifest column).
    """

    duration_s: float
    has_video: bool
    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate_hz: int
    modality: str
    partly_decodable: str = ""


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot be opened as media ({err})") from None


def _video_stream(c: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first video stream that is not a cover picture (``attached_pic``), or None."""
    for s in c.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) that display a frame of this display rotation.

    ``rotation`` is PyAV's ``VideoFrame.rotation``: the angle in degrees by which the
    container's display matrix rotates the stored frame counter-clockwise (a phone video
    held upright is typically stored sideways with -90). Angles that are not a multiple of
    90 are rounded to the nearest one.
    """
    return round(rotation / 90.0) % 4


def probe(path: str | Path) -> MediaInfo:
    """Probe ``path``: duration, frame rate, decoded frame count, audio, modality.

    Every video frame and audio sample is decoded once. Decoding stops at the first decoder
    error (a truncated file typically ends in one). When that happens, or when what decoded
    covers less than :data:`MIN_DECODED_FRACTION` of the container's duration, the file is
    partly decodable: ``duration_s`` becomes the decoded duration and ``partly_decodable``
    says e.g. ``"partly decodable: 61 of ~201 frames (2.03 s of 6.70 s)"``.
    :func:`iter_video_frames` and :func:`read_audio` use the same decodable part.

    Raises
    ------
    DataError
        The file is missing, cannot be opened, has neither video nor audio, or its video
        stream (audio track, for audio-only files) yields nothing decodable (corrupt).
    """
    path = Path(path)
    with _open(path) as c:
        vs = _video_stream(c)
        aus = c.streams.audio[0] if c.streams.audio else None
        if vs is None and aus is None:
            raise DataError(path, "has neither a video nor an audio stream")
        fps, width, height = 0.0, 0, 0
        if vs is not None:
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else 0.0
            width, height = vs.codec_context.width, vs.codec_context.height
        n_frames, n_samples, last_t, turns, error = 0, 0, 0.0, 0, ""
        try:
            for pkt in c.demux([s for s in (vs, aus) if s is not None]):
                for frame in pkt.decode():
                    if isinstance(frame, av.AudioFrame):
                        n_samples += frame.samples
                        continue
                    if n_frames == 0:
                        width, height = frame.width, frame.height
                        turns = quarter_turns(frame.rotation)
                    n_frames += 1
                    if frame.time is not None:
                        last_t = float(frame.time)
        except av.error.FFmpegError as err:
            error = str(err)
        why = f" ({error})" if error else ""
        if vs is not None and n_frames == 0:
            raise DataError(path, f"video stream has no decodable frame{why}")
        if vs is not None and fps <= 0:
            raise DataError(path, "video stream has no frame rate")
        if vs is None and n_samples == 0:
            raise DataError(path, f"audio track has no decodable sample{why}")
        audio_rate = aus.rate if aus is not None else 0
        container_s = float(c.duration / av.time_base) if c.duration else 0.0
        image = (
            vs is not None
            and aus is None
            and (
                path.suffix.lower() in IMAGE_SUFFIXES
                or (n_frames == 1 and vs.codec_context.name in IMAGE_CODECS)
            )
        )
    video_s = n_frames / fps if vs is not None else 0.0
    audio_s = n_samples / audio_rate if aus is not None else 0.0
    decoded_s = max(video_s, audio_s)
    duration = container_s or (last_t + 1.0 / fps if vs is not None else audio_s)
    partly = ""
    if error or (container_s and decoded_s < MIN_DECODED_FRACTION * container_s):
        if vs is not None:
            partly = (
                f"partly decodable: {n_frames} of ~{round(container_s * fps)} frames "
                f"({video_s:.2f} s of {container_s:.2f} s)"
            )
        else:
            partly = f"partly decodable: {audio_s:.2f} s of {container_s:.2f} s of audio"
        if error:
            partly += f"; decoding stopped with an error ({error})"
        duration = decoded_s
    if turns % 2:
        width, height = height, width
    if image:
        modality = "image"
    elif vs is not None:
        modality = "audio_video" if aus is not None else "video"
    else:
        modality = "audio"
    return MediaInfo(
        duration_s=round(duration, 6),
        has_video=vs is not None,
        fps=round(fps, 6),
        n_frames=n_frames,
        width=width,
        height=height,
        has_audio=aus is not None,
        audio_rate_hz=int(audio_rate),
        modality=modality,
        partly_decodable=partly,
    )


def iter_video_frames(path: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, time_s, rgb uint8 [H, W, 3])`` for every ``every``-th frame.

    Times come from the stream's presentation timestamps (true times, not index / fps).
    Frames come as displayed: a display-matrix rotation (phone videos) is applied with
    ``np.rot90`` (see :func:`quarter_turns`; flips in the matrix are not applied). A decoder
    error after the first frame ends the video there with a warning (the partly decodable
    case that :func:`probe` reports); before it, it raises.
    """
    with _open(path) as c:
        vs = _video_stream(c)
        if vs is None:
            raise DataError(path, "has no video stream")
        vs.thread_type = "AUTO"
        index = 0
        try:
            for frame in c.decode(vs):
                if index % every == 0:
                    t = (
                        float(frame.time)
                        if frame.time is not None
                        else index / float(vs.average_rate)
                    )
                    rgb = frame.to_ndarray(format="rgb24")
                    turns = quarter_turns(frame.rotation)
                    yield index, t, np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
                index += 1
        except av.error.FFmpegError as err:
            if index == 0:
                raise DataError(path, f"video decoding failed at frame 0 ({err})") from None
            log.warning(
                "%s: video decoding stopped at frame %d (%s); using the frames before it",
                path,
                index,
                err,
            )


def audio_rate(path: str | Path) -> int:
    """Sample rate (Hz) of the first audio track.

    Raises
    ------
    DataError
        No audio track.
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise DataError(path, "has no audio track")
        return int(c.streams.audio[0].rate)


def iter_audio(
    path: str | Path, sample_rate_hz: int | None = None, chunk_s: float = 1.0
) -> Iterator[np.ndarray]:
    """Decode the first audio track to mono float32, about ``chunk_s`` seconds at a time.

    Memory holds one chunk, whatever the length of the track. The chunks, concatenated, are
    :func:`read_audio`'s waveform (at ``sample_rate_hz``, FFmpeg's resampler; ``None`` keeps
    the file's rate, :func:`audio_rate`).

    Raises
    ------
    DataError
        No audio track, the track cannot be decoded, or it holds no samples. A track whose
        decoding fails part-way yields the part before the failure, with a warning.
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise DataError(path, "has no audio track")
        stream = c.streams.audio[0]
        rate = sample_rate_hz or stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pending: list[np.ndarray] = []
        n_pending = n_done = 0
        try:
            for frame in c.decode(stream):
                frame.pts = None  # let the resampler re-time; avoids gaps on odd timestamps
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    n_pending += len(pending[-1])
                if n_pending >= chunk_s * rate:
                    yield np.concatenate(pending).astype(np.float32, copy=False)
                    n_done += n_pending
                    pending, n_pending = [], 0
        except av.error.FFmpegError as err:
            if not n_done + n_pending:
                raise DataError(path, f"audio decoding failed ({err})") from None
            log.warning(
                "%s: audio decoding stopped after %.2f s (%s); using the part before it",
                path,
                (n_done + n_pending) / rate,
                err,
            )
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1))
            n_pending += len(pending[-1])
        if n_pending:
            yield np.concatenate(pending).astype(np.float32, copy=False)
        if not n_done + n_pending:
            raise DataError(path, "audio track holds no samples")


def read_audio(path: str | Path, sample_rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio track to mono float32 (all of it: :func:`iter_audio` streams).

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
    rate = sample_rate_hz or audio_rate(path)
    return np.concatenate(list(iter_audio(path, rate))), int(rate)


def as_fraction(fps: float) -> Fraction:
    """A frame rate as the fraction FFmpeg expects (29.97 -> 30000/1001)."""
    if abs(fps - 29.97) < 1e-3:
        return Fraction(30000, 1001)
    return Fraction(fps).limit_denominator(1001)


def encode_mp4(
    dst: str | Path,
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate_hz: int = 16000,
    bit_rate: int = 1_500_000,
    *,
    rotation_deg: int = 0,
    faststart: bool = False,
) -> None:
    """Write RGB uint8 frames (MPEG-4 video) and optional mono audio (AAC) to an MP4 file.

    Parameters
    ----------
    frames : iterable of (H, W, 3) uint8, consumed one at a time (long videos stream)
    size : (W, H) in pixels; fps : frames per second (29.97 is written as 30000/1001)
    audio : (S,) float32 in [-1, 1] at ``audio_rate_hz``, or None for a video without audio
    rotation_deg : display rotation written to the container's display matrix, degrees
        counter-clockwise (as a phone does; the frames are stored as given)
    faststart : put the index (``moov``) before the media data, as streaming files do

    Encoding is single-threaded and the container holds no timestamps of the run, so the
    same inputs give the same bytes.
    """
    w, h = size
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(dst), "w", format="mp4", options=options) as out:
        vs = out.add_stream("mpeg4", rate=as_fraction(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.bit_rate = bit_rate
        vs.thread_count = 1
        if rotation_deg:
            vs.set_display_rotation(rotation_deg)
        aus = (
            out.add_stream("aac", rate=audio_rate_hz, layout="mono") if audio is not None else None
        )
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if aus is not None:
            audio = np.asarray(audio, np.float32)
            for k in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(
                    audio[None, k : k + 1024], format="flt", layout="mono"
                )
                af.sample_rate, af.pts = audio_rate_hz, k
                for pkt in aus.encode(af):
                    out.mux(pkt)
            for pkt in aus.encode():
                out.mux(pkt)
