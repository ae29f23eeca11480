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
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.metrics import cpm_from_confusion

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
        ``fused[k, c, n] = sum_l Wt[k, c, l] * Pt[k, l, n]`` (one batched matmul), or with
        the gate, the same sum over the models with an opinion divided by their weight
        (the plain sum where no weight is left).
    """
    Wt = Wt.astype(np.float32)
    fused = np.matmul(Wt, Pt)
    if M is not None:
        weight_left = np.matmul(Wt, M)  # (K, C, N)
        np.divide(np.matmul(Wt, PtM), weight_left, out=fused, where=weight_left > 0)
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
        name, scores.size, i, scores[i], scores[0],
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
    with threadpool_limits(limits=1, user_api="blas"):  # inner size L: threads only cost
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
    log.info("va %s search: %d candidates, best #%d mean CCC=%.4f (uniform %.4f)",
             "per-dimension" if per_dimension else "swf", len(cands), best, scores[best],
             scores[0])
    return SearchResult(cands[best], float(scores[best]), scores)


def apply_va(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fuse (L, N, 2) predictions with weights (L,) or per-dimension weights (L, 2) -> (N, 2)."""
    if w.ndim == 1:
        return np.einsum("l,lnd->nd", w, P)
    return np.einsum("ld,lnd->nd", w, P)


def fuse_splits(P_by_split: dict[str, tuple[np.ndarray, list[tuple[str, int]]]], y_dev: np.ndarray,
                task: str, n_draws: int, concentration: float, seed: int) -> dict[str, tuple[SearchResult, dict]]:
    """Search SWF and MCWF weights on dev, then fuse every split.

    Parameters
    ----------
    P_by_split : ``{split: (P [L, N, K], index [(video_id, n_bins)])}`` with ``dev`` present
        (from :func:`pipeline.scores.stack_split`).
    y_dev : dev labels [N] (expr, -1 masked) or [N, 2] (va, NaN masked).

    Returns
    -------
    ``{"swf" | "mcwf": (search result, {video_id: (split, fused [n, K])})}``; for ``va`` the
    search maximises the mean CCC and "mcwf" has one weight column per dimension.
    """
    P_dev = P_by_split["dev"][0]
    if task == "va":
        searches = {"swf": (lambda: search_va(P_dev, y_dev, n_draws, concentration, seed), apply_va),
                    "mcwf": (lambda: search_va(P_dev, y_dev, n_draws, concentration, seed, per_dimension=True),
                             apply_va)}
    else:
        searches = {"swf": (lambda: search_swf(P_dev, y_dev, n_draws, concentration, seed), apply_swf),
                    "mcwf": (lambda: search_mcwf(P_dev, y_dev, n_draws, concentration, seed), apply_mcwf)}
    out = {}
    for method, (search, apply) in searches.items():
        res = search()
        fused = {}
        for split, (P, index) in P_by_split.items():
            p, start = apply(P, res.weights), 0
            for vid, n in index:
                fused[vid] = (split, p[start:start + n].astype(np.float32))
                start += n
        out[method] = (res, fused)
    return out
