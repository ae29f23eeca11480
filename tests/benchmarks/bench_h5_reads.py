"""Benchmark: reading every group of a many-item corpus, one file open per read vs one reader.

An image corpus (FER-2013: 32,298 items) or a clip corpus (CREMA-D: 7,442) gives each
feature file one group per item. ``window_stats`` and ``fit`` used to open a file again for
every group they read (``read_group`` / ``read_group_attrs`` per item); they now read through
one open file (:func:`pipeline.io.h5.open_reader`, :func:`pipeline.io.h5.iter_groups_with_attrs`).
This builds, for ``--n`` one-frame items, a labels file and an audio embedding file whose
groups are all skip records (an image has no audio track: the case that cost most on
FER-2013), then times in one run, both ways, the reads of

- ``window_stats``: each item's labels and attributes, its embedding's attributes and (now
  only when it is not a skip record) its arrays;
- ``fit``: each window group and its attributes (a ``window_stats`` output);

and checks that both ways read the same values. Then the ``fit`` stage itself on that window
file, as ``window_stats`` wrote it before (no ``n_windows`` attribute: it reads every group
to find no training window) and now (``n_windows = 0``: a skip record without reading one);
both must write the same skip record, apart from its wording.

    python -m tests.benchmarks.bench_h5_reads --out reports/benchmarks/h5_reads.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from pipeline.features.summarise import no_windows
from pipeline.io.h5 import (
    SKIPPED,
    iter_groups,
    iter_groups_with_attrs,
    open_reader,
    open_writer,
    read_group,
    read_group_attrs,
    skipped_group,
)

DIM = 88  # eGeMAPS


def write_corpus(root: Path, n: int) -> tuple[Path, Path, Path]:
    """Labels, audio embeddings (all skipped) and windows (all empty) of ``n`` image items."""
    ids = [f"img{i:06d}" for i in range(n)]
    paths = root / "labels.h5", root / "emb.h5", root / "win.h5"
    with open_writer(paths[0], stage="resample_labels", rate_hz=5.0) as w:
        for i, vid in enumerate(ids):
            w.add(vid, attrs={"split": "train", "speaker": vid}, t=np.zeros(1), y=np.int8([i % 7]))
    with open_writer(paths[1], stage="embed_audio", dim=DIM) as w:
        for vid in ids:
            arrays, attrs = skipped_group(DIM, "no audio track (modality image)")
            w.add(vid, attrs=attrs, **arrays)
    with open_writer(paths[2], stage="window_stats", dim=2 * DIM) as w:
        for vid in ids:
            attrs = {"split": "train", "n_grid": 1, "skipped": "no audio track (modality image)"}
            w.add(vid, attrs=attrs, **no_windows(DIM, {"y": None}))
    return paths


def per_call(labels: Path, emb: Path, win: Path) -> tuple[list, list]:
    """The former reads: every read opens its file; a skip record's empty arrays are read."""
    ws = []
    for vid, lab in iter_groups(labels):
        a = read_group_attrs(labels, vid)
        e = read_group(emb, vid, ["t", "x", "valid"])
        reason = read_group_attrs(emb, vid).get(SKIPPED, "")
        if reason:  # the stage wrote no windows from these (all empty)
            assert all(v.size == 0 for v in e.values())
            e = {}
        ws.append((vid, lab, a, reason, e))
    fit = [(vid, g, read_group_attrs(win, vid)) for vid, g in iter_groups(win)]
    return ws, fit


def one_reader(labels: Path, emb: Path, win: Path) -> tuple[list, list]:
    """The reads of the stages now: one open file each; a skip record's arrays unread."""
    ws = []
    with open_reader(emb) as r:
        for vid, lab, a in iter_groups_with_attrs(labels):
            reason = r.group_attrs(vid).get(SKIPPED, "")
            e = {} if reason else r.group(vid, ["t", "x", "valid"])
            ws.append((vid, lab, a, reason, e))
    return ws, list(iter_groups_with_attrs(win))


def fit_skip_times(win: Path, root: Path) -> dict[str, float]:
    """Seconds of the ``fit`` stage (kelm) on the all-skip window file ``win``, without and
    with the file attribute ``n_windows = 0``; both must end in a skip record."""
    from stages import fit  # the stage, as DVC runs it

    marked = root / "win_marked.h5"
    marked.write_bytes(win.read_bytes())
    with h5py.File(marked, "a") as f:
        f.attrs["n_windows"] = 0
    out = {}
    for name, path in (("fit_without_attribute_s", win), ("fit_with_attribute_s", marked)):
        dst = root / f"fit_{name}"
        start = time.perf_counter()
        fit.main(["--model", "kelm", "--feature", "logmel", "--windows", str(path)]
                 + ["--dst", str(dst)])  # fmt: skip
        out[name] = round(time.perf_counter() - start, 3)
        if (dst / "scores.h5").exists() or "skipped" not in json.loads(
            (dst / "report.json").read_text()
        ):
            raise SystemExit(f"fit on {path} wrote no skip record")
    return out


def same(a, b) -> bool:
    """Deep equality of the nested tuples / dicts / arrays the two readers return."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=10_000, help="items (groups per file)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/h5_reads.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_corpus(Path(tmp), args.n)
        times: dict[str, list[float]] = {"per_call": [], "one_reader": []}
        results = {}
        for _ in range(args.repeats):  # alternate, so a busy machine slows both alike
            for name, read in (("per_call", per_call), ("one_reader", one_reader)):
                start = time.perf_counter()
                results[name] = read(*paths)
                times[name].append(time.perf_counter() - start)
        fit_times = fit_skip_times(paths[2], Path(tmp))
    if not same(results["per_call"], results["one_reader"]):
        raise SystemExit("the two ways read different values")
    best = {k: min(v) for k, v in times.items()}
    res = {
        "n_items": args.n,
        "reads": "window_stats (labels + attrs, embedding + attrs) and fit (windows + attrs)",
        "repeats": args.repeats,
        "per_call_s": round(best["per_call"], 3),
        "one_reader_s": round(best["one_reader"], 3),
        "per_call_ms_per_item": round(1000 * best["per_call"] / args.n, 3),
        "one_reader_ms_per_item": round(1000 * best["one_reader"] / args.n, 3),
        "speedup": round(best["per_call"] / best["one_reader"], 2),
        **fit_times,
        "machine": platform.machine(),
    }
    print(json.dumps(res, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
