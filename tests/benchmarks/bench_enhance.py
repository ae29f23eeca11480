"""Benchmark: cost of feature enhancement (``embed_faces`` option ``enhance``) per face.

Aligned 224 px crops of one real CREMA-D clip (dlib detector, 10 fps), embedded by the
FER-2013 mini-Xception port with ``enhance`` none / mean / meanstd / normfft, on 1 and 2
torch (and OpenCV) threads. Reports seconds per face for each, and for the 18 views alone
(``cv2.warpAffine`` + flip, no network).

    python -m tests.benchmarks.bench_enhance --out reports/benchmarks/enhance.json
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import torch

from tests.benchmarks.bench_embed import _best  # min wall time of repeated calls

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/enhance.json"))
    p.add_argument("--pretrained", type=Path, default=ROOT / "models/pretrained")
    p.add_argument("--faces", type=int, default=32)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from pipeline.data.media import probe
    from pipeline.embed.enhance import ENHANCE_KINDS, augment_faces, enhance_backbone
    from pipeline.embed.face_backbones import load_face_backbone
    from pipeline.params import load_params
    from pipeline.video.faces import face_track

    clip = sorted((SHARED / "crema-d-sample" / "VideoFlash").glob("*.flv"))[0]
    cfg = replace(
        load_params("detect_faces", ROOT / "params.yaml").face_config(), detector="dlib", fps=10
    )
    track = face_track(clip, probe(clip).fps, cfg)
    faces = track["faces"][track["valid"]][: args.faces]
    n = len(faces)
    base = load_face_backbone(
        "fer_xception", pretrained_dir=args.pretrained, weights=None, device="cpu", batch_size=64
    )
    res: dict = {
        "clip": clip.name,
        "faces": n,
        "face_px": int(faces.shape[1]),
        "backbone": "fer_xception",
        "batch_size": 64,
        "repeats": args.repeats,
        "load_average_before": list(os.getloadavg()),
        "s_per_face": {},
    }
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        row = {"views_only": _best(lambda: augment_faces(faces), args.repeats) / n}
        for kind in ENHANCE_KINDS:
            bb = enhance_backbone(base, kind)
            bb.embed(faces[:2])  # warm-up
            row[kind] = _best(lambda bb=bb: bb.embed(faces), args.repeats) / n
        res["s_per_face"][f"{threads}_threads"] = row
        print(
            f"{threads} thread(s): "
            + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in row.items())
            + f"; mean / none = {row['mean'] / row['none']:.1f}x"
        )
    res["load_average_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
