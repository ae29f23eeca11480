"""Score-level fusion of per-model class probabilities with Dirichlet random search.

Two fusion rules from the ABAW 2020 system (Dresvyanskiy, Ryumina, Kaya et al.):

* SWF, simple weighted fusion: one weight per model,
  ``fused[n, k] = sum_l w[l] * P[l, n, k]`` with ``w`` on the probability simplex;
* MCWF, model-and-class weighted fusion: one weight per model and class,
  ``fused[n, k] = sum_l W[l, k] * P[l, n, k]`` where every class column ``W[:, k]``
  lies on the simplex.

The weights are found by random search: candidate weights are drawn from a
symmetric Dirichlet distribution (candidate 0 is always the uniform weighting), each
candidate's fused prediction ``argmax_k fused[n, k]`` is scored with the ABAW
expression measure CPM (``0.67 * macro F1 + 0.33 * accuracy``) on the labelled
frames, and the best candidate wins (the earliest one on equal scores).

The search is vectorised over chunks of candidates and blocks of frames; besides a
float32 copy of the labelled scores, its memory is bounded by ``chunk`` and the
frame block size, whatever the number of frames.
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
    "search_swf",
    "search_mcwf",
]

# Frames per block inside the search (at most 255: per-block counts are packed
# in bytes); keeps the (K, chunk, block) work arrays in cache.
_FRAME_BLOCK = 255


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


def apply_swf(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Simple weighted fusion.

    Parameters
    ----------
    P : (L, N, K) float array
        Class probabilities of L models on the same N frames.
    w : (L,) float array
        Model weights.

    Returns
    -------
    (N, K) float array
        ``sum_l w[l] * P[l]``, in the dtype of ``P`` (float32 in the pipeline).
    """
    P = np.asarray(P)
    w = np.asarray(w)
    if P.ndim != 3 or w.shape != (P.shape[0],):
        raise ValueError(f"expected P (L, N, K) and w (L,), got {P.shape}, {w.shape}")
    return np.tensordot(w.astype(P.dtype), P, axes=1)


