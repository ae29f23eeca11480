"""Evaluation measures of the ABAW 2020 challenge, with masking of unlabelled frames.

* Expression track: ``cpm = 0.67 * macro_f1 + 0.33 * accuracy``, with ``macro_f1`` the
  unweighted mean F1 over the classes that occur (in the labels or the predictions), as
  ``sklearn.metrics.f1_score(average="macro")`` computes it for ABAW 2020; a perfect
  prediction therefore scores 1 even when a class is absent. ``macro_f1_all`` averages
  over all K classes (an absent class counts 0), as later ABAW editions report it. Frames
  with label ``-1`` are not scored.
* Valence/arousal track: Lin's concordance correlation coefficient (CCC) per
  dimension; the challenge score is the mean of the two.

:func:`classification_metrics` is built on ``sklearn.metrics``; :func:`cpm_from_confusion`
scores many confusion matrices at once (the fusion weight search) and agrees with it.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

log = logging.getLogger(__name__)

__all__ = [
    "CPM_F1_WEIGHT",
    "CPM_ACC_WEIGHT",
    "classification_metrics",
    "cpm_from_confusion",
    "at_chance",
    "ccc",
    "va_metrics",
]

CPM_F1_WEIGHT = 0.67
CPM_ACC_WEIGHT = 0.33


def _check_labels(name: str, y: np.ndarray, n_classes: int) -> None:
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``y_true`` (labelled rows only;
    0 for none)."""
    if len(y_true) == 0:
        return 0.0
    return float(
        recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
    )


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Expression-recognition metrics on the frames that carry a label.

    Parameters
    ----------
    y_true : (N,) int array
        True class in ``[0, n_classes)``, or ``-1`` for an unlabelled frame (masked).
    y_pred : (N,) int array
        Predicted class in ``[0, n_classes)`` (its value on masked frames is ignored).
    n_classes : int
        Number of classes K (7 for ABAW expressions).

    Returns
    -------
    dict
        ``accuracy`` : float, fraction of scored frames predicted correctly.
        ``macro_f1`` : float, unweighted mean F1 over the classes present in ``y_true``
        or ``y_pred`` (sklearn's macro F1; the F1 of CPM).
        ``macro_f1_all`` : float, unweighted mean of all K per-class F1 scores, a class
        with no true and no predicted frame counting 0.
        ``weighted_f1`` : float, per-class F1 weighted by true support.
        ``uar`` : float, unweighted average recall over the classes present in
        ``y_true`` (absent classes are left out, not counted as 0).
        ``cpm`` : float, ``0.67 * macro_f1 + 0.33 * accuracy``.
        ``per_class_f1`` : list of K floats.
        ``confusion`` : (K, K) int64 array, rows = true class, columns = predicted.
        ``n_scored`` : int, number of frames with ``y_true != -1``.

    Raises
    ------
    ValueError
        If no frame is left after masking, or a label is out of range.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length, got {y_true.shape}, {y_pred.shape}"
        )
    keep = y_true != -1
    yt, yp = y_true[keep], y_pred[keep]
    if yt.size == 0:
        raise ValueError("no labelled frames to score (every y_true is -1 or the input is empty)")
    _check_labels("y_true", yt, n_classes)
    _check_labels("y_pred", yp, n_classes)

    labels = np.arange(n_classes)
    acc = float(accuracy_score(yt, yp))
    per_class = f1_score(yt, yp, labels=labels, average=None, zero_division=0)
    macro = float(f1_score(yt, yp, average="macro", zero_division=0))
    weighted = float(f1_score(yt, yp, labels=labels, average="weighted", zero_division=0))
    return {
        "accuracy": acc,
        "macro_f1": macro,
        "macro_f1_all": float(np.mean(per_class)),
        "weighted_f1": weighted,
        "uar": uar(yt, yp),
        "cpm": CPM_F1_WEIGHT * macro + CPM_ACC_WEIGHT * acc,
        "per_class_f1": [float(v) for v in per_class],
        "confusion": confusion_matrix(yt, yp, labels=labels).astype(np.int64),
        "n_scored": int(yt.size),
    }


