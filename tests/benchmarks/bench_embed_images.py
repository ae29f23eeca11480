"""Benchmark: embed_faces on an image corpus, one forward pass per image vs shared passes.

FER-2013 is 32,298 items of one aligned face each (the shared copy). ``embed_faces`` used to
embed each item with its own forward pass; now image rows go ``batch_size`` at a time
(:func:`pipeline.embed.face_backbones.embed_image_files`). This writes the first ``--n``
faces of ``../shared/data/fer2013`` as ``detect_faces`` does for image rows (one file per
image, the 48 px face resized to ``detect_faces.size_px`` with a cubic filter) and builds
the embedding file both ways with the stage's own ``build_grouped_file``, in one run:
images per second, the speed-up, and the largest difference between the two files'
embeddings.

    python -m tests.benchmarks.bench_embed_images --out reports/benchmarks/embed_images.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    from pipeline.embed.face_backbones import load_face_backbone
    from pipeline.io.h5 import write_h5
    from pipeline.io.per_video import build_grouped_file
    from pipeline.models.pretrain import fer2013_table, read_fer2013_table
    from stages.embed_faces import _embed, _embed_run

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/embed_images.json"))
    p.add_argument("--n", type=int, default=1000, help="FER-2013 training faces to embed")
    p.add_argument("--pretrained", type=Path, default=ROOT / "models/pretrained")
    args = p.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    size, batch = params["detect_faces"]["size_px"], params["embed_faces"]["batch_size"]
    faces = read_fer2013_table(fer2013_table(SHARED / "fer2013"))["Training"][0][: args.n]
    torch.set_num_threads(os.cpu_count() or 1)
    bb = load_face_backbone(
        "fer_xception",
        pretrained_dir=args.pretrained,
        weights=None,
        device="cpu",
        batch_size=batch,
    )
    res = {"images": len(faces), "size_px": size, "batch_size": batch, "threads": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        items = []
        for k, face in enumerate(faces):
            vid, path = f"fer2013_{k + 1:05d}", tmp / f"fer2013_{k + 1:05d}.h5"
            crop = cv2.resize(np.repeat(face[:, :, None], 3, 2), (size, size), cv2.INTER_CUBIC)
            write_h5(
                path, {vid: {"t": np.zeros(1), "valid": np.ones(1, bool), "faces": crop[None]}}
            )
            items.append((vid, path))
        kw = dict(backbone=bb, batch_size=batch, workers=0, skip={})
        ways = {
            "one_per_image": {},
            "shared_passes": {
                "compute_batch": partial(_embed_run, images={v for v, _ in items}, **kw),
                "batch_items": batch,
            },
        }
        for name, extra in ways.items():
            t = time.perf_counter()
            build_grouped_file(
                tmp / f"{name}.h5", items, partial(_embed, **kw), params={}, code="", desc=name,
                **extra,
            )  # fmt: skip
            seconds = time.perf_counter() - t
            res[name] = {"seconds": round(seconds, 1), "images_per_s": round(len(items) / seconds)}
            print(name, res[name], flush=True)
        with h5py.File(tmp / "one_per_image.h5") as a, h5py.File(tmp / "shared_passes.h5") as b:
            res["max_abs_diff_x"] = float(
                max(np.abs(a[v]["x"][()] - b[v]["x"][()]).max() for v in a)
            )
    res["speedup"] = round(res["one_per_image"]["seconds"] / res["shared_passes"]["seconds"], 1)
    print("speed-up", res["speedup"], "max |dx|", res["max_abs_diff_x"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
