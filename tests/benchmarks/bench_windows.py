"""Benchmark: vectorised ``window_stats`` against the per-window loop reference.

Run from the repository root::

    python -m tests.benchmarks.bench_windows [--out reports/benchmarks/windows.json]

Defaults: T = 100,000 frames, D = 1,024, 4 s windows at 5 Hz with 50 % overlap,
about 5 % invalid frames (NaN embeddings), seed 0. Each implementation runs
``--repeats`` times in the same process and the fastest run is reported, since
the 2-core machine is shared. The script fails if the two disagree by more than
1e-6 (absolute on the std half and on means with |value| <= 1, relative above).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from pipeline.features.windows import window_bounds, window_stats, window_stats_loop

TOL = 1e-6


def _best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(
    n_frames: int,
    dim: int,
    rate_hz: float,
    window_s: float,
    overlap: float,
    p_invalid: float,
    seed: int,
    repeats: int,
) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_frames, dim), dtype=np.float32)
    valid = rng.random(n_frames) >= p_invalid
    x[~valid] = np.nan
    starts, ends = window_bounds(n_frames, rate_hz, window_s, overlap)

    t_vec, (f_vec, n_vec) = _best_time(lambda: window_stats(x, valid, starts, ends), repeats)
    t_loop, (f_ref, n_ref) = _best_time(lambda: window_stats_loop(x, valid, starts, ends), repeats)

    assert np.array_equal(n_vec, n_ref), "valid-frame counts differ"
    assert np.array_equal(np.isnan(f_vec), np.isnan(f_ref)), "NaN patterns differ"
    diff = np.abs(f_vec.astype(np.float64) - f_ref)
    scale = np.maximum(1.0, np.abs(f_ref))
    max_abs = float(np.nanmax(diff))
    max_scaled = float(np.nanmax(diff / scale))
    assert max_scaled <= TOL, f"max |vec - loop| / max(1, |loop|) = {max_scaled:.3g} > {TOL}"
    return {
        "n_frames": n_frames,
        "dim": dim,
        "rate_hz": rate_hz,
        "window_s": window_s,
        "overlap": overlap,
        "n_windows": int(starts.size),
        "invalid_fraction": float(1.0 - valid.mean()),
        "seed": seed,
        "repeats": repeats,
        "vectorised_s": round(t_vec, 4),
        "loop_s": round(t_loop, 4),
        "speedup": round(t_loop / t_vec, 2),
        "max_abs_diff": max_abs,
        "max_scaled_diff": max_scaled,
        "machine": platform.machine(),
        "numpy": np.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--rate-hz", type=float, default=5.0)
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--invalid", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    res = run(a.frames, a.dim, a.rate_hz, a.window_s, a.overlap, a.invalid, a.seed, a.repeats)
    print(
        f"window_stats: T={res['n_frames']:,} D={res['dim']:,} W={res['n_windows']:,} "
        f"window={res['window_s']} s overlap={res['overlap']} (best of {res['repeats']})"
    )
    print(f"{'implementation':<16}{'seconds':>10}")
    print(f"{'vectorised':<16}{res['vectorised_s']:>10.3f}")
    print(f"{'loop':<16}{res['loop_s']:>10.3f}")
    print(f"speed-up {res['speedup']:.2f}x   max abs diff {res['max_abs_diff']:.2e}")
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
