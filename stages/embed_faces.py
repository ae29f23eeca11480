"""Stage `embed_faces` (foreach backbone): embeddings of every aligned face crop.

Reads  data/interim/manifest.csv, data/interim/faces/<video_id>.h5, models/pretrained;
       params base.device, base.n_jobs, embed_faces
Writes features/faces/<backbone>.h5: per video t [T] s, x [T, D] float32, valid [T]
       (+ p [T, K] class scores for backbones that have them); attrs model, weights_sha256
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.embed import face_backbones, fer_xception, resnet50_vggface2
from pipeline.embed.device import resolve_device
from pipeline.io.h5 import read_attrs, read_group
from pipeline.io.per_video import build_grouped_file, code_digest
from pipeline.params import load_params


def _embed(vid: str, src: Path, backbone, batch_size: int, workers: int):
    g = read_group(src, vid, ["t", "valid"])
    x, p = face_backbones.embed_video_faces(backbone, src, vid, g["valid"], batch_size, workers)
    arrays = {"t": g["t"], "x": x, "valid": g["valid"]} | ({"p": p} if p is not None else {})
    return arrays, {}


@stage_cli
def main(backbone: str, manifest: Path, faces: Path, pretrained: Path, dst: Path,
         params: Path = Path("params.yaml")) -> None:
    """Embed the faces of every video with one backbone."""
    cfg = load_params("embed_faces", params)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.n_jobs if cfg.n_jobs > 0 else torch.get_num_threads())
    entry = cfg.backbones.get(backbone)
    weights = entry.weights if entry else None
    model = face_backbones.load_face_backbone(backbone, pretrained_dir=pretrained, weights=weights,
                                              device=device, batch_size=cfg.batch_size)
    items = [(r.video_id, faces / f"{r.video_id}.h5") for r in read_manifest(manifest) if r.has_video]
    fps = read_attrs(items[0][1])["fps"] if items else 0.0
    workers = 2 if device == "cuda" else 0
    build_grouped_file(dst, items, partial(_embed, backbone=model, batch_size=cfg.batch_size, workers=workers),
                       params={"backbone": backbone, "weights_sha256": model.weights_sha256},
                       code=code_digest([face_backbones, fer_xception, resnet50_vggface2]), desc=f"embed_faces[{backbone}]",
                       stage="embed_faces", model=backbone, weights=model.weights,
                       weights_sha256=model.weights_sha256, dim=model.dim, fps=fps)


if __name__ == "__main__":
    main()
