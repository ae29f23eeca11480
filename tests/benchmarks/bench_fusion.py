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

Cheap wins (``cheap_wins``): the whole fusion (:func:`pipeline.fusion.fuse_splits`:
exclusion, cross-validation over dev speakers, choice) on a synthetic corpus with the real
one's structure (speakers, videos, held expressions, face-free stretches), with and without
temporal smoothing of the 5 Hz scores and the entropy gate. Seven classes held for 2-8 s,
8 dev and 8 test speakers (3 videos of 12-30 s each), five models: a face model (strong,
independent frame noise, its training prior on face-free stretches), two audio models (window
features: noise correlated over time), a weak one and one at chance; every model has a
per-speaker class bias. Test CPM of the chosen rule (``chosen``; ``best_cv``: the rule with
the best cross-validated score, i.e. ``choice_se`` = 0), uniform weights, the best single
model on dev, SWF and MCWF, averaged over ``--corpus-seeds`` draws of the corpus, and each
setting's change from the baseline (no smoothing, no gate). 2,000 Dirichlet draws per search
instead of the pipeline's 10,000, to keep the run short. The gains depend on the noise assumed
here (independent frame noise favours smoothing); the real-data measurement is still to come.
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

from pipeline.fusion import (
    FusionConfig,
    frame_groups,
    fuse_splits,
    fuse_with,
    mcwf_candidates,
    score_candidates,
    swf_candidates,
)
from pipeline.metrics import classification_metrics, cpm_from_confusion
from pipeline.scores import smooth_stacked

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
    cands = {
        "swf": swf_candidates(n_draws, n_models, 1.0, seed),
        "mcwf": mcwf_candidates(n_draws, n_models, n_classes, 1.0, seed),
    }
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
            "seconds_plain": round(t_new, 3),
            "seconds_bitpacked": round(t_old, 3),
            "time_ratio_plain_over_bitpacked": round(t_new / t_old, 2),
            "winner_plain": int(np.argmax(new)),
            "winner_bitpacked": int(np.argmax(old)),
            "same_winner": bool(np.argmax(new) == np.argmax(old)),
            "max_abs_score_difference": float(np.abs(new - old).max()),
            "n_candidates_with_different_scores": int(differ.size),
            # Of the first _REFEREE of those: which scorer agrees with float64 arithmetic.
            "referee_plain_equals_float64": int(np.sum(np.abs(ref - new[judged]) < 1e-12)),
            "referee_bitpacked_equals_float64": int(np.sum(np.abs(ref - old[judged]) < 1e-12)),
            "best_cpm": float(new.max()),
            "uniform_cpm": float(new[0]),
        }
        log.info(
            "%s %s: plain %.2f s, bit-packed %.2f s (ratio %.2f), same winner %s, "
            "max |score difference| %.1e",
            kind,
            name,
            t_new,
            t_old,
            t_new / t_old,
            out[name]["same_winner"],
            out[name]["max_abs_score_difference"],
        )
    return out


# ------------------------------------------------------------------ cheap wins

_MODELS = ["face", "audio", "audio_weak", "weak", "chance"]
# Per model: strength of the true class's logit, AR(1) correlation of the frame noise.
_MODEL_SHAPE = [(2.0, 0.0), (1.2, 0.7), (0.7, 0.7), (0.3, 0.0), (0.0, 0.0)]
_SETTINGS = {  # name -> (smooth_bins, entropy_gate)
    "baseline": (0, None),
    "smooth_3": (3, None),
    "smooth_5": (5, None),
    "smooth_9": (9, None),
    "gate_0.9": (0, 0.9),
    "gate_0.95": (0, 0.95),
    "smooth_5_gate_0.95": (5, 0.95),
}


def _video(rng: np.random.Generator, bias: np.ndarray, n_classes: int = 7) -> tuple:
    """One video: (L, n, K) float32 scores and (n,) labels (-1 on an unlabelled stretch)."""
    n = int(rng.integers(60, 151))  # 12-30 s at 5 Hz
    y = np.repeat(rng.integers(0, n_classes, n), rng.integers(10, 41, n))[:n]  # 2-8 s segments
    scores = []
    for (strength, rho), b in zip(_MODEL_SHAPE, bias):
        e = rng.standard_normal((n, n_classes))
        for t in range(1, n):  # AR(1) noise with unit variance
            e[t] = rho * e[t - 1] + np.sqrt(1 - rho**2) * e[t]
        logits = e + strength * np.eye(n_classes)[y] + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores.append(p / p.sum(axis=1, keepdims=True))
    prior = np.full(n_classes, 0.75 / (n_classes - 1))
    prior[0] = 0.25  # the training prior of the face model (normalised entropy 0.98 for K=7)
    for _ in range(int(rng.integers(0, 3))):  # face-free stretches: the face model's prior
        a = int(rng.integers(0, n))
        scores[0][a : a + int(rng.integers(10, 40))] = prior
    labels = y.copy()
    if rng.random() < 0.3:
        a = int(rng.integers(0, n - 10))
        labels[a : a + 10] = -1
    return np.stack(scores).astype(np.float32), labels


