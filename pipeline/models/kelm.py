"""Kernel extreme learning machine (KELM) classifier.

KELM (Huang, Zhou, Ding and Zhang, IEEE TSMC-B 2012) is kernel ridge regression on
one-vs-rest targets: with the training kernel matrix ``K = k(X, X)`` [n, n] and targets
``T`` [n, K_classes] (+1 for the true class, -1 elsewhere), the output weights are

    beta = (I / C + K)^-1 T,        f(x) = k(x, X) @ beta.

The system is symmetric positive definite, so it is solved with a Cholesky
factorisation (``scipy.linalg.cho_factor`` / ``cho_solve``) in O(n^3 / 3) time and one
n x n float64 matrix of memory (the kernel is built block by block into that matrix and
factorised in place).

Weighted KELM (Zong, Huang and Chen 2013) minimises
``1/2 ||f||^2 + C/2 * sum_i w_i ||f(x_i) - t_i||^2``; its solution
``beta = (I / C + W K)^-1 W T`` equals the symmetric form used here,

    beta = (W^-1 / C + K)^-1 T,      W = diag(w),

so per-sample weights (class weights times ``sample_weight``) only change the ridge
added to the diagonal. A sample with weight 0 has an infinite ridge, i.e. ``beta_i = 0``;
it is dropped before solving, which is the exact limit.

For large n the exact solve is O(n^2) memory (8k samples: 0.5 GiB). Two bounded-memory
options exist: ``max_train`` (a seeded random subset of the training samples) and
``approximation='nystroem'`` (an ``n_components``-dimensional Nystroem feature map
``z(x)`` with ``z(x) . z(x') ~ k(x, x')``, then the primal ridge solution
``coef = (Z^T W Z + I / C)^-1 Z^T W T`` of size ``n_components x K``, with the
``m x m`` system accumulated over row blocks of ``Z``: O(m^2) memory, O(n m^2) time). With
``n_components >= n`` the Nystroem map reproduces the kernel on the training set and
both solutions coincide up to rounding.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.kernel_approximation import Nystroem
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from pipeline.models.class_weights import log_class_weights

log = logging.getLogger(__name__)

__all__ = ["KELMClassifier"]

# Elements (float64) of one block of kernel rows computed at a time: 32 MiB.
_BLOCK_ELEMS = 1 << 22


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a [n, K] array, numerically stable."""
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class KELMClassifier(ClassifierMixin, BaseEstimator):
    """Kernel extreme learning machine classifier (closed-form kernel ridge on +-1 targets).

    Parameters
    ----------
    C : float, default=1.0
        Regularisation parameter (> 0); larger C = less regularisation. The ridge added
        to the kernel diagonal is ``1 / (C * w_i)``.
    kernel : {'rbf', 'linear'}, default='rbf'
        ``'rbf'``: ``exp(-gamma * ||x - x'||^2)``; ``'linear'``: ``x . x'``.
    gamma : float, 'scale' or 'auto', default='scale'
        RBF width in 1 / (feature units)^2. As in ``sklearn.svm.SVC``: ``'scale'`` is
        ``1 / (n_features * X.var())`` of the training data (entries weighted by
        ``sample_weight``), ``'auto'`` is ``1 / n_features``. Ignored by the linear kernel.
    class_weight : dict, 'log', 'balanced' or None, default=None
        Per-class weights, multiplied into the per-sample weights of the weighted KELM.
        A dict maps class labels to weights (labels missing from it get 1; extra keys are
        ignored); ``'log'`` uses :func:`~pipeline.models.class_weights.log_class_weights`
        with ``class_weight_r``; ``'balanced'`` uses ``n / (K * n_i)``. For ``'log'`` and
        ``'balanced'`` the class counts ``n_i`` are sums of ``sample_weight`` (plain
        counts without it), so an integer weight is the same as repeating a sample.
    class_weight_r : float, default=0.47
        The ``r`` of the logarithmic class weights (only used with ``class_weight='log'``).
    approximation : {None, 'nystroem'}, default=None
        ``None``: exact dual solve (O(n^2) memory, O(n^3) time). ``'nystroem'``:
        Nystroem feature map with ``n_components`` landmarks and a primal solve
        (O(n * n_components) memory).
    n_components : int, default=1000
        Number of Nystroem landmarks (capped at the number of training samples).
    max_train : int or None, default=None
        If set and the training set is larger, fit on a seeded random subset of this
        many samples (plain random, not stratified; ``classes_`` still comes from the
        whole ``y``, so a class absent from the subset keeps a column of scores).
    random_state : int, RandomState or None, default=None
        Seeds the ``max_train`` subset and the Nystroem landmarks. The exact solve is
        deterministic.

    Attributes
    ----------
    classes_ : (K,) array
        Class labels seen in ``fit`` (sorted). Classes that never occur in the training
        labels do not exist for the model: ``predict`` never returns them and
        ``predict_proba`` / ``decision_function`` have one column per entry of
        ``classes_`` only. Callers that need a fixed label set must re-index columns
        with ``classes_``.
    n_features_in_ : int
        Number of features D.
    gamma_ : float
        The RBF width actually used.
    X_fit_ : (n_fit, D) array or sparse matrix
        Training samples kept as kernel centres (exact mode only).
    dual_coef_ : (n_fit, K) float64 array
        ``beta`` (exact mode only).
    nystroem_ : sklearn.kernel_approximation.Nystroem
        The fitted feature map (Nystroem mode only).
    coef_ : (n_components, K) float64 array
        Primal output weights (Nystroem mode only).

    Notes
    -----
    ``predict_proba`` is ``softmax(decision_function(X))`` over the classes. KELM scores
    are regression outputs near +-1, not log-odds, so these probabilities are
    monotone in the scores (``argmax`` equals ``predict``) and sum to 1, but they are
    not calibrated and tend to be soft (two classes at +1 / -1 give 0.88 / 0.12).
    Calibrate them (e.g. ``CalibratedClassifierCV``) or fuse them with learned weights
    if calibration matters.

    For two classes the targets of the two columns are opposite, so the two score
    columns are exact negatives of each other; following scikit-learn,
    ``decision_function`` then returns only the score of ``classes_[1]`` (shape [n]).
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: float | str = "scale",
        class_weight: dict | str | None = None,
        class_weight_r: float = 0.47,
        approximation: str | None = None,
        n_components: int = 1000,
        max_train: int | None = None,
        random_state: int | np.random.RandomState | None = None,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.class_weight = class_weight
        self.class_weight_r = class_weight_r
        self.approximation = approximation
        self.n_components = n_components
        self.max_train = max_train
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if not isinstance(self.C, numbers.Real) or not self.C > 0:
            raise ValueError(f"C must be a positive number, got {self.C!r}")
        if self.kernel not in ("rbf", "linear"):
            raise ValueError(f"kernel must be 'rbf' or 'linear', got {self.kernel!r}")
        if isinstance(self.gamma, str):
            if self.gamma not in ("scale", "auto"):
                raise ValueError(f"gamma must be > 0, 'scale' or 'auto', got {self.gamma!r}")
        elif not (isinstance(self.gamma, numbers.Real) and self.gamma > 0):
            raise ValueError(f"gamma must be > 0, 'scale' or 'auto', got {self.gamma!r}")
        if self.approximation not in (None, "nystroem"):
            raise ValueError(
                f"approximation must be None or 'nystroem', got {self.approximation!r}"
            )
        if self.approximation == "nystroem" and not int(self.n_components) >= 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components!r}")
        if self.max_train is not None and not int(self.max_train) >= 2:
            raise ValueError(f"max_train must be >= 2 or None, got {self.max_train!r}")
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or cw in ("log", "balanced")):
            raise ValueError(f"class_weight must be None, a dict, 'log' or 'balanced', got {cw!r}")

    def _resolve_gamma(self, X, sample_weight: np.ndarray) -> float:
        """The numeric RBF width for training data X [n, D] and sample weights [n]."""
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        if self.gamma == "scale":
            # variance of all entries of X, samples weighted by sample_weight
            p = sample_weight / sample_weight.sum()
            if sp.issparse(X):
                mean = float(p @ np.asarray(X.sum(axis=1)).ravel()) / X.shape[1]
                sq = float(p @ np.asarray(X.multiply(X).sum(axis=1)).ravel()) / X.shape[1]
            else:
                mean = float(p @ X.sum(axis=1)) / X.shape[1]
                sq = float(p @ np.einsum("ij,ij->i", X, X)) / X.shape[1]
            var = sq - mean**2
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        return float(self.gamma)

    def _kernel(self, X, Y) -> np.ndarray:
        """Kernel matrix k(X, Y) as float64 [n_x, n_y]."""
        if self.kernel == "linear":
            return linear_kernel(X, Y)
        return rbf_kernel(X, Y, gamma=self.gamma_)

    def _kernel_into(self, out: np.ndarray, X, Y) -> np.ndarray:
        """Fill ``out`` [n_x, n_y] with k(X, Y) in row blocks of about 32 MiB."""
        rows = max(1, _BLOCK_ELEMS // max(1, out.shape[1]))
        for sl in gen_batches(out.shape[0], rows):
            out[sl] = self._kernel(X[sl], Y)
        return out

    def _class_weights(self, y_idx: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
        """Per-class weights [K] for the encoded labels (counts weighted by sample_weight)."""
        n_classes = len(self.classes_)
        cw = self.class_weight
        if cw is None:
            return np.ones(n_classes)
        if isinstance(cw, dict):
            return np.array(
                [float(cw.get(c.item() if hasattr(c, "item") else c, 1.0)) for c in self.classes_]
            )
        counts = np.bincount(y_idx, weights=sample_weight, minlength=n_classes)
        if cw == "balanced":
            with np.errstate(divide="ignore"):
                w = counts.sum() / (n_classes * counts)
            return np.where(counts > 0, w, 0.0)  # weightless class: no sample to weigh
        return log_class_weights(
            y_idx, n_classes, self.class_weight_r, sample_weight=sample_weight
        )

    # ---------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None) -> KELMClassifier:
        """Fit the output weights in closed form.

        Parameters
        ----------
        X : (n, D) array-like or sparse matrix
            Training features.
        y : (n,) array-like
            Class labels (any hashable labels; at least two distinct values).
        sample_weight : (n,) array-like or None
            Non-negative per-sample weights, multiplied by the class weights.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        y_idx = y_idx.ravel()
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; "
                f"got 1 class ({self.classes_[0]!r})"
            )
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if not sw.any():
            raise ValueError("sample_weight must contain at least one non-zero number")
        w = sw * self._class_weights(y_idx, sw)[y_idx]
        if not np.all(np.isfinite(w)):
            raise ValueError("sample/class weights must be finite")
        self.gamma_ = self._resolve_gamma(X, sw)

        keep = np.flatnonzero(w > 0)
        if self.max_train is not None and keep.size > self.max_train:
            rng = check_random_state(self.random_state)
            keep = np.sort(rng.choice(keep, size=int(self.max_train), replace=False))
            log.info("KELM: fitting on a random subset of %d / %d samples", keep.size, len(y_idx))
        if keep.size == X.shape[0] and self.approximation == "nystroem":
            X_fit, w_fit = X, w  # not stored: no need for a private copy
        else:
            X_fit, w_fit = X[keep], w[keep]
        T = np.full((keep.size, len(self.classes_)), -1.0)
        T[np.arange(keep.size), y_idx[keep]] = 1.0

        if self.approximation == "nystroem":
            self._fit_nystroem(X_fit, T, w_fit)
        else:
            self._fit_exact(X_fit, T, w_fit)
        return self

    def _fit_exact(self, X_fit, T: np.ndarray, w: np.ndarray) -> None:
        n = X_fit.shape[0]
        log.debug(
            "KELM exact: n=%d, kernel=%s, %.1f MiB kernel matrix",
            n,
            self.kernel,
            n * n * 8 / 2**20,
        )
        A = self._kernel_into(np.empty((n, n), dtype=np.float64), X_fit, X_fit)
        A[np.diag_indices(n)] += 1.0 / (self.C * w)
        self.dual_coef_ = _spd_solve(A, T)
        self.X_fit_ = X_fit
        for attr in ("nystroem_", "coef_"):
            self.__dict__.pop(attr, None)

    def _fit_nystroem(self, X_fit, T: np.ndarray, w: np.ndarray) -> None:
        m = min(int(self.n_components), X_fit.shape[0])
        self.nystroem_ = Nystroem(
            kernel=self.kernel,
            gamma=self.gamma_ if self.kernel == "rbf" else None,
            n_components=m,
            random_state=self.random_state,
        ).fit(X_fit)
        # A = Z^T W Z + I / C and B = Z^T W T, accumulated over row blocks of Z [n, m]
        # so that memory stays O(m^2 + block) whatever n is.
        A = np.zeros((m, m))
        B = np.zeros((m, T.shape[1]))
        for sl in gen_batches(X_fit.shape[0], max(1, _BLOCK_ELEMS // (4 * m))):
            Z = self._transform_nystroem(X_fit[sl])
            Zw = Z * w[sl, None]
            A += Z.T @ Zw
            B += Zw.T @ T[sl]
        A[np.diag_indices(m)] += 1.0 / self.C
        self.coef_ = _spd_solve(A, B)
        log.debug("KELM nystroem: n=%d, n_components=%d", X_fit.shape[0], m)
        for attr in ("X_fit_", "dual_coef_"):
            self.__dict__.pop(attr, None)

    def _transform_nystroem(self, X) -> np.ndarray:
        return np.asarray(self.nystroem_.transform(X), dtype=np.float64)

    # ------------------------------------------------------------------ predict
    def _scores(self, X) -> np.ndarray:
        """Raw scores [n, K] (both columns, also for two classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        if hasattr(self, "coef_"):
            return self._transform_nystroem(X) @ self.coef_
        n_fit = self.X_fit_.shape[0]
        rows = max(1, _BLOCK_ELEMS // max(1, n_fit))
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.float64)
        for sl in gen_batches(X.shape[0], rows):
            out[sl] = self._kernel(X[sl], self.X_fit_) @ self.dual_coef_
        return out

    def decision_function(self, X) -> np.ndarray:
        """KELM scores ``k(X, X_fit) @ beta``.

        Parameters
        ----------
        X : (n, D) array-like or sparse matrix

        Returns
        -------
        (n, K) float64 array, or (n,) for two classes (score of ``classes_[1]``; the
        score of ``classes_[0]`` is its negative).
        """
        scores = self._scores(X)
        return scores[:, 1] if len(self.classes_) == 2 else scores

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the KELM scores over the classes (uncalibrated; see Notes).

        Parameters
        ----------
        X : (n, D) array-like or sparse matrix

        Returns
        -------
        (n, K) float64 array, columns in the order of ``classes_``, rows sum to 1.
        """
        return _softmax(self._scores(X))

    def predict(self, X) -> np.ndarray:
        """Class with the largest KELM score.

        Parameters
        ----------
        X : (n, D) array-like or sparse matrix

        Returns
        -------
        (n,) array of labels from ``classes_``.
        """
        scores = self._scores(X)  # checks fitted state first
        return self.classes_[np.argmax(scores, axis=1)]


def _spd_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``A x = B`` for symmetric positive definite ``A`` (overwritten).

    Uses a Cholesky factorisation computed in place (``A.T`` is the Fortran-ordered view
    of the same symmetric matrix, so LAPACK needs no copy); falls back to a
    least-squares solve, with a logged warning, if rounding makes ``A`` numerically
    indefinite (huge C with a rank-deficient kernel).
    """
    M = A.T  # F-contiguous view, equal to A
    try:
        factor = scipy.linalg.cho_factor(M, lower=True, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, B, check_finite=False)
    except np.linalg.LinAlgError:
        log.warning("KELM: Cholesky failed (matrix not positive definite); using lstsq")
        # potrf only wrote the lower triangle of M; rebuild M from its upper triangle.
        M = np.triu(M) + np.triu(M, 1).T
        return scipy.linalg.lstsq(M, B, check_finite=False)[0]
