"""Benchmark: the fusion weight search, plain chunked numpy against the former bit-packed one.

Run from the repository root::

    python -m tests.benchmarks.bench_fusion [--out reports/benchmarks/fusion.json]

Search timing (``search``): 10,000 Dirichlet candidates plus the uniform one and the single
models, 4 models, 7 classes, 20,000 labelled frames (100,000 before the plain scorer: shrunk so
that the comparison runs in about a minute on 2 cores), float32 scores, seed 0, SWF and MCWF
candidates. Two kinds of synthetic scores:

* ``random`` (worst case for the former scorer): every model outputs independent
  Dirichlet(1) probabilities, so no frame is decided for all weightings;
* ``informative``: label-correlated models (softmax of Gaussian logits with a per-model boost
  on the true class), closer to real classifiers.

Both scorers score the same candidates; the figures say whether every score and the winner
agree, and the time ratio. The former scorer (int64 byte packing, at most 8 classes, frames
decided by bounds counted once) is kept in this file only, for this comparison.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.fusion import mcwf_candidates, score_candidates, swf_candidates
from pipeline.metrics import classification_metrics, cpm_from_confusion

log = logging.getLogger("bench_fusion")

# Frames per block inside the former search (at most 255: per-block counts are packed in bytes).
_FRAME_BLOCK = 255
# Candidates whose two scores differ that are re-scored in float64 (which scorer rounds less).
_REFEREE = 20


def old_score_candidates(
    P: np.ndarray, y: np.ndarray, weights: np.ndarray, chunk: int = 128
) -> np.ndarray:
    """CPM of every candidate: the bit-packed scorer this project used before (for comparison).

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


def make_scores(
    kind: str, n_models: int, n_frames: int, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic (L, N, K) float32 probabilities and (N,) labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_frames)
    if kind == "random":
        P = rng.dirichlet(np.ones(n_classes), size=(n_models, n_frames))
    elif kind == "informative":
        boost = np.linspace(1.0, 2.5, n_models)[:, None, None]
        logits = rng.standard_normal((n_models, n_frames, n_classes))
        logits += boost * np.eye(n_classes)[y][None]
        P = np.exp(logits - logits.max(axis=2, keepdims=True))
        P /= P.sum(axis=2, keepdims=True)
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    return P.astype(np.float32), y


def _cpm_float64(P: np.ndarray, y: np.ndarray, W: np.ndarray) -> float:
    """CPM of the MCWF-form weights ``W`` (L, K) with the fusion computed in float64."""
    fused = np.einsum("lk,lnk->nk", W.astype(np.float64), P.astype(np.float64))
    return float(classification_metrics(y, fused.argmax(axis=1), P.shape[2])["cpm"])


def compare_search(
    kind: str, n_draws: int, n_models: int, n_frames: int, n_classes: int, seed: int
) -> dict:
    """Score the SWF and MCWF candidates with both scorers; times, winners, agreement."""
    P, y = make_scores(kind, n_models, n_frames, n_classes, seed)
    out: dict = {"data": kind}
    cands = {"swf": swf_candidates(n_draws, n_models, 1.0, seed),
             "mcwf": mcwf_candidates(n_draws, n_models, n_classes, 1.0, seed)}
    for name, c in cands.items():
        W = c if c.ndim == 3 else np.repeat(c[:, :, None], n_classes, axis=2)  # (C, L, K)
        t0 = time.perf_counter()
        new = score_candidates(P, y, W)
        t_new = time.perf_counter() - t0
        old_w = c[None] if c.ndim == 2 else c.transpose(2, 0, 1)  # (1 or K, C, L)
        t0 = time.perf_counter()
        old = old_score_candidates(P, y, old_w)
        t_old = time.perf_counter() - t0
        differ = np.flatnonzero(np.abs(new - old) > 1e-12)
        judged = differ[:_REFEREE]
        ref = np.array([_cpm_float64(P, y, W[i]) for i in judged])
        out[name] = {
            "seconds_plain": round(t_new, 3), "seconds_bitpacked": round(t_old, 3),
            "time_ratio_plain_over_bitpacked": round(t_new / t_old, 2),
            "winner_plain": int(np.argmax(new)), "winner_bitpacked": int(np.argmax(old)),
            "same_winner": bool(np.argmax(new) == np.argmax(old)),
            "max_abs_score_difference": float(np.abs(new - old).max()),
            "n_candidates_with_different_scores": int(differ.size),
            # Of the first _REFEREE of those: which scorer agrees with float64 arithmetic.
            "referee_plain_equals_float64": int(np.sum(np.abs(ref - new[judged]) < 1e-12)),
            "referee_bitpacked_equals_float64": int(np.sum(np.abs(ref - old[judged]) < 1e-12)),
            "best_cpm": float(new.max()), "uniform_cpm": float(new[0]),
        }
        log.info("%s %s: plain %.2f s, bit-packed %.2f s (ratio %.2f), same winner %s, "
                 "max |score difference| %.1e", kind, name, t_new, t_old, t_new / t_old,
                 out[name]["same_winner"], out[name]["max_abs_score_difference"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    res = {
        "search": {
            "n_draws": a.draws, "n_candidates": a.draws + 1 + a.models, "n_models": a.models,
            "n_frames": a.frames, "n_classes": a.classes, "seed": a.seed,
            "runs": [compare_search(kind, a.draws, a.models, a.frames, a.classes, a.seed)
                     for kind in ("random", "informative")],
        },
        "machine": platform.machine(), "numpy": np.__version__,
    }
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        log.info("wrote %s", a.out)


if __name__ == "__main__":
    main()
