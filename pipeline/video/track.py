"""Follow one person through a video instead of switching between faces."""

from __future__ import annotations

import numpy as np

from pipeline.video.detectors import Detection, box_iou


class MainFaceTracker:
    """Choose at most one face per frame, frame by frame (constant memory).

    Parameters
    ----------
    policy : {'nearest', 'largest'}
        ``largest``: the largest face in each frame. ``nearest``: the face that overlaps the
        previous chosen box most (IoU >= ``min_iou``); when none does (first frame, or after
        the person left), the largest face.
    min_iou : float
        Overlap needed to keep following the previous face.
    """

    def __init__(self, policy: str = "nearest", min_iou: float = 0.1):
        if policy not in ("nearest", "largest"):
            raise ValueError(f"unknown tracking policy {policy!r}")
        self.policy, self.min_iou = policy, min_iou
        self._last: Detection | None = None

    def pick(self, dets: list[Detection]) -> Detection | None:
        """The main face among one frame's detections (None when there is none)."""
        if not dets:
            return None  # the previous face is still followed when it comes back
        pick = max(dets, key=lambda d: d.area)
        if self.policy == "nearest" and self._last is not None:
            iou = box_iou(self._last.box, np.stack([d.box for d in dets]))[0]
            if iou.max() >= self.min_iou:
                pick = dets[int(iou.argmax())]
        self._last = pick
        return pick


def pick_main_faces(
    per_frame: list[list[Detection]], policy: str = "nearest", min_iou: float = 0.1
) -> list[Detection | None]:
    """:class:`MainFaceTracker` over a whole list of frames: one Detection or None each."""
    tracker = MainFaceTracker(policy, min_iou)
    return [tracker.pick(dets) for dets in per_frame]
