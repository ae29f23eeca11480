"""Score-level fusion of per-model class probabilities with Dirichlet random search.

Two fusion rules from the ABAW 2020 system (Dresvyanskiy, Ryumina, Kaya et al.):

* SWF, simple weighted fusion: one weight per model,
  ``fused[n, k] = sum_l w[l] * P[l, n, k]`` with ``w`` on the probability simplex;
* MCWF, model-and-class weighted fusion: one weight per model and class,
  ``fused[n, k] = sum_l W[l, k] * P[l, n, k]`` where every class column ``W[:, k]``
  lies on the simplex.

The weights are found by random search: candidate weights are drawn from a
symmetric Dirichlet distribution (candidate 0 is always the uniform weighting, then
each single model), each candidate's fused prediction ``argmax_k fused[n, k]`` is
scored with the ABAW expression measure CPM (``0.67 * macro F1 + 0.33 * accuracy``)
on the labelled frames, and the best candidate wins (the earliest one on equal scores).

The search is plain chunked numpy: for a chunk of candidates, one batched ``matmul``
gives the fused scores, ``argmax`` the predictions, one ``np.bincount`` the confusion
matrix of every candidate, and :func:`pipeline.metrics.cpm_from_confusion` the CPM.
Memory is bounded by the chunk (about ``_CHUNK_VALUES`` fused scores), whatever the
number of candidates, and there is no limit on the number of classes.

Two optional refinements: an entropy gate (:func:`opinion_mask`: a model whose frame scores
are too flat abstains on that frame) and, in :mod:`pipeline.scores`, a moving average of
every model's scores before fusion.

A search fits the dev set it runs on, so its best dev score says little about unseen people.
:func:`fuse_dev` therefore judges every rule (uniform weights, the best single model, SWF,
MCWF) by cross-validation over dev groups (speakers or videos), picks shrinkage towards
uniform weights and the rule the pipeline uses by the pooled held-out score (with a
one-standard-error preference for simpler rules), and only then searches the final weights on
all of dev. Valence/arousal (:func:`search_va`, mean CCC) goes through the same procedure.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import GroupKFold

from pipeline.metrics import at_chance, classification_metrics, cpm_from_confusion, va_metrics
from pipeline.scores import smooth_stacked

log = logging.getLogger(__name__)

__all__ = [
    "SearchResult",
    "swf_candidates",
    "mcwf_candidates",
    "apply_swf",
    "apply_mcwf",
    "opinion_mask",
    "search_swf",
    "search_mcwf",
    "score_candidates",
    "search_va",
    "apply_va",
    "METHODS",
    "FusionConfig",
    "MethodFit",
    "DevFusion",
    "group_folds",
    "frame_groups",
    "at_chance_models",
    "fuse_dev",
    "fuse_with",
    "fuse_splits",
    "fusion_records",
    "restrict_weights",
]

# Fused scores held per chunk of candidates (4 MiB of float32): chunks of about this size
# were the fastest on 2 cores (larger ones leave the CPU caches). A chunk has at least one
# candidate, so memory is also bounded by one candidate's (K, N) fused scores.
_CHUNK_VALUES = 1 << 20


class SearchResult(NamedTuple):
    """Outcome of a fusion weight search (unpacks as ``weights, best_score, history``).

    Attributes
    ----------
    weights : (L,) or (L, K) float64 array
        Best candidate: SWF model weights, or MCWF model-by-class weights.
    best_score : float
        Its CPM on the labelled frames.
    history : (n_draws + 1 + L,) float64 array
        CPM of every candidate in draw order; entry 0 is the uniform weighting.
        The candidates themselves are :func:`swf_candidates` /
        :func:`mcwf_candidates` called with the same integer ``seed``.
    """

    weights: np.ndarray
    best_score: float
    history: np.ndarray


def swf_candidates(
    n_draws: int, n_models: int, concentration: float, seed: int | np.random.Generator
) -> np.ndarray:
    """Candidate SWF weight vectors: the uniform vector, each single model, then Dirichlet draws.

    The single models (simplex vertices) are rarely approached by Dirichlet draws when L is
    large; with them, the best fusion on dev is never worse than the best single model.

    Parameters
    ----------
    n_draws : int
        Number of Dirichlet draws (>= 0).
    n_models : int
        Number of models L (>= 1).
    concentration : float
        Dirichlet parameter, ``alpha = concentration * ones(L)`` (> 0); 1 is uniform
        on the simplex, smaller values favour sparse weights.
    seed : int or numpy.random.Generator
        Passed to ``np.random.default_rng``.

    Returns
    -------
    (n_draws + 1 + L, L) float64 array
        Non-negative rows summing to 1; row 0 is ``1 / L``, rows 1..L one-hot.
    """
    _check_draw_args(n_draws, n_models, concentration)
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.full(n_models, float(concentration)), size=n_draws)
    uniform = np.full((1, n_models), 1.0 / n_models)
    return np.concatenate([uniform, np.eye(n_models), draws.reshape(n_draws, n_models)])


def mcwf_candidates(
    n_draws: int,
    n_models: int,
    n_classes: int,
    concentration: float,
    seed: int | np.random.Generator,
) -> np.ndarray:
    """Candidate MCWF weight matrices: the uniform matrix, each single model, then Dirichlet draws.

    Parameters
    ----------
    n_draws, n_models, concentration, seed
        As in :func:`swf_candidates`.
    n_classes : int
        Number of classes K; each class column is an independent Dirichlet draw.

    Returns
    -------
    (n_draws + 1 + L, L, K) float64 array
        Non-negative; every ``[i, :, k]`` column sums to 1; entry 0 is ``1 / L``, entries
        1..L give every class to one model.
    """
    _check_draw_args(n_draws, n_models, concentration)
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.full(n_models, float(concentration)), size=(n_draws, n_classes))
    draws = draws.reshape(n_draws, n_classes, n_models).transpose(0, 2, 1)
    uniform = np.full((1, n_models, n_classes), 1.0 / n_models)
    vertices = np.repeat(np.eye(n_models)[:, :, None], n_classes, axis=2)
    return np.concatenate([uniform, vertices, draws])


def _check_draw_args(n_draws: int, n_models: int, concentration: float) -> None:
    if n_draws < 0 or n_models < 1:
        raise ValueError(f"need n_draws >= 0 and n_models >= 1, got {n_draws}, {n_models}")
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")


def opinion_mask(P: np.ndarray, entropy_gate: float | None) -> np.ndarray | None:
    """The entropy gate: which model has an opinion on which frame.

    Parameters
    ----------
    P : (L, N, K) float array
        Non-negative class scores; each row is normalised to sum to 1 first.
    entropy_gate : float in (0, 1], or None
        Largest normalised entropy ``H / ln K`` of an opinion (0: one-hot scores, 1:
        uniform scores). None turns the gate off.

    Returns
    -------
    (L, N) bool array, or None when the gate is off
        False where model l's scores on frame n are too flat (or all zero) to count:
        that model abstains there (see :func:`apply_mcwf`).
    """
    if entropy_gate is None:
        return None
    P = np.asarray(P, dtype=np.float64)
    total = P.sum(axis=2, keepdims=True)
    q = P / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(q > 0, q * np.log(q), 0.0), axis=2) / np.log(P.shape[2])
    return (h <= entropy_gate) & (total[:, :, 0] > 0)  # an all-zero row has no opinion


def apply_swf(P: np.ndarray, w: np.ndarray, opinion: np.ndarray | None = None) -> np.ndarray:
    """Simple weighted fusion.

    Parameters
    ----------
    P : (L, N, K) float array
        Class probabilities of L models on the same N frames.
    w : (L,) float array
        Model weights.
    opinion : (L, N) bool array, optional
        From :func:`opinion_mask`; see :func:`apply_mcwf`.

    Returns
    -------
    (N, K) float32 array
        ``sum_l w[l] * P[l]``, computed as in the search (so the search's scores are the
        scores of these fused values).
    """
    P = np.asarray(P)
    w = np.asarray(w)
    if P.ndim != 3 or w.shape != (P.shape[0],):
        raise ValueError(f"expected P (L, N, K) and w (L,), got {P.shape}, {w.shape}")
    return apply_mcwf(P, np.repeat(w[:, None], P.shape[2], axis=1), opinion)


def apply_mcwf(P: np.ndarray, W: np.ndarray, opinion: np.ndarray | None = None) -> np.ndarray:
    """Model-and-class weighted fusion.

    Parameters
    ----------
    P : (L, N, K) float array
        Class probabilities of L models on the same N frames.
    W : (L, K) float array
        Weight of model l for class k.
    opinion : (L, N) bool array, optional
        The entropy gate (:func:`opinion_mask`). A model without an opinion on a frame
        abstains: its weight is dropped for that frame and the others' weights are
        renormalised, ``fused[n, k] = sum_l W[l, k] o[l, n] P[l, n, k] / sum_l W[l, k]
        o[l, n]``. Where that denominator is 0 (every model with weight for class k
        abstains), the plain fusion is used.

    Returns
    -------
    (N, K) float32 array
        ``fused[n, k] = sum_l W[l, k] * P[l, n, k]`` (or its gated form), computed as in
        the search.
    """
    P = np.asarray(P)
    W = np.asarray(W)
    if P.ndim != 3 or W.shape != (P.shape[0], P.shape[2]):
        raise ValueError(f"expected P (L, N, K) and W (L, K), got {P.shape}, {W.shape}")
    Pt = np.ascontiguousarray(P.transpose(2, 0, 1), dtype=np.float32)  # (K, L, N)
    M = None if opinion is None else np.asarray(opinion, dtype=np.float32)
    return _fuse_by_class(W.T[:, None, :], Pt, M, None if M is None else Pt * M)[:, 0, :].T


def _fuse_by_class(
    Wt: np.ndarray, Pt: np.ndarray, M: np.ndarray | None = None, PtM: np.ndarray | None = None
) -> np.ndarray:
    """Fused scores of C candidates, class by class.

    Parameters
    ----------
    Wt : (K, C, L) float array
        Weight of model l for class k in candidate c (SWF: the same for every k).
    Pt : (K, L, N) float32 array
        The scores, class-major.
    M, PtM : (L, N) and (K, L, N) float32 arrays, optional
        The entropy gate: 1 where a model has an opinion, else 0, and ``Pt * M``.

    Returns
    -------
    (K, C, N) float32 array
        ``fused[k, c, n] = sum_l Wt[k, c, l] * Pt[k, l, n]``, or with the gate, the same sum
        over the models with an opinion divided by their weight (the plain sum where no
        weight is left).

    The sum runs model by model in element-wise float32 arithmetic, not as a matmul: a BLAS
    kernel rounds differently for different candidate counts and CPUs, and MCWF weights
    whose class columns all sum to 1 make exact ties between classes common (every frame
    where the models agree on a flat distribution). Element-wise, a candidate gets the same
    bits in a chunk of 1 or 1,000, so the search scores exactly what :func:`apply_mcwf` gives.
    """
    Wt = Wt.astype(np.float32)

    def weighted_sum(X: np.ndarray) -> np.ndarray:  # X (K, L, N) or (L, N) -> (K, C, N)
        X = np.broadcast_to(X, (Wt.shape[0],) + X.shape[-2:])
        out = Wt[:, :, 0, None] * X[:, None, 0, :]
        for m in range(1, Wt.shape[2]):
            out += Wt[:, :, m, None] * X[:, None, m, :]
        return out

    fused = weighted_sum(Pt)
    if M is not None:
        weight_left = weighted_sum(M)  # (K, C, N)
        np.divide(weighted_sum(PtM), weight_left, out=fused, where=weight_left > 0)
    return fused


def search_swf(
    P: np.ndarray,
    y: np.ndarray,
    n_draws: int,
    concentration: float = 1.0,
    seed: int | np.random.Generator = 0,
    chunk: int | None = None,
    opinion: np.ndarray | None = None,
) -> SearchResult:
    """Random search for SWF model weights that maximise CPM.

    Parameters
    ----------
    P : (L, N, K) float array
        Non-negative class scores (probabilities) of L models on N frames; float32
        keeps the search fast. NaN is not allowed.
    y : (N,) int array
        True class per frame in ``[0, K)``, ``-1`` for unlabelled (not scored).
    n_draws : int
        Number of Dirichlet candidates besides the uniform one and the single models.
    concentration : float
        Dirichlet concentration (see :func:`swf_candidates`).
    seed : int or numpy.random.Generator
        Randomness of the draws; the same seed gives the same candidates, hence the
        same weights.
    chunk : int, optional
        Candidates scored together; by default as many as keep a chunk's fused scores
        near ``_CHUNK_VALUES`` values (see :func:`score_candidates`).
    opinion : (L, N) bool array, optional
        The entropy gate (:func:`opinion_mask`, :func:`apply_mcwf`); None: no gate.

    Returns
    -------
    SearchResult
        ``(weights (L,), best_score, history (n_draws + 1 + L,))``.

    Raises
    ------
    ValueError
        On negative or non-finite scores, labels out of range, or no labelled frame.

    Notes
    -----
    ``best_score`` is the CPM of ``apply_swf(P, weights, opinion).argmax(axis=1)``: both use
    the same float32 arithmetic, and ties go to the smaller class as in ``np.argmax``.
    """
    P, y = _check_inputs(P, y)
    cands = swf_candidates(n_draws, P.shape[0], concentration, seed)
    W = np.repeat(cands[:, :, None], P.shape[2], axis=2)  # (C, L, K): one column per class
    return _best(cands, score_candidates(P, y, W, chunk, opinion), "swf")


def search_mcwf(
    P: np.ndarray,
    y: np.ndarray,
    n_draws: int,
    concentration: float = 1.0,
    seed: int | np.random.Generator = 0,
    chunk: int | None = None,
    opinion: np.ndarray | None = None,
) -> SearchResult:
    """Random search for MCWF model-by-class weights that maximise CPM.

    Same parameters and notes as :func:`search_swf`; each candidate is an (L, K)
    matrix whose class columns are independent Dirichlet draws
    (:func:`mcwf_candidates`).

    Returns
    -------
    SearchResult
        ``(weights (L, K), best_score, history (n_draws + 1 + L,))``.
    """
    P, y = _check_inputs(P, y)
    cands = mcwf_candidates(n_draws, P.shape[0], P.shape[2], concentration, seed)
    return _best(cands, score_candidates(P, y, cands, chunk, opinion), "mcwf")


def _check_inputs(P: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = np.asarray(P)
    y = np.asarray(y)
    if P.ndim != 3 or y.shape != (P.shape[1],):
        raise ValueError(f"expected P (L, N, K) and y (N,), got {P.shape}, {y.shape}")
    if not np.issubdtype(P.dtype, np.floating):
        raise ValueError(f"P must be a float array, got {P.dtype}")
    if not (np.all(P >= 0) and np.all(np.isfinite(P))):
        raise ValueError("P must hold finite, non-negative class scores (probabilities)")
    if y.size and (y.min() < -1 or y.max() >= P.shape[2]):
        raise ValueError(f"y must be -1 or in [0, {P.shape[2]}), got [{y.min()}, {y.max()}]")
    if not np.any(y != -1):
        raise ValueError("no labelled frames to score (every y is -1 or N = 0)")
    return P, y


def _best(cands: np.ndarray, scores: np.ndarray, name: str) -> SearchResult:
    i = int(np.argmax(scores))  # first maximum: uniform wins ties
    log.info(
        "%s search: %d candidates, best #%d cpm=%.4f (uniform %.4f)",
        name,
        scores.size,
        i,
        scores[i],
        scores[0],
    )
    return SearchResult(cands[i].copy(), float(scores[i]), scores)


def score_candidates(
    P: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    chunk: int | None = None,
    opinion: np.ndarray | None = None,
) -> np.ndarray:
    """CPM of the fused prediction of every candidate weighting.

    Parameters
    ----------
    P : (L, N, K) float array
        Class scores of L models on N frames.
    y : (N,) int array
        True class in ``[0, K)``, ``-1`` for unlabelled (not scored).
    W : (C, L, K) float array
        C candidate weightings; ``W[c, l, k]`` weighs model l for class k (an SWF
        candidate has the same weight in every class column).
    chunk : int, optional
        Candidates scored together (default: about ``_CHUNK_VALUES // (K * N)``). Working
        memory is a few times ``chunk * K * N`` float32 values.
    opinion : (L, N) bool array, optional
        The entropy gate (:func:`opinion_mask`, :func:`apply_mcwf`).

    Returns
    -------
    (C,) float64 array
        CPM of ``argmax_k sum_l W[c, l, k] * P[l, n, k]`` on the labelled frames, with
        macro F1 over all K classes as in :func:`pipeline.metrics.classification_metrics`.
    """
    keep = np.asarray(y) != -1
    yk = np.asarray(y)[keep].astype(np.int64)
    Pt = np.ascontiguousarray(np.asarray(P)[:, keep, :].transpose(2, 0, 1), dtype=np.float32)
    M = PtM = None
    if opinion is not None:
        M = np.asarray(opinion)[:, keep].astype(np.float32)
        PtM = Pt * M
    n_classes, _, n_frames = Pt.shape
    Wt = np.asarray(W).transpose(2, 0, 1)  # (K, C, L)
    n_cand = Wt.shape[1]
    if chunk is None:
        chunk = _CHUNK_VALUES // (n_classes * n_frames)
    chunk = max(1, min(int(chunk), n_cand))
    scores = np.empty(n_cand, dtype=np.float64)
    for c0 in range(0, n_cand, chunk):
        wc = Wt[:, c0 : c0 + chunk]
        nc = wc.shape[1]
        pred = _fuse_by_class(wc, Pt, M, PtM).argmax(axis=0)  # (nc, N)
        # One confusion matrix per candidate: code = (candidate, true, predicted).
        codes = (np.arange(nc)[:, None] * n_classes + yk) * n_classes + pred
        conf = np.bincount(codes.ravel(), minlength=nc * n_classes * n_classes)
        scores[c0 : c0 + nc] = cpm_from_confusion(conf.reshape(nc, n_classes, n_classes))
    return scores


# ----------------------------------------------------------------------------- valence/arousal
#
# CCC of a weighted sum of model outputs needs only first and second moments: with model
# means m (L,), model covariance S (L, L) and model-label covariance c (L,) on the annotated
# frames, the fused series w.P has mean w.m, variance w'Sw and covariance w.c with the
# labels. Every candidate is then scored exactly in O(L^2), whatever the number of frames.


def _va_moments(
    P: np.ndarray, y: np.ndarray, d: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    ok = np.isfinite(y[:, d]) & np.isfinite(P[:, :, d]).all(axis=0)
    if not ok.any():
        raise ValueError(f"no annotated frame for dimension {d}")
    X = P[:, ok, d].astype(np.float64)  # (L, n)
    t = y[ok, d].astype(np.float64)
    m = X.mean(axis=1)
    Xc = X - m[:, None]
    n = X.shape[1]
    return m, Xc @ Xc.T / n, Xc @ (t - t.mean()) / n, float(t.mean()), float(t.var())


def _ccc_of_weights(W: np.ndarray, m, S, c, my: float, vy: float) -> np.ndarray:
    """CCC of fused series for candidate weights ``W`` [C, L] (population moments)."""
    mean = W @ m
    var = np.einsum("cl,lk,ck->c", W, S, W)
    return 2 * (W @ c) / (var + vy + (mean - my) ** 2)


def search_va(
    P: np.ndarray,
    y: np.ndarray,
    n_draws: int,
    concentration: float = 1.0,
    seed: int = 0,
    per_dimension: bool = False,
) -> SearchResult:
    """Dirichlet random search for fusion weights of valence/arousal predictions.

    Parameters
    ----------
    P : (L, N, 2) float array
        Valence/arousal predictions of L models on N frames.
    y : (N, 2) float array
        Labels; NaN = unannotated (not scored).
    n_draws, concentration, seed
        As in :func:`search_swf`.
    per_dimension : bool
        False: one weight per model (SWF). True: a weight column per dimension, each
        summing to 1 over models (the MCWF analogue, dimensions in place of classes).

    Returns
    -------
    SearchResult
        ``weights`` (L,) or (L, 2) and ``best_score`` = mean CCC over the two dimensions;
        ``history`` holds every candidate's score (candidate 0 = uniform).
    """
    L = P.shape[0]
    moments = [_va_moments(P, y, d) for d in range(2)]
    if per_dimension:
        cands = mcwf_candidates(n_draws, L, 2, concentration, seed)  # (C, L, 2)
        per_dim = [_ccc_of_weights(cands[:, :, d], *moments[d]) for d in range(2)]
    else:
        cands = swf_candidates(n_draws, L, concentration, seed)  # (C, L)
        per_dim = [_ccc_of_weights(cands, *moments[d]) for d in range(2)]
    scores = np.nan_to_num((per_dim[0] + per_dim[1]) / 2, nan=-np.inf)
    best = int(np.argmax(scores))
    log.info(
        "va %s search: %d candidates, best #%d mean CCC=%.4f (uniform %.4f)",
        "per-dimension" if per_dimension else "swf",
        len(cands),
        best,
        scores[best],
        scores[0],
    )
    return SearchResult(cands[best], float(scores[best]), scores)


def apply_va(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fuse (L, N, 2) predictions with weights (L,) or per-dimension weights (L, 2) -> (N, 2)."""
    if w.ndim == 1:
        return np.einsum("l,lnd->nd", w, P)
    return np.einsum("ld,lnd->nd", w, P)


# ------------------------------------------------------------------------ out-of-sample choice
#
# A weight search on dev fits dev: its best score there says little about unseen people. So
# every fusion rule is judged by cross-validation over dev groups (speakers, or videos): the
# weights are searched on k - 1 folds and applied to the held-out fold, the held-out fused
# scores of all folds are pooled, and the pooled scores are scored once (CPM; mean CCC for
# va). That pooled score picks each rule's shrinkage towards uniform weights and the rule the
# pipeline uses (the best single model, uniform weights, SWF or MCWF; the first one within
# `choice_se` standard errors of the best, as small dev sets make these scores noisy). The
# final weights are then searched on all of dev; their in-sample dev score is recorded, never
# the headline.

# In order of preference: ties, and scores within `choice_se` standard errors of the best, go to
# the first. The best single model comes first: fusion has to show a gain on held-out dev
# groups larger than their noise before the pipeline fuses (on EmoDB's two dev speakers,
# uniform weights over ten models scored 0.009 CPM above the best single model in
# cross-validation, SE 0.094, and 0.185 below it on the test speakers).
METHODS = ("single", "uniform", "swf", "mcwf")


@dataclass(frozen=True)
class FusionConfig:
    """Settings of :func:`fuse_dev` (the ``fuse`` params and the task).

    Attributes
    ----------
    task : {"expr", "va"}
        Class probabilities scored by CPM, or valence/arousal scored by mean CCC.
    n_draws, concentration, seed
        The Dirichlet search (:func:`search_swf`, :func:`search_va`).
    cv_folds : int
        Folds of dev groups (>= 2); fewer when dev has fewer groups.
    cv_group : {"speaker", "video"}
        What a dev group is (:func:`frame_groups`).
    shrinkage : tuple of float in [0, 1]
        Values of s tried for SWF and MCWF, final weights ``(1 - s) w + s * uniform``; the
        cross-validated score picks one (one value fixes it).
    choice_se : float
        The one-standard-error rule: the pipeline uses the first rule (in the order of
        :data:`METHODS`) whose cross-validated score is within ``choice_se`` standard errors
        of the best one; 0 takes the best score.
    rule : {"auto", "single", "uniform", "swf", "mcwf"}
        ``auto``: the rule the cross-validation picks (``choice_se``); a rule's name uses it
        whatever the cross-validation says (e.g. ``mcwf``, the ABAW 2020 paper's), with its
        cross-validated score still reported.
    smooth_bins : int
        :func:`pipeline.scores.smooth_stacked` window applied to every model's scores
        before fusion (0 or 1: off).
    entropy_gate : float in (0, 1] or None
        :func:`opinion_mask` threshold (task expr only); None: off.
    """

    task: str
    n_draws: int
    concentration: float
    seed: int
    cv_folds: int
    cv_group: str
    shrinkage: tuple[float, ...]
    choice_se: float
    rule: str
    smooth_bins: int
    entropy_gate: float | None


@dataclass
class MethodFit:
    """One fusion rule, judged out of sample on dev and fitted on all of dev.

    Attributes
    ----------
    method : {"uniform", "single", "swf", "mcwf"}
    weights : (L,) or (L, D) float array
        Final weights over all L models (0 for excluded ones); (L, D) for MCWF, D = K
        classes or 2 dimensions (va). Shrinkage applied.
    shrinkage : float
        The s chosen by cross-validation (0 for uniform and single).
    shrinkage_cv : dict float -> float
        Pooled cross-validated score of each s tried (empty without cross-validation).
    dev_score_cv : float or None
        Pooled cross-validated dev score with the chosen s; None without cross-validation.
    dev_score_in_sample : float
        Score of the final weights on all of dev (optimistic: they were searched there).
    dev_fused : (N, D) float32 array
        Held-out fused dev scores (pooled over folds). Without cross-validation, and on
        frames of groups without any label (never scored), the final weights' scores.
    fold_scores : list of float
        Score of each held-out fold on its own, with the chosen s (for the standard error
        of the one-standard-error rule); empty without cross-validation.
    """

    method: str
    weights: np.ndarray
    shrinkage: float
    shrinkage_cv: dict[float, float]
    dev_score_cv: float | None
    dev_score_in_sample: float
    dev_fused: np.ndarray
    fold_scores: list[float]


@dataclass
class DevFusion:
    """Every rule's fit, the choice among them, and how they were judged.

    Attributes
    ----------
    fits : dict method -> MethodFit
        One per :data:`METHODS`.
    chosen : str
        The method the pipeline uses: the first one within ``choice_se`` standard errors
        of the best cross-validated dev score (uniform without cross-validation).
    best_cv : str
        The method with the best cross-validated dev score ("" without cross-validation).
    cv_standard_error : float or None
        Standard error of the best method's score: the standard deviation of its fold
        scores over the square root of the number of folds.
    models : list of str
        The L model names, in the order of the weights.
    excluded : dict model -> reason
        Models at chance on dev (:func:`pipeline.metrics.at_chance`), left out of every
        rule (weight 0).
    cv_folds : int
        Folds used; 0 when dev has fewer than 2 groups with labels (no cross-validation).
    n_groups : int
        Dev groups with at least one labelled frame.
    note : str
        Why there was no cross-validation, or "".
    pool : str
        The frames judged and fitted on: "dev", or "train out of fold + dev"
        (:func:`fuse_splits`).
    """

    fits: dict[str, MethodFit]
    chosen: str
    best_cv: str
    cv_standard_error: float | None
    models: list[str]
    excluded: dict[str, str]
    cv_folds: int
    n_groups: int
    note: str
    pool: str = "dev"


def group_folds(groups: np.ndarray, labelled: np.ndarray, n_folds: int) -> tuple[np.ndarray, int]:
    """Assign dev frames to cross-validation folds by group.

    Parameters
    ----------
    groups : (N,) array
        Group (speaker or video id) of each frame.
    labelled : (N,) bool array
        Frames that carry a label.
    n_folds : int
        Folds wanted; capped at the number of groups with a labelled frame.

    Returns
    -------
    folds : (N,) int array
        Fold of each frame in ``[0, k)`` (scikit-learn's ``GroupKFold`` over the labelled
        frames: deterministic, folds balanced by labelled frames, every fold holding at
        least one group); -1 for frames of groups without any label (never held out,
        never scored), and everywhere when k < 2.
    n_groups : int
        Groups with at least one labelled frame.
    """
    groups = np.asarray(groups)
    idx = np.flatnonzero(labelled)
    n_groups = int(np.unique(groups[idx]).size)
    folds = np.full(groups.shape, -1, dtype=np.int64)
    k = min(int(n_folds), n_groups)
    if k < 2:
        return folds, n_groups
    for f, (_, held) in enumerate(GroupKFold(n_splits=k).split(idx, groups=groups[idx])):
        folds[np.isin(groups, np.unique(groups[idx[held]]))] = f
    return folds, n_groups


def fuse_dev(
    P: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    models: list[str],
    cfg: FusionConfig,
    excluded: dict[str, str] | None = None,
) -> DevFusion:
    """Judge every fusion rule by cross-validation over dev groups and fit it on all of dev.

    Parameters
    ----------
    P : (L, N, D) float array
        Dev scores of L models: class probabilities (D = K, task expr) or valence/arousal
        (D = 2, task va).
    y : (N,) int array or (N, 2) float array
        Dev labels: class, -1 unlabelled (expr); valence/arousal, NaN unannotated (va).
    groups : (N,) array
        Group of each frame (speaker or video id): folds never split a group.
    models : list of str
        The L model names.
    cfg : FusionConfig
    excluded : dict model -> reason, optional
        Models left out of every rule (weight 0), e.g. :func:`at_chance_models`; at least
        one model must remain.

    Returns
    -------
    DevFusion

    Notes
    -----
    With fewer than 2 groups with labels there is no cross-validation: every rule then
    uses the uniform weights and the choice is uniform, as nothing fitted on dev could be
    judged.

    The cross-validated score of each rule is out of sample for its weights. The choices
    made with it (the shrinkage, the rule, and which models are excluded) are not
    themselves cross-validated, so the chosen rule's score is still a little optimistic:
    the best of a handful of noisy scores. The test split is the judge of that.
    """
    if cfg.task == "va" and cfg.entropy_gate is not None:
        raise ValueError("entropy_gate applies to class probabilities (task expr) only")
    labelled = np.isfinite(y).any(axis=1) if cfg.task == "va" else y != -1
    excluded = dict(excluded or {})
    use = np.array([m not in excluded for m in models])
    if not use.any():
        raise ValueError("every model is excluded from fusion")
    opinion = opinion_mask(P, cfg.entropy_gate)
    folds, n_groups = group_folds(groups, labelled, cfg.cv_folds)
    n_folds = int(folds.max()) + 1
    note = ""
    if n_folds < 2:
        note = (
            f"no cross-validation: dev has {n_groups} group(s) with labels; every fusion "
            "uses uniform weights"
        )
        log.warning("fusion: %s", note)
    fits = {m: _fit_method(m, P, y, use, opinion, folds, cfg) for m in METHODS}
    chosen, best, se = "uniform", "", None
    if n_folds >= 2:
        best = METHODS[_first_max([fits[m].dev_score_cv for m in METHODS])]
        se = float(np.std(fits[best].fold_scores, ddof=1) / np.sqrt(n_folds))
        bar = fits[best].dev_score_cv - cfg.choice_se * se
        chosen = next(m for m in METHODS if fits[m].dev_score_cv >= bar)
    if cfg.rule != "auto":
        chosen = cfg.rule
    log.info(
        "fusion choice: %s (cross-validated dev score %s; best %s, standard error %s; %s)",
        chosen,
        _fmt(fits[chosen].dev_score_cv),
        best or "n/a",
        _fmt(se),
        ", ".join(
            f"{m} {_fmt(fits[m].dev_score_cv)} cv / {fits[m].dev_score_in_sample:.4f} in sample"
            for m in METHODS
        ),
    )
    return DevFusion(
        fits,
        chosen,
        best,
        se,
        list(models),
        excluded,
        n_folds if n_folds >= 2 else 0,
        n_groups,
        note,
    )


def fuse_with(P: np.ndarray, fit: MethodFit, cfg: FusionConfig) -> np.ndarray:
    """Apply a fitted rule to scores of any split.

    Parameters
    ----------
    P : (L, N, D) float array
        Scores of the same L models (smoothed as for the fit).
    fit : MethodFit
    cfg : FusionConfig
        For the task and the entropy gate (the gate is computed on ``P`` itself).

    Returns
    -------
    (N, D) float32 array
    """
    return _apply(P, fit.weights, opinion_mask(P, cfg.entropy_gate), cfg.task)


def fuse_splits(
    P_by_split: dict[str, tuple[np.ndarray, list[tuple[str, int]]]],
    y_dev: np.ndarray,
    groups_dev: np.ndarray,
    models: list[str],
    cfg: FusionConfig,
    train: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[DevFusion, dict[str, dict[str, tuple[str, np.ndarray]]]]:
    """Smooth every model's scores, judge and fit every fusion rule, fuse dev and test.

    Parameters
    ----------
    P_by_split : dict split -> (P (L, N, D), index [(video_id, n_bins)])
        From :func:`pipeline.scores.stack_split`; ``dev`` must be present. ``train``, when
        given with ``train``, holds out-of-fold train scores (``fit.oof_folds``).
    y_dev : (N,) int or (N, 2) float array
        Dev labels (expr: -1 unlabelled; va: NaN unannotated).
    groups_dev : (N,) array
        Group of each dev frame (:func:`frame_groups`).
    models : list of str
        The L model names.
    cfg : FusionConfig
        Every model's scores are smoothed first (``cfg.smooth_bins``).
    train : (y (N_t,), groups (N_t,)) or None
        Labels and groups of the frames of ``P_by_split["train"]``. Given, the out-of-fold
        train frames join the dev frames in the pool on which every rule is cross-validated
        and fitted (and models are checked for being at chance): more groups, so the choice
        and the weights rest on more people than dev holds. None: dev alone.

    Returns
    -------
    dev : DevFusion
        Models at chance on the pool are excluded (task expr).
    fused : dict name -> {video_id: (split, (n, D) float32 array)}
        For "swf", "mcwf" and "chosen" (the rule ``dev.chosen``), every split but train. Dev
        rows are the held-out fused scores of the cross-validation, so a dev figure computed
        from them is out of sample; the other splits use the final weights.
    """
    smoothed = {
        split: (smooth_stacked(P, index, cfg.smooth_bins), index)
        for split, (P, index) in P_by_split.items()
    }
    P_fit, y_fit, groups_fit, n_train = smoothed["dev"][0], y_dev, groups_dev, 0
    pool = "dev"
    if train is not None:
        n_train = len(train[0])
        P_fit = np.concatenate([smoothed["train"][0], P_fit], axis=1)
        y_fit = np.concatenate([train[0], y_dev])
        groups_fit = np.concatenate(
            [np.asarray(train[1], dtype=str), np.asarray(groups_dev, dtype=str)]
        )
        pool = "train out of fold + dev"
    excluded = {} if cfg.task == "va" else at_chance_models(P_fit, y_fit, models)
    dev = fuse_dev(P_fit, y_fit, groups_fit, models, cfg, excluded)
    dev.pool = pool
    fused: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    for name, method in (("swf", "swf"), ("mcwf", "mcwf"), ("chosen", dev.chosen)):
        fit = dev.fits[method]
        fused[name] = {}
        for split, (P, index) in smoothed.items():
            if split == "train":
                continue
            scores = fit.dev_fused[n_train:] if split == "dev" else fuse_with(P, fit, cfg)
            start = 0
            for vid, n in index:
                fused[name][vid] = (split, scores[start : start + n])
                start += n
    return dev, fused


def restrict_weights(w: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Fusion weights over the models in ``use`` only (a video that lacks a modality).

    Parameters
    ----------
    w : (L,) or (L, D) float array
        Fitted weights (SWF, single and uniform: one per model; MCWF and va per-dimension:
        one column per class or dimension, each summing to 1).
    use : (L,) bool array
        Models that have something to say; at least one.

    Returns
    -------
    Array of the shape of ``w``: the weights of models not in ``use`` are 0 and every column
    is renormalised to sum to 1 over the others; a column whose remaining weights are all 0
    (e.g. the single model chosen is not in ``use``) becomes uniform over ``use``. ``w`` is
    returned unchanged when ``use`` holds every model.
    """
    w = np.asarray(w, dtype=np.float64)
    use = np.asarray(use, dtype=bool)
    if not use.any():
        raise ValueError("restrict_weights: no model to use")
    if use.all():
        return w
    kept = w * (use if w.ndim == 1 else use[:, None])
    total = kept.sum(axis=0)
    uniform = _uniform(use, None if w.ndim == 1 else w.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, kept / total, uniform)


def fusion_records(dev: DevFusion, cfg: FusionConfig, classes: list[str]) -> dict[str, dict]:
    """JSON records of a dev fusion: ``weights.json`` of "swf" and "mcwf", and "choice".

    Parameters
    ----------
    dev : DevFusion
    cfg : FusionConfig
        Recorded in every record (``cv_folds`` there is the number of folds used, 0 for
        none; the wanted number is ``cv_folds_wanted``; ``shrinkage_grid`` the values tried).
    classes : list of str
        Class names (expr) or the dimension names (va), recorded as given.

    Returns
    -------
    dict name -> record
        ``dev_score_cv`` is the pooled cross-validated dev score (null without
        cross-validation), the dev figure of the rule; ``dev_score_in_sample`` that of the
        final weights on the dev set they were searched on (for the record only).
    """
    settings = {
        **asdict(cfg),
        "classes": list(classes),
        "dev_score_name": "mean_ccc" if cfg.task == "va" else "cpm",
        "cv_folds_wanted": cfg.cv_folds,
        "shrinkage_grid": list(cfg.shrinkage),
    }
    del settings["cv_folds"], settings["shrinkage"]
    common = {
        "models": dev.models,
        "excluded": dev.excluded,
        "cv_folds": dev.cv_folds,
        "n_groups": dev.n_groups,
        "note": dev.note,
        "pool": dev.pool,
    }
    out = {}
    for method in ("swf", "mcwf"):
        fit = dev.fits[method]
        out[method] = {
            "method": method,
            "chosen": method == dev.chosen,
            **settings,
            **_fit_record(fit),
            **common,
        }
    fit = dev.fits[dev.chosen]
    single = dev.models[int(np.argmax(fit.weights))] if dev.chosen == "single" else None
    out["choice"] = {
        "method": dev.chosen,
        "model": single,
        **settings,
        **_fit_record(fit),
        "best_cv": dev.best_cv,
        "cv_standard_error": dev.cv_standard_error,
        "cv_scores": {m: dev.fits[m].dev_score_cv for m in METHODS},
        "in_sample_scores": {m: dev.fits[m].dev_score_in_sample for m in METHODS},
        "scores": "chosen/scores.h5",
        **common,
    }
    return out


def _fit_record(fit: MethodFit) -> dict:
    return {
        "weights": np.round(fit.weights, 6).tolist(),
        "dev_score_cv": fit.dev_score_cv,
        "dev_score_in_sample": fit.dev_score_in_sample,
        "shrinkage": fit.shrinkage,
        "shrinkage_cv": {f"{s:g}": v for s, v in fit.shrinkage_cv.items()},
    }


def frame_groups(index: list[tuple[str, int]], labels: dict[str, dict], by: str) -> np.ndarray:
    """Group of every frame of a stacked split.

    Parameters
    ----------
    index : list of (video_id, n_bins)
        From :func:`pipeline.scores.stack_split`.
    labels : dict video_id -> {"speaker": str, ...}
        From :func:`pipeline.scores.read_labels`.
    by : {"speaker", "video"}

    Returns
    -------
    (N,) str array
    """
    names = [labels[vid]["speaker"] if by == "speaker" else vid for vid, _ in index]
    return np.repeat(np.array(names, dtype=str), [n for _, n in index])


def at_chance_models(P: np.ndarray, y: np.ndarray, models: list[str]) -> dict[str, str]:
    """The models that are at chance on dev, to leave out of fusion.

    Parameters
    ----------
    P : (L, N, K) float array
        Dev class scores of L models.
    y : (N,) int array
        Dev labels, -1 unlabelled.
    models : list of str
        The L model names.

    Returns
    -------
    dict model -> reason
        From :func:`pipeline.metrics.at_chance` on each model's ``argmax``; empty if every
        model is at chance (fusion needs at least one model). Each exclusion is logged.
    """
    excluded = {}
    for name, p in zip(models, P):
        reason = at_chance(y, p.argmax(axis=1), P.shape[2])
        if reason is not None:
            excluded[name] = reason
    if len(excluded) == len(models):
        log.warning("fusion: every model is at chance on dev; none is excluded")
        return {}
    for name, reason in excluded.items():
        log.warning("fusion: %s left out (at chance on dev: %s)", name, reason)
    return excluded


def _fit_method(
    method: str,
    P: np.ndarray,
    y: np.ndarray,
    use: np.ndarray,
    opinion: np.ndarray | None,
    folds: np.ndarray,
    cfg: FusionConfig,
) -> MethodFit:
    """Cross-validate one rule over ``folds`` (all -1: none), then fit it on all of dev."""
    if folds.max() < 1:  # no cross-validation: uniform weights, in the rule's shape
        w = _uniform(use, P.shape[2] if method == "mcwf" else None)
        fused = _apply(P, w, opinion, cfg.task)
        return MethodFit(method, w, 0.0, {}, None, _score(y, fused, cfg.task), fused, [])
    grid = cfg.shrinkage if method in ("swf", "mcwf") else (0.0,)
    final = _search(method, P, y, use, opinion, cfg)
    # Rows of groups that are never held out keep the final weights' scores.
    held_out = {s: _apply(P, _shrink(final, s, use), opinion, cfg.task) for s in grid}
    for f in range(int(folds.max()) + 1):
        held = folds == f
        w = _search(method, P[:, ~held], y[~held], use, _frames(opinion, ~held), cfg)
        for s in grid:
            held_out[s][held] = _apply(
                P[:, held], _shrink(w, s, use), _frames(opinion, held), cfg.task
            )
    shrinkage_cv = {s: _score(y, held_out[s], cfg.task) for s in grid}
    s = grid[_first_max(list(shrinkage_cv.values()))]
    weights = _shrink(final, s, use)
    in_sample = _score(y, _apply(P, weights, opinion, cfg.task), cfg.task)
    fold_scores = [
        _score(y[folds == f], held_out[s][folds == f], cfg.task)
        for f in range(int(folds.max()) + 1)
    ]
    log.info(
        "%s: dev score %.4f cross-validated, %.4f in sample (shrinkage %g)",
        method,
        shrinkage_cv[s],
        in_sample,
        s,
    )
    return MethodFit(
        method, weights, s, shrinkage_cv, shrinkage_cv[s], in_sample, held_out[s], fold_scores
    )


def _search(
    method: str,
    P: np.ndarray,
    y: np.ndarray,
    use: np.ndarray,
    opinion: np.ndarray | None,
    cfg: FusionConfig,
) -> np.ndarray:
    """Weights of ``method`` fitted on these frames, over all L models (0 where not ``use``)."""
    idx = np.flatnonzero(use)
    Pu = P[idx]
    if method == "uniform":
        wu = np.full(idx.size, 1.0 / idx.size)
    elif method == "single":
        wu = np.eye(idx.size)[_first_max([_score(y, p, cfg.task) for p in Pu])]
    elif cfg.task == "va":
        wu = search_va(
            Pu, y, cfg.n_draws, cfg.concentration, cfg.seed, per_dimension=method == "mcwf"
        ).weights
    else:
        search = search_swf if method == "swf" else search_mcwf
        wu = search(
            Pu,
            y,
            cfg.n_draws,
            cfg.concentration,
            cfg.seed,
            opinion=None if opinion is None else opinion[idx],
        ).weights
    w = np.zeros((P.shape[0],) + wu.shape[1:])
    w[idx] = wu
    return w


def _uniform(use: np.ndarray, n_columns: int | None) -> np.ndarray:
    """Uniform weights over the models in ``use``: (L,), or (L, n_columns) for MCWF."""
    u = use / use.sum()
    return u if n_columns is None else np.repeat(u[:, None], n_columns, axis=1)


def _shrink(w: np.ndarray, s: float, use: np.ndarray) -> np.ndarray:
    """``(1 - s) w + s * uniform``, uniform over the models in ``use``."""
    return (1 - s) * w + s * _uniform(use, w.shape[1] if w.ndim == 2 else None)


def _apply(P: np.ndarray, w: np.ndarray, opinion: np.ndarray | None, task: str) -> np.ndarray:
    if task == "va":
        return apply_va(P, w).astype(np.float32)
    return apply_swf(P, w, opinion) if w.ndim == 1 else apply_mcwf(P, w, opinion)


def _score(y: np.ndarray, fused: np.ndarray, task: str) -> float:
    """CPM of ``argmax`` (expr) or mean CCC (va) of fused (or one model's) dev scores."""
    if task == "va":
        return float(va_metrics(y, fused)["ccc_mean"])
    return float(classification_metrics(y, fused.argmax(axis=1), fused.shape[1])["cpm"])


def _frames(opinion: np.ndarray | None, which: np.ndarray) -> np.ndarray | None:
    return None if opinion is None else opinion[:, which]


def _first_max(values: list[float]) -> int:
    """Index of the first largest value; NaN counts as the smallest."""
    return int(np.argmax(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)))


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.4f}"
