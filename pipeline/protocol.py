"""The official evaluation protocol: which units a headline number counts.

Models and fusion deliver scores on the 5 Hz grid. The headline metrics count the units the
source challenges count:

- per-frame labels (Aff-Wild2, the demo): every frame of the video at its own frame rate.
  The 5 Hz scores are mapped back with :func:`pipeline.labels.resample.grid_to_frames`
  (``hold`` for expressions, ``linear`` for valence/arousal), frames labelled -1 (NaN for
  valence/arousal) are masked, as ABAW 2020 computes CPM and CCC;
- clip labels (CREMA-D, EmoDB, RAVDESS, AFEW, eNTERFACE): one prediction per clip, the
  argmax of the mean of its 5 Hz scores.

The 5 Hz figures stay as secondary figures (``grid_5hz`` in ``metrics.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.labels.resample import frame_labels, grid_to_frames


@dataclass(frozen=True)
class Units:
    """The scored units of one split, pooled over its videos.

    ``y``: (U,) int class (-1 masked) or (U, 2) float valence/arousal (NaN masked);
    ``pred``: (L, U) int predicted class or (L, U, 2) float, one row per model;
    ``kind``: ``frames``, ``clips`` or ``frames+clips`` (a dataset that mixes both).
    """

    y: np.ndarray
    pred: np.ndarray
    kind: str


def video_units(
    row, P: np.ndarray, *, task: str, classes: tuple[str, ...], rate_hz: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """The official units of one video.

    Parameters
    ----------
    row : manifest row of the video (label file or clip label, fps, frame count)
    P : (L, n, K) float
        The video's 5 Hz scores of L models (K = 2 valence/arousal values for ``va``).

    Returns
    -------
    (y, pred, kind): per frame, ``y`` (F,) or (F, 2) and ``pred`` (L, F) or (L, F, 2); per
    clip, ``y`` (1,) and ``pred`` (L, 1). ``kind`` is ``frames`` or ``clips``.
    """
    frames = frame_labels(row, task=task, classes=classes, rate_hz=rate_hz)
    if frames is None:
        k = [c.lower() for c in classes].index(row.clip_label)
        return np.array([k]), P.mean(axis=1).argmax(axis=-1)[:, None], "clips"
    y, frame_t = frames
    if task == "va":
        pred = np.stack([grid_to_frames(p, rate_hz, frame_t, "linear") for p in P])
        return y, pred, "frames"
    pred = np.stack([grid_to_frames(p.argmax(axis=1), rate_hz, frame_t, "hold") for p in P])
    return y, pred, "frames"


def split_units(
    rows: dict,
    P: np.ndarray,
    index: list[tuple[str, int]],
    *,
    task: str,
    classes: tuple[str, ...],
    rate_hz: float,
) -> Units:
    """Official units of a split from its stacked 5 Hz scores.

    Parameters
    ----------
    rows : {video_id: manifest row}
    P : (L, N, K) float, the split's videos concatenated in ``index`` order
        (:func:`pipeline.scores.stack_split`)
    index : [(video_id, n_bins)]
    """
    ys, preds, kinds, start = [], [], set(), 0
    for vid, n in index:
        y, pred, kind = video_units(
            rows[vid], P[:, start : start + n], task=task, classes=classes, rate_hz=rate_hz
        )
        ys.append(y)
        preds.append(pred)
        kinds.add(kind)
        start += n
    kind = "+".join(sorted(kinds, reverse=True))  # frames, clips or frames+clips
    return Units(np.concatenate(ys), np.concatenate(preds, axis=1), kind)
