"""Per-video window summaries: embeddings -> 5 Hz grid -> windows of mean/std + labels.

Every feature, whatever its own rate (faces at the sampling rate, audio descriptors at the
label grid, CNN14 at 1 Hz), is first put on the video's 5 Hz label grid: each bin holds the
mean of the valid embedding frames that fall in it and is invalid when none does. Windows of
``window_s`` seconds with ``overlap`` then summarise the valid bins by their per-dimension
mean and standard deviation (2 x D). A window with fewer than ``min_valid_frac`` of its bins
valid is kept but flagged ``valid=False``; fitting skips it and the stage counts it.
"""

from __future__ import annotations

import numpy as np

from pipeline.features.windows import (
    window_bounds,
    window_centres,
    window_labels,
    window_stats,
    window_va,
)


def to_grid(
    t: np.ndarray, x: np.ndarray, valid: np.ndarray, n: int, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bin-average valid rows of ``x`` [T, D] at times ``t`` [T] onto ``n`` grid bins.

    Returns
    -------
    (x_grid [n, D] float32 (zeros where invalid), valid_grid [n] bool)
    """
    ok = valid & np.isfinite(x).all(axis=1) & (t >= 0)
    b = np.floor(t[ok] * rate_hz + 1e-9).astype(np.int64)
    inside = b < n
    b, rows = b[inside], x[ok][inside].astype(np.float64)
    sums = np.zeros((n, x.shape[1]), np.float64)
    np.add.at(sums, b, rows)
    cnt = np.bincount(b, minlength=n)
    out = np.zeros((n, x.shape[1]), np.float32)
    has = cnt > 0
    out[has] = (sums[has] / cnt[has, None]).astype(np.float32)
    return out, has


def no_windows(dim: int, labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of :func:`summarise_video` with W = 0 windows (a video without this modality).

    ``dim`` is the embedding width D (``x`` is [0, 2D]); ``labels`` decides ``y`` or ``va``.
    """
    none = np.zeros(0, np.int32)
    out = {
        "t": np.zeros(0),
        "x": np.zeros((0, 2 * dim), np.float32),
        "start": none,
        "end": none,
        "n_valid": none,
        "valid": np.zeros(0, bool),
    }
    if "y" in labels:
        out["y"] = np.zeros(0, np.int8)
    else:
        out["va"] = np.zeros((0, 2), np.float32)
    return out


def window_features(
    emb: dict[str, np.ndarray],
    t_grid: np.ndarray,
    rate_hz: float,
    *,
    window_s: float,
    overlap: float,
    min_valid_frac: float,
) -> dict[str, np.ndarray]:
    """Window features of one video, without labels (what a model needs to score it).

    Parameters
    ----------
    emb : ``t`` [T], ``x`` [T, D], ``valid`` [T] (an embedding group)
    t_grid : [n] the video's 5 Hz bin centres (s); n = number of grid bins

    Returns
    -------
    ``t`` [W] window centres (s), ``x`` [W, 2D] float32, ``start``/``end`` [W] int32 grid
    bins, ``n_valid`` [W], ``valid`` [W] bool.
    """
    n = len(t_grid)
    xg, vg = to_grid(emb["t"], emb["x"], emb["valid"], n, rate_hz)
    starts, ends = window_bounds(n, rate_hz, window_s, overlap)
    feats, n_valid = window_stats(xg, vg, starts, ends)
    need = np.maximum(1, np.ceil(min_valid_frac * (ends - starts))).astype(int)
    return {
        "t": window_centres(t_grid, starts, ends),
        "x": np.nan_to_num(feats).astype(np.float32),
        "start": starts.astype(np.int32),
        "end": ends.astype(np.int32),
        "n_valid": n_valid.astype(np.int32),
        "valid": n_valid >= need,
    }


def summarise_video(
    emb: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    rate_hz: float,
    *,
    window_s: float,
    overlap: float,
    min_valid_frac: float,
    n_classes: int,
) -> dict[str, np.ndarray]:
    """Window features and labels of one video.

    Parameters
    ----------
    emb : ``t`` [T], ``x`` [T, D], ``valid`` [T] (an embedding group)
    labels : the video's 5 Hz labels: ``t`` [n] and ``y`` [n] (expr) or ``va`` [n, 2]

    Returns
    -------
    The arrays of :func:`window_features`, plus ``y`` [W] int8 (expr) or ``va`` [W, 2].
    """
    out = window_features(
        emb,
        labels["t"],
        rate_hz,
        window_s=window_s,
        overlap=overlap,
        min_valid_frac=min_valid_frac,
    )
    starts, ends = out["start"].astype(np.int64), out["end"].astype(np.int64)
    if "y" in labels:
        out["y"] = window_labels(labels["y"], starts, ends, n_classes).astype(np.int8)
    else:
        out["va"] = window_va(labels["va"], starts, ends).astype(np.float32)
    return out
