"""Benchmark: Dirichlet random search for SWF and MCWF fusion weights.

Run from the repository root::

    python -m tests.benchmarks.bench_fusion [--out reports/benchmarks/fusion.json]

Defaults: 10,000 Dirichlet candidates (plus the uniform one), 4 models, 7 classes,
100,000 labelled frames, float32 scores, seed 0. Two kinds of synthetic scores:

* ``--data random`` (default, worst case): every model outputs independent
  Dirichlet(1) probabilities, so no frame is decided for all weightings and every
  candidate is scored on every frame;
* ``--data informative``: label-correlated models (softmax of Gaussian logits with
  a per-model boost on the true class), closer to real classifiers; frames on which
  all models agree firmly are counted once instead of per candidate.

As a check, the best candidate's score is recomputed with ``apply_*``, ``argmax``
and the scikit-learn-based ``classification_metrics``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from pipeline.fusion import apply_mcwf, apply_swf, search_mcwf, search_swf
from pipeline.metrics import classification_metrics


def make_scores(kind: str, n_models: int, n_frames: int, n_classes: int, seed: int):
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


def run(
    kind: str, n_draws: int, n_models: int, n_frames: int, n_classes: int, seed: int, chunk: int
) -> dict:
    P, y = make_scores(kind, n_models, n_frames, n_classes, seed)
    res = {
        "data": kind, "n_draws": n_draws, "n_candidates": n_draws + 1 + n_models, "n_models": n_models,
        "n_frames": n_frames, "n_classes": n_classes, "seed": seed, "chunk": chunk,
        "machine": platform.machine(), "numpy": np.__version__,
    }
    for name, search, apply in (("swf", search_swf, apply_swf), ("mcwf", search_mcwf, apply_mcwf)):
        t0 = time.perf_counter()
        w, best, history = search(P, y, n_draws=n_draws, concentration=1.0, seed=seed, chunk=chunk)
        secs = time.perf_counter() - t0
        check = classification_metrics(y, apply(P, w).argmax(axis=1), n_classes)["cpm"]
        assert abs(check - best) < 1e-6, f"{name}: search {best} vs apply+argmax {check}"
        res[name] = {
            "seconds": round(secs, 3),
            "candidates_per_s": round((n_draws + 1 + n_models) / secs, 1),
            "best_cpm": best,
            "uniform_cpm": float(history[0]),
            "weights": np.round(w, 4).tolist(),
        }
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--data", choices=["random", "informative"], default="random")
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=128)
    a = p.parse_args()
    res = run(a.data, a.draws, a.models, a.frames, a.classes, a.seed, a.chunk)
    print(f"fusion search: {res['n_candidates']:,} candidates, L={res['n_models']} "
          f"K={res['n_classes']} N={res['n_frames']:,} data={res['data']}")
    print(f"{'method':<8}{'seconds':>10}{'cand/s':>10}{'best cpm':>10}{'uniform':>10}")
    for name in ("swf", "mcwf"):
        r = res[name]
        print(f"{name:<8}{r['seconds']:>10.2f}{r['candidates_per_s']:>10.0f}"
              f"{r['best_cpm']:>10.4f}{r['uniform_cpm']:>10.4f}")
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
