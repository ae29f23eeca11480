"""Support vector machine with the settings of the ABAW 2020 system.

The paper's best SVM on window-level features uses a polynomial kernel (degree 3,
gamma 0.1), C = 3 and the logarithmic class weights ``max(1, ln(r N / n_i))`` with
r = 0.47 (see :mod:`pipeline.models.class_weights`). :func:`make_svm` builds that
model as a scikit-learn pipeline ``StandardScaler -> SVC`` with Platt-scaled
probabilities.

Why the scaler: ``gamma = 0.1`` is an absolute scale on ``x . x'``, so without
standardisation the kernel's behaviour depends on the units and dimension of the
features (a polynomial kernel of unscaled 2048-d embeddings overflows to huge values and
makes the SVM badly conditioned). Standardising each feature to zero mean and unit
variance on the training data makes the paper's gamma meaningful for any feature set;
the scaler is fitted inside the pipeline, so no test statistics leak into it.

Probabilities: scikit-learn 1.9 deprecates ``SVC(probability=True)`` (removal in 1.11)
and names ``CalibratedClassifierCV(SVC(), ensemble=False)`` as its replacement. Both do
Platt scaling of the SVM scores fitted on internal cross-validation predictions and a
final SVC fitted on all data; the replacement calibrates one sigmoid per class
(one-vs-rest, then normalised) where libsvm used pairwise coupling. :func:`make_svm`
uses the replacement. Its folds come from :func:`calibration_folds`: grouped by video where
the data allow (windows of one video overlap, so a video in both the fitting and the
calibration part of a fold makes the sigmoid over-confident), else stratified; neither
shuffles, so fitting is deterministic.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pipeline.models.class_weights import as_sklearn_class_weight, log_class_weights

log = logging.getLogger(__name__)

__all__ = ["calibration_folds", "make_svm"]


def calibration_folds(
    y: np.ndarray, groups: np.ndarray | None, max_folds: int = 5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds for the SVM's Platt scaling: by group (video) if possible, else stratified.

    Grouped folds (``StratifiedGroupKFold``, unshuffled) are used with the most folds, at most
    ``max_folds``, for which every fitting part still holds every class of ``y`` (the
    calibration needs each class's decision values). If no such split exists (for example a
    class seen in one video only), the folds are ``StratifiedKFold`` on windows, and a
    warning says that calibration sees windows of its own training videos.

    Parameters
    ----------
    y : (N,) int array
        Training labels.
    groups : (N,) array or None
        Group (video id) of each window; None gives stratified folds.
    max_folds : int
        Upper bound on the number of folds.

    Returns
    -------
    list of (train indices, calibration indices)
    """
    y = np.asarray(y)
    classes = np.unique(y)
    counts = np.bincount(np.searchsorted(classes, y))
    if groups is not None:
        # StratifiedGroupKFold refuses more folds than the largest class has windows
        for k in range(min(max_folds, len(np.unique(groups)), counts.max()), 1, -1):
            folds = list(StratifiedGroupKFold(n_splits=k).split(np.zeros(len(y)), y, groups))
            if all(np.array_equal(np.unique(y[tr]), classes) for tr, _ in folds):
                return folds
        log.warning(
            "SVM calibration: too few videos per class for folds by video; "
            "using stratified folds over windows"
        )
    if counts.min() < 2:  # it would be missing from the fitting part of one fold
        raise ValueError(
            "SVM calibration needs two or more training windows per class; class counts are "
            f"{dict(zip(classes.tolist(), counts.tolist()))} (take svm out of fit.models)"
        )
    k = int(max(2, min(max_folds, counts.min())))
    return list(StratifiedKFold(n_splits=k).split(np.zeros(len(y)), y))


def make_svm(
    C: float = 3.0,
    kernel: str = "poly",
    gamma: float | str = 0.1,
    degree: int = 3,
    class_weight_r: float | None = 0.47,
    y: np.ndarray | None = None,
    n_classes: int | None = None,
    random_state: int | None = None,
    *,
    scale: bool = True,
    probability: bool = True,
    calibration_cv: int | list[tuple[np.ndarray, np.ndarray]] = 5,
) -> Pipeline | CalibratedClassifierCV | SVC:
    """Build the paper's SVM (unfitted), with logarithmic class weights.

    Parameters
    ----------
    C : float, default=3.0
        SVM regularisation parameter.
    kernel : {'poly', 'rbf', 'linear', 'sigmoid'}, default='poly'
        SVC kernel.
    gamma : float or {'scale', 'auto'}, default=0.1
        Kernel coefficient (on standardised features when ``scale=True``).
    degree : int, default=3
        Degree of the polynomial kernel.
    class_weight_r : float or None, default=0.47
        ``r`` of the logarithmic class weights; None disables class weighting.
    y : int array or None
        Training labels (class indices in ``[0, n_classes)``, ``-1`` = unlabelled and
        ignored in the counts) from which the class weights are computed. Required when
        ``class_weight_r`` is not None. The weights are fixed here; refitting the
        returned model on other labels keeps them.
    n_classes : int or None
        Number of classes K; defaults to ``max(y) + 1``. A class absent from ``y``
        gets the largest weight of the present classes (see
        :func:`~pipeline.models.class_weights.log_class_weights`).
    random_state : int or None
        Passed to the SVC (which only uses it for libsvm's own probability estimates,
        off here); the calibration folds are unshuffled, so fitting is deterministic.
    scale : bool, keyword-only, default=True
        Put a ``StandardScaler`` before the classifier (recommended, see the module
        docstring); False returns the classifier alone.
    probability : bool, keyword-only, default=True
        Wrap the SVC in ``CalibratedClassifierCV(method='sigmoid', ensemble=False)`` so
        the model has ``predict_proba`` (Platt scaling; see the module docstring).
        False gives a plain SVC (``decision_function`` and ``predict`` only).
    calibration_cv : int or list of (train, test) index arrays, keyword-only, default=5
        Folds of the Platt-scaling cross-validation (see :func:`calibration_folds`).

    Returns
    -------
    sklearn.pipeline.Pipeline, CalibratedClassifierCV or SVC
        Unfitted. With the defaults: ``Pipeline([("scaler", StandardScaler()),
        ("svc", CalibratedClassifierCV(SVC(...)))])``; the SVC itself, carrying the
        class weights, is ``model.named_steps["svc"].estimator``.

    Raises
    ------
    ValueError
        If ``class_weight_r`` is set but ``y`` is None.
    """
    class_weight = None
    if class_weight_r is not None:
        if y is None:
            raise ValueError(
                "make_svm: pass the training labels y to compute the logarithmic class "
                "weights, or class_weight_r=None for an unweighted SVM"
            )
        y = np.asarray(y).ravel()
        if n_classes is None:
            n_classes = int(y.max()) + 1
        weights = log_class_weights(y, n_classes, class_weight_r)
        class_weight = as_sklearn_class_weight(weights, np.arange(n_classes))
        log.info(
            "make_svm: log class weights (r=%.2f): %s",
            class_weight_r,
            np.round(weights, 3).tolist(),
        )
    clf = SVC(
        C=C,
        kernel=kernel,
        gamma=gamma,
        degree=degree,
        class_weight=class_weight,
        random_state=random_state,
    )
    if probability:
        clf = CalibratedClassifierCV(clf, method="sigmoid", cv=calibration_cv, ensemble=False)
    if not scale:
        return clf
    return Pipeline([("scaler", StandardScaler()), ("svc", clf)])
