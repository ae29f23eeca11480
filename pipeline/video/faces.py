"""Per-video face track: sample frames, detect, follow the main face, align, keep every slot.

The track is computed and written a few frames at a time (:func:`iter_face_track`, appended
to the video's HDF5 file by :func:`detect_faces_job`), so memory stays at one detector batch
of decoded frames whatever the length or resolution of the video.

Arrays of a face track (one row per sampled frame, in time order):

- ``t`` float64 [T] true presentation time in seconds; ``frame_index`` int32 [T]
- ``faces`` uint8 [T, S, S, 3] aligned RGB crops
- ``boxes`` float32 [T, 4] (x1, y1, x2, y2 px), ``landmarks`` float32 [T, 5, 2],
  ``scores`` float32 [T] — NaN where no face was found
- ``valid`` bool [T] — False where no face was found. Such frames keep their slot and hold
  the filler: zeros (``fill: zeros``) or the last valid face (``fill: last``; zeros before
  the first valid face).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.media import iter_video_frames
from pipeline.video.align import enlarged_crop, similarity_align
from pipeline.video.detectors import get_detector
from pipeline.video.track import MainFaceTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceConfig:
    """Settings of :func:`face_track` (the ``detect_faces`` params; no defaults here:
    params.yaml holds them)."""

    detector: str  # mtcnn | mtcnn_torch | dlib
    fps: float | None  # sampling rate; None = every frame
    min_face_px: int
    dlib_landmarks: int  # 5 | 68
    dlib_upsample: int
    align: str  # similarity | crop
    crop_margin: float
    size_px: int
    track: str  # nearest | largest
    fill: str  # zeros | last
    batch_size: int
    device: str  # base.device (auto | cpu | cuda); only mtcnn_torch uses it
    images: str  # image rows (modality image): aligned (the image is the face) | detect


def detector_runtime(cfg: FaceConfig) -> tuple[str, list[str]]:
    """The device the detector of ``cfg`` computes on (``cpu`` or ``cuda``) and the
    distributions whose code computes a face track (for the per-video cache key)."""
    from pipeline.embed.device import resolve_device, tensorflow_device

    packages = ["av", "dlib-bin", "mtcnn", "numpy", "opencv-python-headless", "tensorflow"]
    if cfg.detector == "mtcnn_torch":
        return resolve_device(cfg.device), packages + ["torch"]
    # mtcnn runs on the device TensorFlow picks, dlib on the CPU
    return ("cpu" if cfg.detector == "dlib" else tensorflow_device()), packages


def sample_frames(path: str | Path, fps: float | None, video_fps: float):
    """Yield ``(index, t, rgb)`` of the frames nearest to a ``fps`` grid (all if None)."""
    if fps is None or fps >= video_fps:
        yield from iter_video_frames(path)
        return
    next_t = None
    half = 0.5 / video_fps
    for index, t, rgb in iter_video_frames(path):
        if next_t is None:
            next_t = t
        if t + half >= next_t:
            yield index, t, rgb
            while next_t <= t + half:
                next_t += 1.0 / fps


def expected_rows(duration_s: float, video_fps: float, fps: float | None) -> int | None:
    """About how many frames :func:`sample_frames` yields for a video (None if unknown).

    Parameters
    ----------
    duration_s : float
        The container's duration in seconds (the manifest's ``duration_s``).
    video_fps : float
        The video's frame rate.
    fps : float or None
        The sampling rate (``detect_faces.fps``); None = every frame.

    Returns
    -------
    int or None
        ``ceil(duration_s * rate) + 1`` with rate the lower of ``fps`` and ``video_fps``;
        None when the duration or frame rate is not positive.
    """
    if not duration_s or duration_s <= 0 or not video_fps or video_fps <= 0:
        return None
    rate = video_fps if fps is None else min(fps, video_fps)
    return math.ceil(duration_s * rate) + 1


YIELD_ROWS = 32  # aligned faces handed to the writer at a time (about 1 MB at 112 px)


def face_rows(size_px: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Per-frame row shape and dtype of every array of a face track (the HDF5 layout)."""
    return {
        "t": ((), np.float64),
        "frame_index": ((), np.int32),
        "faces": ((size_px, size_px, 3), np.uint8),
        "boxes": ((4,), np.float32),
        "landmarks": ((5, 2), np.float32),
        "scores": ((), np.float32),
        "valid": ((), np.bool_),
    }


def iter_face_track(
    path: str | Path, video_fps: float, cfg: FaceConfig, log_every_s: float = 30.0
) -> Iterator[dict[str, np.ndarray]]:
    """Detect, track and align the main face of one video, a few frames at a time.

    Yields
    ------
    dict
        The arrays of the module docstring for the next sampled frames (about
        ``YIELD_ROWS`` rows). Only one detector batch of decoded frames is held at a time, so
        memory does not grow with the length or the number of frames of the video. Progress
        is logged at INFO every ``log_every_s`` seconds.
    """
    det = get_detector(
        cfg.detector, cfg.min_face_px, cfg.dlib_landmarks, cfg.dlib_upsample, cfg.device
    )
    tracker = MainFaceTracker(cfg.track)
    state = {"last": None}  # the last valid aligned face (fill: last)
    n_done = n_found = 0
    next_log = time.monotonic() + log_every_s
    frames = sample_frames(path, cfg.fps, video_fps)
    pending: list[dict[str, np.ndarray]] = []
    while True:
        batch = list(itertools.islice(frames, cfg.batch_size))
        if batch:
            dets = det.detect([rgb for _, _, rgb in batch])
            pending.append(_align_batch(batch, dets, tracker, cfg, state))
            n_done += len(batch)
            n_found += int(pending[-1]["valid"].sum())
            if time.monotonic() >= next_log:
                log.info(
                    "%s: %d frames sampled (t = %.1f s), %d with a face",
                    Path(path).name,
                    n_done,
                    batch[-1][1],
                    n_found,
                )
                next_log = time.monotonic() + log_every_s
        if pending and (not batch or sum(len(p["t"]) for p in pending) >= YIELD_ROWS):
            yield _concat_rows(pending)
            pending = []
        if not batch:
            return