def make_corpus(seed: int, n_speakers: int = 8, n_videos: int = 3) -> dict:
    """``{split: (P (L, N, K), y (N,), index, labels)}`` for dev and test (new speakers)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("dev", "test"):
        ps, ys, index, labels = [], [], [], {}
        for s in range(n_speakers):
            bias = rng.normal(0.0, 0.5, (len(_MODELS), 7))  # per speaker and model
            for v in range(n_videos):
                P, y = _video(rng, bias)
                vid = f"{split}_s{s}_v{v}"
                ps.append(P)
                ys.append(y)
                index.append((vid, y.size))
                labels[vid] = {"speaker": f"{split}_s{s}"}
        out[split] = (np.concatenate(ps, axis=1), np.concatenate(ys), index, labels)
    return out


def _cpm(y: np.ndarray, p: np.ndarray) -> float:
    return float(classification_metrics(y, p.argmax(axis=1), p.shape[1])["cpm"])


def _test_cpm(fused: dict, y_test: np.ndarray, index: list) -> float:
    """CPM of one fusion output ``{video_id: (split, (n, K))}`` on the test videos."""
    return _cpm(y_test, np.concatenate([fused[vid][1] for vid, _ in index]))


def cheap_wins(seeds: list[int], n_draws: int) -> dict:
    """Test CPM of each fusion output under each smoothing/gate setting, and its deltas."""
    runs = {name: [] for name in _SETTINGS}
    for seed in seeds:
        corpus = make_corpus(seed)
        _, y_dev, index_dev, labels_dev = corpus["dev"]
        _, y_test, index_test, _ = corpus["test"]
        groups = frame_groups(index_dev, labels_dev, "speaker")
        splits = {s: (P, index) for s, (P, _, index, _) in corpus.items()}
        for name, (smooth, gate) in _SETTINGS.items():
            cfg = FusionConfig(
                task="expr",
                n_draws=n_draws,
                concentration=1.0,
                seed=0,
                cv_folds=5,
                cv_group="speaker",
                shrinkage=(0.0, 0.25, 0.5, 0.75),
                choice_se=1.0,
                rule="auto",
                smooth_bins=smooth,
                entropy_gate=gate,
            )
            dev, fused = fuse_splits(splits, y_dev, groups, _MODELS, cfg)
            P_test = smooth_stacked(splits["test"][0], index_test, smooth)  # as fuse_splits does
            row = {m: _cpm(y_test, fuse_with(P_test, fit, cfg)) for m, fit in dev.fits.items()}
            row["chosen"] = _test_cpm(fused["chosen"], y_test, index_test)
            row["best_cv"] = row[dev.best_cv]  # what choice_se = 0 would have used
            row.update(
                chosen_method=dev.chosen,
                best_cv_method=dev.best_cv,
                excluded=sorted(dev.excluded),
                dev_cv={m: f.dev_score_cv for m, f in dev.fits.items()},
                dev_in_sample={m: f.dev_score_in_sample for m, f in dev.fits.items()},
            )
            runs[name].append(row)
            log.info(
                "seed %d %-18s test cpm: chosen (%s) %.4f, best cv (%s) %.4f, swf %.4f, "
                "mcwf %.4f, single %.4f",
                seed,
                name,
                dev.chosen,
                row["chosen"],
                dev.best_cv,
                row["best_cv"],
                row["swf"],
                row["mcwf"],
                row["single"],
            )
    outputs = ("chosen", "best_cv", "uniform", "single", "swf", "mcwf")
    mean = {
        name: {o: float(np.mean([r[o] for r in rows])) for o in outputs}
        for name, rows in runs.items()
    }
    delta = {
        name: {o: round(mean[name][o] - mean["baseline"][o], 4) for o in outputs} for name in runs
    }
    settings = {k: {"smooth_bins": v[0], "entropy_gate": v[1]} for k, v in _SETTINGS.items()}
    return {
        "seeds": seeds,
        "n_draws": n_draws,
        "settings": settings,
        "mean_test_cpm": mean,
        "delta_vs_baseline": delta,
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus-seeds", type=int, default=5, help="cheap wins: corpora drawn")
    p.add_argument("--corpus-draws", type=int, default=2000, help="cheap wins: draws per search")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pipeline").setLevel(logging.WARNING)  # one line per search otherwise
    res = {
        "search": {
            "n_draws": a.draws,
            "n_candidates": a.draws + 1 + a.models,
            "n_models": a.models,
            "n_frames": a.frames,
            "n_classes": a.classes,
            "seed": a.seed,
            "runs": [
                compare_search(kind, a.draws, a.models, a.frames, a.classes, a.seed)
                for kind in ("random", "informative")
            ],
        },
        "cheap_wins": cheap_wins(list(range(a.corpus_seeds)), a.corpus_draws),
        "machine": platform.machine(),
        "numpy": np.__version__,
    }
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        log.info("wrote %s", a.out)


if __name__ == "__main__":
    main()
