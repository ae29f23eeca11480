"""Logarithmic class weights for imbalanced emotion classes.

The ABAW 2020 system (Dresvyanskiy, Ryumina, Kaya et al.) weights class ``i`` by

    w_i = max(1, ln(r * N / n_i))

where ``N`` is the number of labelled samples, ``n_i`` the count of class ``i`` and
``r`` a smoothing constant (the paper uses ``r = 0.47`` for the SVM and ``r = 0.34``
for the end-to-end audio CNN). Frequent classes get weight 1, rare classes a weight
that grows only logarithmically with their rarity.

Labels of ``-1`` are "no label" (as in ABAW) and are ignored when counting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MASK_LABEL", "log_class_weights", "as_sklearn_class_weight"]

#: Label value meaning "no label"; ignored by every count here.
MASK_LABEL = -1


def log_class_weights(
    y: np.ndarray, n_classes: int, r: float, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Logarithmic class weights ``w_i = max(1, ln(r * N / n_i))``.

    Parameters
    ----------
    y : int array of any shape
        Class indices in ``[0, n_classes)``; ``-1`` marks unlabelled samples, which are
        ignored (a sequence label array ``[N, S]`` may be passed as is).
    n_classes : int
        Number of classes K (>= 1).
    r : float
        Smoothing constant (> 0); 0.47 (SVM) or 0.34 (audio CNN) in the paper.
    sample_weight : float array of the shape of ``y``, optional
        Non-negative per-sample weights. ``N`` and ``n_i`` become sums of weights
        instead of counts (an integer weight is the same as repeating the sample).
        Without it every sample counts 1, as in the paper.

    Returns
    -------
    (n_classes,) float64 array
        Weights, all ``>= 1`` and finite.

    Notes
    -----
    A class absent from ``y`` (``n_i = 0``) would get ``ln(r N / 0) = inf``. It gets
    instead the largest weight of the classes that are present (1 if every present
    class has weight 1), so that the result stays finite and such a class is
    treated like the rarest one seen. A warning is logged.

    Raises
    ------
    ValueError
        If ``r <= 0``, ``n_classes < 1``, ``y`` holds no labelled sample, or a label is
        outside ``[0, n_classes)`` and not ``-1``.
    """
    if not r > 0:
        raise ValueError(f"r must be > 0, got {r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    y = np.asarray(y).ravel()
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y must hold integer class indices")
        y = y.astype(np.int64)
    if sample_weight is None:
        sw = np.ones(y.shape, dtype=np.float64)
    else:
        sw = np.asarray(sample_weight, dtype=np.float64).ravel()
        if sw.shape != y.shape or np.any(sw < 0) or not np.all(np.isfinite(sw)):
            raise ValueError("sample_weight must be finite, non-negative and shaped like y")
    mask = y != MASK_LABEL
    labelled, sw = y[mask], sw[mask]
    if labelled.size == 0 or not sw.sum() > 0:
        raise ValueError(
            "y holds no labelled sample (all labels are -1, y is empty, or all weights are 0)"
        )
    if labelled.min() < 0 or labelled.max() >= n_classes:
        raise ValueError(
            f"labels must be in [0, {n_classes}) or -1; got range "
            f"[{labelled.min()}, {labelled.max()}]"
        )
    counts = np.bincount(labelled.astype(np.int64), weights=sw, minlength=n_classes)
    n_total = float(counts.sum())
    present = counts > 0
    weights = np.ones(n_classes, dtype=np.float64)
    weights[present] = np.maximum(1.0, np.log(r * n_total / counts[present]))
    if not present.all():
        fill = float(weights[present].max())
        weights[~present] = fill
        log.warning(
            "log_class_weights: classes %s absent from y; given the largest present weight %.4f",
            np.flatnonzero(~present).tolist(),
            fill,
        )
    return weights


def as_sklearn_class_weight(weights: np.ndarray, classes: Sequence | np.ndarray) -> dict:
    """Turn a weight vector into a scikit-learn ``class_weight`` dict.

    Parameters
    ----------
    weights : (K,) float array
        One weight per class, in the order of ``classes``.
    classes : (K,) array-like
        Class labels (as they appear in ``y`` passed to the estimator's ``fit``).

    Returns
    -------
    dict
        ``{label: weight}`` with Python scalars (``int``/``str``/``float``) as keys and
        ``float`` values.

    Raises
    ------
    ValueError
        If the lengths differ.
    """
    weights = np.asarray(weights, dtype=np.float64).ravel()
    classes = np.asarray(classes).ravel()
    if weights.shape != classes.shape:
        raise ValueError(f"{weights.size} weights for {classes.size} classes")
    return {(c.item() if hasattr(c, "item") else c): float(w) for c, w in zip(classes, weights)}