def cpm_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """CPM from confusion counts.

    Parameters
    ----------
    confusion : (..., K, K) int array
        Counts with rows = true class and columns = predicted class, e.g. the
        ``confusion`` entry of :func:`classification_metrics`, or a stack of them.

    Returns
    -------
    (...) float64 array
        ``0.67 * macro_f1 + 0.33 * accuracy`` with macro F1 over the classes that occur
        (true or predicted), as in :func:`classification_metrics`.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim < 2 or confusion.shape[-1] != confusion.shape[-2]:
        raise ValueError(f"confusion must be (..., K, K), got {confusion.shape}")
    n = confusion.sum(axis=(-2, -1))
    if np.any(n == 0):
        raise ValueError("confusion matrix with no counts")
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    return _cpm_from_counts(tp, confusion.sum(axis=-2), confusion.sum(axis=-1), n)


def at_chance(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, z: float = 2.0
) -> str | None:
    """Why a classifier is no better than chance on labelled frames, or None if it is.

    A model is at chance when it predicts one class on every labelled frame, or when its
    unweighted average recall (UAR) lies at or below the top of a binomial noise band around
    chance: ``uar <= 1 / C + z * se`` with C the number of classes present in ``y_true``
    (the best UAR a predictor that ignores its input can expect) and
    ``se = sqrt(sum_c (1/C) (1 - 1/C) / n_c) / C`` the standard error of the UAR of such
    a predictor, ``n_c`` being the frames of class c. Models below chance count too: with
    non-negative fusion weights they can only add noise.

    Parameters
    ----------
    y_true : (N,) int array
        True class in ``[0, n_classes)``, or ``-1`` (masked).
    y_pred : (N,) int array
        Predicted class in ``[0, n_classes)``.
    n_classes : int
        Number of classes K.
    z : float
        Width of the band in standard errors (2: about 2.3 % of chance-level models would
        score above it by luck).

    Returns
    -------
    str or None
        A one-line reason, e.g. ``"UAR 0.151 within the chance band (1/7 + 2 x 0.012, 4200
        frames)"``; None when the model is above the band.

    Notes
    -----
    Neighbouring 5 Hz frames are not independent (a clip has one label; predictions come
    from overlapping windows), so the band, computed as if they were, is narrow: the check
    catches models that are clearly at chance, not every weak one.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    keep = y_true != -1
    yt, yp = y_true[keep], y_pred[keep]
    if yt.size == 0:
        raise ValueError("no labelled frames to judge (every y_true is -1 or the input is empty)")
    _check_labels("y_true", yt, n_classes)
    _check_labels("y_pred", yp, n_classes)
    if np.unique(yp).size == 1:
        return f"predicts one class (index {int(yp[0])}) on all {yt.size} labelled frames"
    present = np.unique(yt)
    n_c = np.bincount(yt, minlength=n_classes)[present]
    hits = np.bincount(yt[yp == yt], minlength=n_classes)[present]
    uar = float(np.mean(hits / n_c))
    chance = 1.0 / present.size
    se = float(np.sqrt(np.sum(chance * (1 - chance) / n_c)) / present.size)
    if uar <= chance + z * se:
        return (
            f"UAR {uar:.3f} within the chance band (1/{present.size} + {z:g} x {se:.3f}, "
            f"{yt.size} frames)"
        )
    return None


def _cpm_from_counts(
    tp: np.ndarray, n_pred: np.ndarray, support: np.ndarray, n: np.ndarray | int
) -> np.ndarray:
    """CPM from (..., K) true-positive, predicted and true counts and (...) totals.

    Macro F1 averages over the classes that occur (true or predicted count > 0).
    """
    denom = support + n_pred
    occurs = denom > 0
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape, dtype=np.float64), where=occurs)
    macro = f1.sum(axis=-1) / np.maximum(occurs.sum(axis=-1), 1)
    return CPM_F1_WEIGHT * macro + CPM_ACC_WEIGHT * tp.sum(axis=-1) / n


def ccc(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Lin's concordance correlation coefficient between two series.

    ``ccc = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)`` with population
    (ddof = 0) moments, computed in float64.

    Parameters
    ----------
    x, y : (N,) float arrays
        E.g. true and predicted valence per frame.
    mask : (N,) bool array, optional
        Entries to use. By default every entry where both values are finite.

    Returns
    -------
    float
        CCC in ``[-1, 1]``; NaN if the denominator is 0 (both series constant and
        equal, where concordance is undefined).

    Raises
    ------
    ValueError
        If no entry is left after masking.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape}, {y.shape}")
    if mask is None:
        mask = np.isfinite(x) & np.isfinite(y)
    x, y = x[mask], y[mask]
    if x.size == 0:
        raise ValueError("no entries left to compute the CCC")
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    denom = np.mean(dx * dx) + np.mean(dy * dy) + (mx - my) ** 2
    if denom == 0.0:
        log.warning("ccc: both series are constant and equal; returning NaN")
        return float("nan")
    return float(2.0 * np.mean(dx * dy) / denom)


def va_metrics(va_true: np.ndarray, va_pred: np.ndarray) -> dict[str, float]:
    """ABAW valence/arousal scores.

    Parameters
    ----------
    va_true : (N, 2) float array
        True ``[valence, arousal]``; a value counts only if it lies in ``[-1, 1]``
        (Aff-Wild2 writes -5 for unannotated frames; NaN is also excluded). Each
        dimension is masked on its own.
    va_pred : (N, 2) float array
        Predicted ``[valence, arousal]``; non-finite predictions are excluded too.

    Returns
    -------
    dict
        ``ccc_valence``, ``ccc_arousal`` and ``ccc_mean`` (their mean, the
        challenge score), as floats.
    """
    va_true = np.asarray(va_true, dtype=np.float64)
    va_pred = np.asarray(va_pred, dtype=np.float64)
    if va_true.shape != va_pred.shape or va_true.ndim != 2 or va_true.shape[1] != 2:
        raise ValueError(f"expected two (N, 2) arrays, got {va_true.shape}, {va_pred.shape}")
    ok = (va_true >= -1.0) & (va_true <= 1.0) & np.isfinite(va_pred)
    v = ccc(va_true[:, 0], va_pred[:, 0], mask=ok[:, 0])
    a = ccc(va_true[:, 1], va_pred[:, 1], mask=ok[:, 1])
    return {"ccc_valence": v, "ccc_arousal": a, "ccc_mean": 0.5 * (v + a)}