def _align_batch(
    batch: list[tuple[int, float, np.ndarray]],
    dets: list[list],
    tracker: MainFaceTracker,
    cfg: FaceConfig,
    state: dict,
) -> dict[str, np.ndarray]:
    """Pick the main face of each frame of a batch and align it (arrays of the batch)."""
    n, s = len(batch), cfg.size_px
    faces = np.zeros((n, s, s, 3), np.uint8)
    boxes = np.full((n, 4), np.nan, np.float32)
    marks = np.full((n, 5, 2), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    valid = np.zeros(n, bool)
    for i, ((_, _, rgb), frame_dets) in enumerate(zip(batch, dets)):
        d = tracker.pick(frame_dets)
        if d is None:
            if cfg.fill == "last" and state["last"] is not None:
                faces[i] = state["last"]
            continue
        faces[i] = (
            similarity_align(rgb, d.landmarks, s)
            if cfg.align == "similarity"
            else enlarged_crop(rgb, d.box, s, cfg.crop_margin)
        )
        boxes[i], marks[i], scores[i], valid[i] = d.box, d.landmarks, d.score, True
        state["last"] = faces[i].copy()
    return {
        "t": np.array([t for _, t, _ in batch], np.float64),
        "frame_index": np.array([index for index, _, _ in batch], np.int32),
        "faces": faces,
        "boxes": boxes,
        "landmarks": marks,
        "scores": scores,
        "valid": valid,
    }


def aligned_image_track(path: str | Path, size_px: int) -> dict[str, np.ndarray]:
    """The face track of a still image that already is an aligned face crop (FER-2013,
    the aligned sets of RAF-DB or AffectNet): one valid row, the image resized to
    ``size_px`` (grey becomes RGB), box = the whole image, landmarks NaN, score 1.

    No detector runs: a 48x48 FER-2013 face is smaller than MTCNN's and dlib's smallest
    search window once it fills the frame, so detection mostly finds nothing.
    """
    _, _, rgb = next(iter_video_frames(path))
    h, w = rgb.shape[:2]
    shrink = max(h, w) > size_px
    face = cv2.resize(
        rgb, (size_px, size_px), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )
    return {
        "t": np.zeros(1),
        "frame_index": np.zeros(1, np.int32),
        "faces": face[None],
        "boxes": np.array([[0, 0, w, h]], np.float32),
        "landmarks": np.full((1, 5, 2), np.nan, np.float32),
        "scores": np.ones(1, np.float32),
        "valid": np.ones(1, bool),
    }


def face_track(path: str | Path, video_fps: float, cfg: FaceConfig) -> dict[str, np.ndarray]:
    """The whole face track of one video in memory (short clips, tests, benchmarks; the
    stage streams :func:`iter_face_track` to disk instead)."""
    parts = list(iter_face_track(path, video_fps, cfg))
    if not parts:
        return {
            name: np.zeros((0,) + shape, dtype)
            for name, (shape, dtype) in face_rows(cfg.size_px).items()
        }
    return _concat_rows(parts)


def _concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Consecutive pieces of a face track joined along time."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def detect_faces_job(job, digest: str, cfg: FaceConfig) -> None:
    """Per-video worker of the ``detect_faces`` stage: face track -> ``job.out`` (HDF5).

    The report entry (sampled frames, frames with a face, found rate) is stored as the
    file's ``report`` attribute.
    """
    from pipeline.io.h5 import open_writer

    with open_writer(
        job.out,
        stage="detect_faces",
        params_digest=digest,
        fps=float(cfg.fps or job.info["fps"]),
        dim=cfg.size_px,
        detector=cfg.detector,
        align=cfg.align,
        fill=cfg.fill,
        runtime=job.info.get("runtime"),
    ) as writer:
        if job.info.get("image") and cfg.images == "aligned":
            # one row: a plain group. A streamed one reserves a 1 MiB chunk per dataset,
            # about 6 MB per image, 200 GB for FER-2013's 32,298 rows.
            track = aligned_image_track(job.inputs[0], cfg.size_px)
            writer.add(job.video_id, **track)
            n, found = 1, int(track["valid"].sum())
        else:
            # chunks sized by the clip's expected frames: a 1 MiB chunk per small dataset
            # would reserve about 6 MB per clip, 45 GB for CREMA-D's 7,442 clips
            expected = expected_rows(job.info.get("duration_s", 0.0), job.info["fps"], cfg.fps)
            rows = writer.stream(job.video_id, face_rows(cfg.size_px), expected_rows=expected)
            found = 0
            for part in iter_face_track(job.inputs[0], job.info["fps"], cfg):
                rows.append(**part)
                found += int(part["valid"].sum())
            n = rows.n
        entry = {"frames": n, "with_face": found, "found_rate": round(found / max(n, 1), 4)}
        writer.set_attrs(report=entry)
    if found == 0:
        log.warning(
            "%s: no face in any of %d sampled frames (all slots valid=False)", job.video_id, n
        )