def apply_mcwf(P: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Model-and-class weighted fusion.

    Parameters
    ----------
    P : (L, N, K) float array
        Class probabilities of L models on the same N frames.
    W : (L, K) float array
        Weight of model l for class k.

    Returns
    -------
    (N, K) float array
        ``fused[n, k] = sum_l W[l, k] * P[l, n, k]``, in the dtype of ``P``.
    """
    P = np.asarray(P)
    W = np.asarray(W)
    if P.ndim != 3 or W.shape != (P.shape[0], P.shape[2]):
        raise ValueError(f"expected P (L, N, K) and W (L, K), got {P.shape}, {W.shape}")
    return np.einsum("lk,lnk->nk", W.astype(P.dtype), P)


def search_swf(
    P: np.ndarray,
    y: np.ndarray,
    n_draws: int,
    concentration: float = 1.0,
    seed: int | np.random.Generator = 0,
    chunk: int = 128,
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
        Number of Dirichlet candidates besides the uniform one.
    concentration : float
        Dirichlet concentration (see :func:`swf_candidates`).
    seed : int or numpy.random.Generator
        Randomness of the draws; the same seed gives the same candidates, hence the
        same weights.
    chunk : int
        Candidates scored together; working memory is about
        ``12 * K * chunk * 255`` bytes (3 MiB for K = 7, chunk = 128), whatever N.

    Returns
    -------
    SearchResult
        ``(weights (L,), best_score, history (n_draws + 1 + L,))``.

    Raises
    ------
    ValueError
        On negative or non-finite scores, labels out of range, no labelled frame,
        or more than 8 classes.

    Notes
    -----
    Fused scores are computed in float32 by a batched ``matmul`` (single-threaded
    BLAS: the products have inner size L) and their argmax is exact, with ties going
    to the smaller class as in ``np.argmax``; so ``best_score`` is the CPM of
    ``apply_swf(P, weights).argmax(axis=1)`` up to float32 rounding. The argmax is
    one integer maximum over the float bits of the fused scores with a class code
    in the low bits (valid because the scores are non-negative), and the confusion
    counts are summed as byte counters packed into int64 words.
    Frames whose winner is the same for every weighting (the class's smallest score
    over models beats every other class's largest) are counted once, not per
    candidate.
    """
    P, y = _check_inputs(P, y)
    cands = swf_candidates(n_draws, P.shape[0], concentration, seed)
    scores = _score_candidates(P, y, cands[None], chunk)
    return _best(cands, scores, "swf")


def search_mcwf(
    P: np.ndarray,
    y: np.ndarray,
    n_draws: int,
    concentration: float = 1.0,
    seed: int | np.random.Generator = 0,
    chunk: int = 128,
) -> SearchResult:
    """Random search for MCWF model-by-class weights that maximise CPM.

    Same parameters and notes as :func:`search_swf`; each candidate is an (L, K)
    matrix whose class columns are independent Dirichlet draws
    (:func:`mcwf_candidates`). One caveat: a frame whose models give every class
    the same score (e.g. uniform rows for frames without a face) ties only in
    exact arithmetic under MCWF; float32 rounding of ``sum_l W[l, k] / K`` picks
    its class, and may pick differently here and in :func:`apply_mcwf`.

    Returns
    -------
    SearchResult
        ``(weights (L, K), best_score, history (n_draws + 1 + L,))``.
    """
    P, y = _check_inputs(P, y)
    cands = mcwf_candidates(n_draws, P.shape[0], P.shape[2], concentration, seed)
    scores = _score_candidates(P, y, cands.transpose(2, 0, 1), chunk)
    return _best(cands, scores, "mcwf")


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


def _score_candidates(P: np.ndarray, y: np.ndarray, weights: np.ndarray, chunk: int) -> np.ndarray:
    """CPM of every candidate.

    ``weights`` is (1, M, L) for SWF (shared by all classes) or (K, M, L) for MCWF
    (one weight vector per class); returns (M,) float64.
    """
    n_models, _, n_classes = P.shape
    n_cand = weights.shape[1]
    chunk = max(1, min(int(chunk), n_cand))
    keep = y != -1
    Pk = P[:, keep, :].astype(np.float32)
    Pk += 0.0  # -0.0 -> +0.0, so that float bits order like the values
    yk = y[keep].astype(np.int64)

    # Frames decided for every weighting: when class k's smallest score over the
    # models beats every other class's largest, k wins any convex combination. The
    # relative margin covers float32 rounding of the fused sums.
    lo = Pk.min(axis=0)
    hi = Pk.max(axis=0)
    top = lo.argmax(axis=1)
    rows = np.arange(top.size)
    lo_top = lo[rows, top]
    hi[rows, top] = -np.inf
    delta = 8 * (n_models + 1) * np.finfo(np.float32).eps
    fixed = lo_top * (1 - delta) > hi.max(axis=1) * (1 + delta)
    base = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(base, (yk[fixed], top[fixed]), 1)
    log.debug("fusion search: %d labelled frames, %d decided by bounds", yk.size, int(fixed.sum()))

    # The other frames, sorted by true class, as (K, L, Na) so that one batched
    # matmul gives the fused scores of a chunk of candidates as (K, C, frames).
    order = np.argsort(yk[~fixed], kind="stable")
    ya = yk[~fixed][order]
    Pt = np.ascontiguousarray(Pk[:, ~fixed, :][:, order, :].transpose(2, 0, 1))
    n_active = ya.size

    # Exact argmax as one integer max: the float32 bits of non-negative values
    # order like the values. Shifted left by 6 they leave room for a code
    # 8 * (K - 1 - k), larger for smaller classes (np.argmax's first-maximum rule
    # on ties). The code of the winner is then a shift: 1 << code sets byte
    # (K - 1 - k) of an int64, so summing over <= 255 frames (one frame block)
    # counts the predictions of all K <= 8 classes at once, one byte each.
    if n_classes > 8:
        raise ValueError(f"the search supports at most 8 classes, got {n_classes}")
    codes = (8 * (n_classes - 1 - np.arange(n_classes, dtype=np.int64)))[:, None, None]
    lane_shift = 8 * np.arange(n_classes, dtype=np.uint64)
    lane_to_class = n_classes - 1 - np.arange(n_classes)
    block = min(_FRAME_BLOCK, max(1, n_active))
    # Per block: where its (sorted) true classes change, and which classes these are.
    blocks = []
    for n0 in range(0, n_active, block):
        yb = ya[n0 : n0 + block]
        seg = np.flatnonzero(np.r_[True, yb[1:] != yb[:-1]])
        blocks.append((n0, min(n0 + block, n_active), seg, yb[seg]))
    fused = np.empty((n_classes, chunk, block), dtype=np.float32)
    enc = np.empty((n_classes, chunk, block), dtype=np.int64)
    best = np.empty((chunk, block), dtype=np.int64)
    lanes = np.empty((chunk, block), dtype=np.int64)

    scores = np.empty(n_cand, dtype=np.float64)
    w32 = np.ascontiguousarray(weights, dtype=np.float32)
    one = np.int64(1)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny GEMMs: threads only cost
        for c0 in range(0, n_cand, chunk):
            c1 = min(c0 + chunk, n_cand)
            nc = c1 - c0
            wc = w32[:, c0:c1, :]
            counts = np.zeros((nc, n_classes, n_classes), dtype=np.int64)  # cand, true, lane
            for n0, n1, seg, yseg in blocks:
                f = fused[:, :nc, : n1 - n0]
                e = enc[:, :nc, : n1 - n0]
                b = best[:nc, : n1 - n0]
                h = lanes[:nc, : n1 - n0]
                np.matmul(wc, Pt[:, :, n0:n1], out=f)
                np.left_shift(f.view(np.int32), 6, out=e, dtype=np.int64)
                np.bitwise_or(e, codes, out=e)
                np.max(e, axis=0, out=b)
                np.bitwise_and(b, 63, out=b)
                np.left_shift(one, b, out=h)
                sums = np.add.reduceat(h.view(np.uint64), seg, axis=1)  # (nc, n_seg)
                counts[:, yseg, :] += ((sums[:, :, None] >> lane_shift) & 0xFF).astype(np.int64)
            conf = counts[:, :, lane_to_class]  # (cand, true, predicted)
            scores[c0:c1] = cpm_from_confusion(conf + base)
    return scores


# ----------------------------------------------------------------------------- valence/arousal
#
# CCC of a weighted sum of model outputs needs only first and second moments: with model
# means m (L,), model covariance S (L, L) and model-label covariance c (L,) on the annotated
# frames, the fused series w.P has mean w.m, variance w'Sw and covariance w.c with the
# labels. Every candidate is then scored exactly in O(L^2), whatever the number of frames.


def _va_moments(P: np.ndarray, y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    ok = np.isfinite(y[:, d]) & np.isfinite(P[:, :, d]).all(axis=0)
    if not ok.any():
        raise ValueError(f"no annotated frame for dimension {d}")
    X = P[:, ok, d].astype(np.float64)  # (L, n)
    t = y[ok, d].astype(np.float64)
    m = X.mean(axis=1)
    Xc = X - m[:, None]
    return m, Xc @ Xc.T / X.shape[1], Xc @ (t - t.mean()) / X.shape[1], float(t.mean()), float(t.var())


def _ccc_of_weights(W: np.ndarray, m, S, c, my: float, vy: float) -> np.ndarray:
    """CCC of fused series for candidate weights ``W`` [C, L] (population moments)."""
    mean = W @ m
    var = np.einsum("cl,lk,ck->c", W, S, W)
    return 2 * (W @ c) / (var + vy + (mean - my) ** 2)


def search_va(P: np.ndarray, y: np.ndarray, n_draws: int, concentration: float = 1.0, seed: int = 0,
              per_dimension: bool = False) -> SearchResult:
    """Dirichlet random search for fusion weights of valence/arousal predictions.

    Parameters
    ----------
    P : (L, N, 2) float array
        Valence/arousal predictions of L models on N frames.
    y : (N, 2) float array
        Labels; NaN = unannotated (not scored).
    per_dimension : bool
        False: one weight per model (SWF). True: a weight column per dimension, each
        summing to 1 over models (the MCWF analogue, dimensions in place of classes).

    Returns
    -------
    SearchResult with ``weights`` (L,) or (L, 2) and ``best_score`` = mean CCC over the two
    dimensions; ``history`` holds every candidate's score (candidate 0 = uniform).
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
             "per-dimension" if per_dimension else "swf", len(cands), best, scores[best], scores[0])
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
