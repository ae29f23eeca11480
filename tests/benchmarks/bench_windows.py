"""Benchmark: ``window_stats`` (one loop step per window) against the former sparse version.

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
from scipy import sparse

from pipeline.features.windows import _check_bounds, window_bounds, window_stats

TOL = 1e-6
_ROW_CHUNK_ELEMS = 1 << 19  # float64 buffer of the sparse version (4 MiB)


def window_stats_sparse(
    x: np.ndarray, valid: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The former vectorised version (sparse incidence products), for comparison only."""
    x = np.asarray(x)
    valid = np.asarray(valid, dtype=bool)
    if x.ndim != 2 or valid.shape != (x.shape[0],):
        raise ValueError(f"x must be (T, D) and valid (T,), got {x.shape}, {valid.shape}")
    n_frames, dim = x.shape
    starts, ends = _check_bounds(starts, ends, n_frames)
    n_win = starts.size

    cum_valid = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    n_valid = cum_valid[ends] - cum_valid[starts]
    if n_win == 0 or cum_valid[-1] == 0 or dim == 0:
        return np.full((n_win, 2 * dim), np.nan, dtype=np.float32), n_valid
    feats = np.empty((n_win, 2 * dim), dtype=np.float32)  # every row written below

    valid_idx = np.flatnonzero(valid)
    pick = np.linspace(0, valid_idx.size - 1, min(valid_idx.size, 1024)).astype(np.int64)
    mu = x[valid_idx[pick]].mean(axis=0, dtype=np.float64)

    # 1. frames -> segment sums of [x - mu | (x - mu)^2], chunk by chunk.
    rows = max(1, _ROW_CHUNK_ELEMS // (2 * dim))
    chunk_edges = np.arange(0, n_frames, rows, dtype=np.int64)
    edges = np.unique(np.concatenate([starts, ends, chunk_edges, [n_frames]]))
    seg = np.empty((edges.size - 1, 2 * dim), dtype=np.float64)
    buf = np.empty((rows, 2 * dim), dtype=np.float64)
    for c0 in chunk_edges:
        c1 = min(c0 + rows, n_frames)
        b = buf[: c1 - c0]
        np.subtract(x[c0:c1], mu, out=b[:, :dim])
        np.multiply(b[:, :dim], b[:, :dim], out=b[:, dim:])
        lo, hi = np.searchsorted(edges, [c0, c1])
        # Row j of the incidence matrix holds the valid frames of segment lo + j;
        # invalid rows of b (possibly NaN) are never read.
        indptr = cum_valid[edges[lo : hi + 1]] - cum_valid[c0]
        cols = np.flatnonzero(valid[c0:c1])
        inc = sparse.csr_array((np.ones(cols.size), cols, indptr), shape=(hi - lo, c1 - c0))
        seg[lo:hi] = inc @ b

    # 2. segments -> windows: window i spans segments [i_s[i], i_e[i]).
    i_s = np.searchsorted(edges, starts)
    i_e = np.searchsorted(edges, ends)
    per_win = i_e - i_s
    indptr = np.concatenate([[0], np.cumsum(per_win)])
    cols = np.arange(indptr[-1]) - np.repeat(indptr[:-1] - i_s, per_win)
    win_inc = sparse.csr_array((np.ones(cols.size), cols, indptr), shape=(n_win, seg.shape[0]))
    for w0 in range(0, n_win, rows):
        w1 = min(w0 + rows, n_win)
        n = n_valid[w0:w1, None].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):  # n == 0 -> NaN rows
            moments = (win_inc[w0:w1] @ seg) / n
        mean_shifted = moments[:, :dim]
        var = moments[:, dim:]
        var -= mean_shifted * mean_shifted
        np.maximum(var, 0.0, out=var)  # NaN stays NaN
        feats[w0:w1, :dim] = mean_shifted + mu
        feats[w0:w1, dim:] = np.sqrt(var)
    return feats, n_valid


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

    t_vec, (f_vec, n_vec) = _best_time(
        lambda: window_stats_sparse(x, valid, starts, ends), repeats
    )
    t_loop, (f_ref, n_ref) = _best_time(lambda: window_stats(x, valid, starts, ends), repeats)

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
        "former_sparse_s": round(t_vec, 4),
        "window_stats_loop_s": round(t_loop, 4),
        "sparse_speedup_over_loop": round(t_loop / t_vec, 2),
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
    print(f"{'former sparse':<16}{res['former_sparse_s']:>10.3f}")
    print(f"{'window_stats':<16}{res['window_stats_loop_s']:>10.3f}")
    print(
        f"sparse is {res['sparse_speedup_over_loop']:.2f}x faster, "
        f"max abs diff {res['max_abs_diff']:.2e}"
    )
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
