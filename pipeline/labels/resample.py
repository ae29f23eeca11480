"""Labels at a video's own frame rate <-> the pipeline's common 5 Hz grid.

The grid: bin ``k`` covers ``[k / rate, (k + 1) / rate)`` seconds and is stamped at its
centre ``t_k = (k + 0.5) / rate``; a video of ``duration_s`` has ``ceil(duration_s * rate)``
bins. Frame ``i`` of a video at ``fps`` frames per second lies at ``i / fps``.

- Categorical labels: each bin takes the most frequent valid label of its frames (ties go to
  the smallest class index, so results are deterministic); a bin without a valid label is
  -1. Continuous valence/arousal: the mean of valid (non-NaN) rows, NaN if none.
- A label file shorter than its video leaves the missing tail frames unannotated (-1/NaN);
  lines beyond the last video frame are ignored (see :func:`fit_to_frames`).
- Clip-level labels (CREMA-D, AFEW) become constant per-frame labels.
- :func:`grid_to_frames` maps 5 Hz values (predictions) back to any frame rate.
"""

from __future__ import annotations

import math

import numpy as np


def n_bins(duration_s: float, rate_hz: float) -> int:
    """Number of grid bins covering ``duration_s`` (at least one)."""
    return max(1, math.ceil(round(duration_s * rate_hz, 9)))


def media_duration_s(row) -> float:
    """The duration the 5 Hz grid of a manifest row covers, in seconds: decoded frames / fps
    for media with a video stream, the (decoded) duration for audio-only media."""
    n_frames = row.n_frames if row.has_video else 0
    return n_frames / row.fps if n_frames else row.duration_s


def grid_times(n: int, rate_hz: float) -> np.ndarray:
    """Bin centres in seconds, float64 [n]."""
    return (np.arange(n) + 0.5) / rate_hz


def fit_to_frames(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """Pad (with -1, or NaN for float labels) or cut ``labels`` to ``n_frames`` rows."""
    if len(labels) >= n_frames:
        return labels[:n_frames]
    pad_value = np.nan if np.issubdtype(labels.dtype, np.floating) else -1
    pad = np.full((n_frames - len(labels),) + labels.shape[1:], pad_value, labels.dtype)
    return np.concatenate([labels, pad])


def _bin_index(frame_t: np.ndarray, rate_hz: float, n: int) -> np.ndarray:
    # a tiny epsilon keeps frames that sit exactly on a bin edge (i/fps == k/rate) in bin k
    return np.clip(np.floor(frame_t * rate_hz + 1e-9).astype(np.int64), 0, n - 1)


def frames_to_grid_categorical(
    labels: np.ndarray,
    frame_t: np.ndarray,
    n: int,
    rate_hz: float,
    n_classes: int,
    min_frames: int = 1,
) -> np.ndarray:
    """Most frequent valid label per bin.

    Parameters
    ----------
    labels : (F,) int, class index or -1
    frame_t : (F,) float seconds
    n : number of bins; rate_hz : grid rate
    n_classes : K
    min_frames : a bin with fewer valid frames than this is -1

    Returns
    -------
    (n,) int8, -1 where a bin has too few valid frames.
    """
    ok = labels >= 0
    b = _bin_index(frame_t[ok], rate_hz, n)
    counts = np.bincount(b * n_classes + labels[ok].astype(np.int64), minlength=n * n_classes)
    counts = counts.reshape(n, n_classes)
    out = counts.argmax(axis=1).astype(np.int8)  # argmax returns the first (smallest) on ties
    out[counts.sum(axis=1) < max(1, min_frames)] = -1
    return out


def frames_to_grid_continuous(
    values: np.ndarray, frame_t: np.ndarray, n: int, rate_hz: float, min_frames: int = 1
) -> np.ndarray:
    """Mean of valid rows per bin: ``values`` (F, D) float with NaN = invalid -> (n, D) float32.

    Bins with fewer than ``min_frames`` valid rows are NaN.
    """
    ok = ~np.isnan(values).any(axis=1)
    b = _bin_index(frame_t[ok], rate_hz, n)
    sums = np.zeros((n, values.shape[1]), np.float64)
    np.add.at(sums, b, values[ok])
    cnt = np.bincount(b, minlength=n)[:, None].astype(np.float64)
    cnt[cnt < max(1, min_frames)] = np.nan
    return (sums / cnt).astype(np.float32)


def grid_to_frames(
    values: np.ndarray, rate_hz: float, frame_t: np.ndarray, method: str = "hold"
) -> np.ndarray:
    """Map grid values (``values`` [n, ...] at bin centres) to frame times ``frame_t`` [F].

    ``hold``: each frame takes the value of the bin it falls in (right for class labels and
    argmax predictions). ``linear``: linear interpolation between bin centres, held flat
    before the first and after the last centre (for scores and valence/arousal).
    """
    n = len(values)
    if method == "hold":
        return values[_bin_index(frame_t, rate_hz, n)]
    if method != "linear":
        raise ValueError(f"unknown method {method!r}; use 'hold' or 'linear'")
    centres = grid_times(n, rate_hz)
    flat = values.reshape(n, -1).astype(np.float64)
    out = np.stack([np.interp(frame_t, centres, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape((len(frame_t),) + values.shape[1:]).astype(values.dtype)


def frame_labels(
    row, *, task: str, classes: tuple[str, ...], rate_hz: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-frame labels of one manifest row and their times, or None for a clip label.

    Returns ``(labels, frame_t)``: labels (F,) int (-1 unannotated) for ``task='expr'`` or
    (F, 2) float (NaN unannotated) for ``task='va'``, fitted to the video's decoded frame
    count; ``frame_t`` (F,) seconds, frame ``i`` at ``i / fps``. Audio-only media with a
    per-frame file take the file's own length at ``rate_hz``.
    """
    from pipeline.labels.files import read_expr_labels, read_va_labels

    if not row.label_file:
        return None
    fps = row.fps if row.has_video else 0.0
    n_frames = row.n_frames if row.has_video else 0
    labels = (
        read_expr_labels(row.label_file, classes)
        if task == "expr"
        else read_va_labels(row.label_file)
    )
    if not n_frames:
        n_frames, fps = len(labels), rate_hz
    return fit_to_frames(labels, n_frames), np.arange(n_frames) / fps


def video_labels_5hz(
    row, *, task: str, classes: tuple[str, ...], rate_hz: float, min_frames: int = 1
) -> dict[str, np.ndarray]:
    """The 5 Hz labels of one manifest row (per-frame file or clip label).

    Returns ``{"t": [n] s, "y": [n] int8}`` for ``task='expr'`` or ``{"t", "va": [n, 2]}``
    for ``task='va'``, plus ``valid`` [n] bool (annotated bins).
    """
    n = n_bins(media_duration_s(row), rate_hz)
    t = grid_times(n, rate_hz)
    frames = frame_labels(row, task=task, classes=classes, rate_hz=rate_hz)
    if frames is not None:
        labels, frame_t = frames
        if task == "expr":
            y = frames_to_grid_categorical(labels, frame_t, n, rate_hz, len(classes), min_frames)
            return {"t": t, "y": y, "valid": y >= 0}
        va = frames_to_grid_continuous(labels, frame_t, n, rate_hz, min_frames)
        return {"t": t, "va": va, "valid": ~np.isnan(va).any(axis=1)}
    # clip-level label: constant over the clip
    k = [c.lower() for c in classes].index(row.clip_label)
    y = np.full(n, k, np.int8)
    return {"t": t, "y": y, "valid": np.ones(n, bool)}
