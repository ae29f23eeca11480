"""Benchmark: Table 2 of seed 001 (Zhou, Meng et al., EmotiW 2019) as an ablation on our data.

The ``attention_fbp`` fusion network with every combination of intra-modal attention
({self, relation, transformer} for the faces x the same for the audio) and each cross-modal
fusion (factorized bilinear pooling ``fbp`` against plain concatenation ``concat``): 18
networks, each trained as ``fit_fusion_net@attention_fbp`` trains it (params.yaml's
``fit_fusion_net`` settings and embeddings, ``base.seed`` and the seeds after it; best epoch by
dev loss) on this checkout's features (``make demo`` first, or any dataset's
``dvc repro``), and scored with the official protocol (per frame at each video's own frame
rate, or per clip): dev and test CPM, accuracy and UAR, mean and spread over ``--seeds`` seeds.
The dev figures are out of sample (fitted on train); with the demo's two dev and two test
videos of one actor, differences of a few points are within the seed spread.

    python -m tests.benchmarks.bench_fusion_ablation --out reports/benchmarks/fusion_ablation.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
ATTENTION = ("self", "relation", "transformer")
FUSION = ("fbp", "concat")


def official_metrics(scores: dict, rows: dict, cfg, split: str) -> dict:
    """Official-protocol metrics of one network's 5 Hz scores on ``split``."""
    from pipeline.metrics import classification_metrics
    from pipeline.protocol import split_units

    vids = sorted(v for v in scores if rows[v].split == split)
    P = np.concatenate([scores[v]["p"] for v in vids])[None]
    index = [(v, len(scores[v]["p"])) for v in vids]
    u = split_units(
        rows, P, index, task="expr", classes=tuple(cfg.classes), rate_hz=cfg.label_rate_hz
    )
    m = classification_metrics(u.y, u.pred[0], len(cfg.classes))
    return {k: m[k] for k in ("cpm", "accuracy", "uar", "macro_f1")} | {"units": u.kind}


def _mean_cpm(results: list[dict], fusion: str, split: str) -> float:
    return round(float(np.mean([r[f"{split}_cpm"] for r in results if r["fusion"] == fusion])), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--features", type=Path, default=ROOT / "features")
    p.add_argument("--labels", type=Path, default=ROOT / "data/interim/labels_5hz.h5")
    p.add_argument("--manifest", type=Path, default=ROOT / "data/interim/manifest.csv")
    p.add_argument("--seeds", type=int, default=5, help="base.seed, base.seed + 1, ...")
    p.add_argument(
        "--out", type=Path, default=ROOT / "reports" / "benchmarks" / "fusion_ablation.json"
    )
    args = p.parse_args()

    from pipeline.data.manifest import read_manifest
    from pipeline.io.h5 import read_attrs
    from pipeline.models.fusion_net import fit_fusion_net, read_videos
    from pipeline.params import load_params

    cfg = load_params("fit_fusion_net", args.params)
    if cfg.task != "expr":
        raise SystemExit("the ablation scores expressions (base.task: expr)")
    faces, audio = (args.features / f"{name}.h5" for name in (cfg.faces, cfg.audio))
    for path in (faces, audio, args.labels, args.manifest):
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run `make demo` (or dvc repro) first")
    torch.set_num_threads(1)  # as the stage runs it
    videos = read_videos(faces, audio, args.labels, cfg.task)
    rows = {r.video_id: r for r in read_manifest(args.manifest)}
    dims = (int(read_attrs(faces)["dim"]), int(read_attrs(audio)["dim"]))
    base = cfg.nets["attention_fbp"].model_dump()
    results = []
    for fusion, v_att, a_att in itertools.product(FUSION, ATTENTION, ATTENTION):
        hyper = base | {"visual_attention": v_att, "audio_attention": a_att, "fusion": fusion}
        runs, t = [], time.perf_counter()
        for seed in range(cfg.seed, cfg.seed + args.seeds):
            _, scores, report = fit_fusion_net(
                "attention_fbp",
                hyper,
                videos,
                cfg,
                dims=dims,
                task="expr",
                n_classes=len(cfg.classes),
                seed=seed,
                rate_hz=cfg.label_rate_hz,
            )
            runs.append(
                {s: official_metrics(scores, rows, cfg, s) for s in ("dev", "test")}
                | {"best_epoch": report.get("best_epoch")}
            )
        row = {"fusion": fusion, "visual": v_att, "audio": a_att}
        for split, metric in itertools.product(("dev", "test"), ("cpm", "accuracy", "uar")):
            vals = [r[split][metric] for r in runs]
            row[f"{split}_{metric}"] = round(float(np.mean(vals)), 3)
            row[f"{split}_{metric}_sd"] = round(float(np.std(vals)), 3)
        row["seconds_per_net"] = round((time.perf_counter() - t) / args.seeds, 1)
        row["units"] = runs[0]["dev"]["units"]
        results.append(row)
        print(
            f"{fusion:6s} visual {v_att:11s} audio {a_att:11s} dev CPM {row['dev_cpm']:.3f} "
            f"(sd {row['dev_cpm_sd']:.3f}), test CPM {row['test_cpm']:.3f} "
            f"(sd {row['test_cpm_sd']:.3f}), {row['seconds_per_net']:.0f} s per net",
            flush=True,
        )
    by_fusion = {
        f: {split: _mean_cpm(results, f, split) for split in ("dev", "test")} for f in FUSION
    }
    print("mean CPM over the 9 attention pairs:", by_fusion)
    out = {
        "what": "attention_fbp: 3 visual x 3 audio attention kinds x fbp/concat, trained on "
        "train, best epoch by dev loss, official-protocol CPM (0.67 macro F1 + 0.33 acc)",
        "faces": cfg.faces,
        "audio": cfg.audio,
        "seeds": list(range(cfg.seed, cfg.seed + args.seeds)),
        "cpu_count": os.cpu_count(),
        "results": results,
        "mean_cpm_by_fusion": by_fusion,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
