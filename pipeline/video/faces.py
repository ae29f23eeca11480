"""Per-video face track: sample frames, detect, follow the main face, align, keep every slot.

Output arrays of :func:`face_track` (one row per sampled frame, in time order):

- ``t`` float64 [T] true presentation time in seconds; ``frame_index`` int32 [T]
- ``faces`` uint8 [T, S, S, 3] aligned RGB crops
- ``boxes`` float32 [T, 4] (x1, y1, x2, y2 px), ``landmarks`` float32 [T, 5, 2],
  ``scores`` float32 [T] — NaN where no face was found
- ``valid`` bool [T] — False where no face was found. Such frames keep their slot and hold
  the filler: zeros (``fill: zeros``) or the last valid face (``fill: last``; zeros before
  the first valid face).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.media import iter_video_frames
from pipeline.video.align import enlarged_crop, similarity_align
from pipeline.video.detectors import get_detector
from pipeline.video.track import pick_main_faces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceConfig:
    """Settings of :func:`face_track` (the ``detect_faces`` params; no defaults here:
    params.yaml holds them)."""

    detector: str  # mtcnn | dlib
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


def face_track(path: str | Path, video_fps: float, cfg: FaceConfig) -> dict[str, np.ndarray]:
    """Detect, track and align the main face of one video (see module docstring)."""
    det = get_detector(cfg.detector, cfg.min_face_px, cfg.dlib_landmarks, cfg.dlib_upsample)
    idx, ts, dets, frames = [], [], [], []
    batch: list[np.ndarray] = []

    def flush() -> None:
        dets.extend(det.detect(batch))
        frames.extend(batch)
        batch.clear()

    for index, t, rgb in sample_frames(path, cfg.fps, video_fps):
        idx.append(index)
        ts.append(t)
        batch.append(rgb)
        if len(batch) == cfg.batch_size:
            flush()
    flush()
    chosen = pick_main_faces(dets, cfg.track)
    n, s = len(chosen), cfg.size_px
    faces = np.zeros((n, s, s, 3), np.uint8)
    boxes = np.full((n, 4), np.nan, np.float32)
    marks = np.full((n, 5, 2), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    valid = np.zeros(n, bool)
    last = None
    for i, (d, rgb) in enumerate(zip(chosen, frames)):
        if d is None:
            if cfg.fill == "last" and last is not None:
                faces[i] = last
            continue
        faces[i] = (
            similarity_align(rgb, d.landmarks, s)
            if cfg.align == "similarity"
            else enlarged_crop(rgb, d.box, s, cfg.crop_margin)
        )
        boxes[i], marks[i], scores[i], valid[i] = d.box, d.landmarks, d.score, True
        last = faces[i]
    return {
        "t": np.asarray(ts, np.float64),
        "frame_index": np.asarray(idx, np.int32),
        "faces": faces,
        "boxes": boxes,
        "landmarks": marks,
        "scores": scores,
        "valid": valid,
    }


def detect_faces_job(job, digest: str, cfg: FaceConfig) -> None:
    """Per-video worker of the ``detect_faces`` stage: face track -> ``job.out`` (HDF5).

    The report entry (sampled frames, frames with a face, found rate) is stored as the
    file's ``report`` attribute. A row without a video stream (``job.info["skip"]`` holds
    why) raises :class:`~pipeline.io.per_video.Skip` and gets no file.
    """
    from pipeline.io.h5 import write_h5
    from pipeline.io.per_video import Skip

    if job.info.get("skip"):
        raise Skip(job.info["skip"])
    arrays = face_track(job.inputs[0], job.info["fps"], cfg)
    n, found = len(arrays["t"]), int(arrays["valid"].sum())
    entry = {"frames": n, "with_face": found, "found_rate": round(found / max(n, 1), 4)}
    write_h5(
        job.out,
        {job.video_id: arrays},
        stage="detect_faces",
        params_digest=digest,
        fps=float(cfg.fps or job.info["fps"]),
        dim=cfg.size_px,
        detector=cfg.detector,
        align=cfg.align,
        fill=cfg.fill,
        report=entry,
        runtime=job.info.get("runtime"),
    )
    if found == 0:
        log.warning(
            "%s: no face in any of %d sampled frames (all slots valid=False)", job.video_id, n
        )
