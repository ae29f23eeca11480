"""Benchmark: KELM fit time and peak memory vs training-set size, exact vs Nystroem.

Usage::

    python -m tests.benchmarks.bench_kelm [--out reports/benchmarks/kelm.json]
        [--sizes 1000 2000 4000 8000] [--dim 256] [--classes 7] [--n-components 1000]
        [--max-exact 8000]

Data: synthetic Gaussian class clusters (D = 256, 7 classes, overlapping) standing in
for window-level embedding statistics. For each N the exact KELM (rbf, Cholesky) and
the Nystroem KELM are fitted on the same data and scored on 2,000 held-out samples.

Peak memory is measured with ``tracemalloc`` during ``fit`` (NumPy registers its array
buffers with it, and LAPACK factorises the kernel in place, so this is the fit's peak
of array memory above what existed before); the analytic estimate is the size of the
dominant buffers (exact: the n x n float64 kernel; Nystroem: the m x m landmark kernel
and the m x m normal equations; Z is processed in 8 MiB row blocks, which add a
constant). Sizes above ``--max-exact`` are fitted with Nystroem only. Timings are
wall-clock on whatever machine runs it (the BLAS thread setting is reported).

This is a script, so its results table goes to stdout with ``print``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from pipeline.models.kelm import KELMClassifier


def make_data(n: int, dim: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian clusters: (n, dim) float64 features and (n,) int labels."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(scale=0.1, size=(n_classes, dim))
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, dim)), y


def measure(clf: KELMClassifier, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit ``clf``; return (wall seconds, peak traced MiB during fit)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    clf.fit(X, y)
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return secs, peak / 2**20


def run(
    sizes: list[int], dim: int, n_classes: int, n_components: int, seed: int, max_exact: int
) -> list[dict]:
    X_test, y_test = make_data(2000, dim, n_classes, seed + 1)
    rows = []
    for n in sizes:
        X, y = make_data(n, dim, n_classes, seed)
        exact = KELMClassifier(C=1.0)
        nys = KELMClassifier(
            C=1.0, approximation="nystroem", n_components=n_components, random_state=seed
        )
        methods = [("exact", exact)] if n <= max_exact else []
        for name, clf in methods + [("nystroem", nys)]:
            secs, peak = measure(clf, X, y)
            m = min(n_components, n)
            est = n * n * 8 if name == "exact" else 2 * m * m * 8
            t0 = time.perf_counter()
            acc = clf.score(X_test, y_test)
            rows.append(
                {
                    "n_train": n,
                    "dim": dim,
                    "n_classes": n_classes,
                    "method": name,
                    "n_components": m if name == "nystroem" else None,
                    "fit_s": round(secs, 3),
                    "predict_2000_s": round(time.perf_counter() - t0, 3),
                    "peak_mib": round(peak, 1),
                    "estimate_mib": round(est / 2**20, 1),
                    "test_accuracy": round(float(acc), 4),
                }
            )
        if n <= max_exact:
            agree = float(np.mean(exact.predict(X_test) == nys.predict(X_test)))
            rows[-1]["agreement_with_exact"] = rows[-2]["agreement_with_exact"] = round(agree, 4)
        else:
            rows[-1]["agreement_with_exact"] = None
    return rows


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _threads() -> str:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            return f"{var}={os.environ[var]}"
    return f"default ({os.cpu_count()} cpus)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/kelm.json"))
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--n-components", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-exact",
        type=int,
        default=8000,
        help="largest N fitted exactly (n^2 * 8 bytes of memory)",
    )
    args = p.parse_args()

    rows = run(args.sizes, args.dim, args.classes, args.n_components, args.seed, args.max_exact)
    header = (
        f"{'N':>6} {'method':>9} {'fit s':>8} {'pred s':>7} {'peak MiB':>9} "
        f"{'est MiB':>8} {'acc':>6} {'agree':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n_train']:>6} {r['method']:>9} {r['fit_s']:>8.2f} {r['predict_2000_s']:>7.2f} "
            f"{r['peak_mib']:>9.1f} {r['estimate_mib']:>8.1f} {r['test_accuracy']:>6.3f} "
            f"{_fmt(r['agreement_with_exact']):>6}"
        )
    report = {
        "benchmark": "kelm_fit_scaling",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "blas_threads": _threads(),
        },
        "params": {
            "C": 1.0,
            "kernel": "rbf",
            "gamma": "scale",
            "test_samples": 2000,
            "seed": args.seed,
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
