"""Follow one person through a video instead of switching between faces."""

from __future__ import annotations

import numpy as np

from pipeline.video.detectors import Detection, box_iou


def pick_main_faces(
    per_frame: list[list[Detection]], policy: str = "nearest", min_iou: float = 0.1
) -> list[Detection | None]:
    """Choose at most one face per frame.

    Parameters
    ----------
    per_frame : list of detection lists, in time order.
    policy : {'nearest', 'largest'}
        ``largest``: the largest face in each frame. ``nearest``: the face that overlaps the
        previous chosen box most (IoU >= ``min_iou``); when none does (first frame, or after
        the person left), the largest face.

    Returns
    -------
    One Detection or None (no face) per frame.
    """
    if policy not in ("nearest", "largest"):
        raise ValueError(f"unknown tracking policy {policy!r}")
    chosen: list[Detection | None] = []
    last: Detection | None = None
    for dets in per_frame:
        if not dets:
            chosen.append(None)
            continue
        pick = max(dets, key=lambda d: d.area)
        if policy == "nearest" and last is not None:
            iou = box_iou(last.box, np.stack([d.box for d in dets]))[0]
            if iou.max() >= min_iou:
                pick = dets[int(iou.argmax())]
        chosen.append(pick)
        last = pick
    return chosen
