"""Stage `embed_faces` (foreach backbone): embeddings of every aligned face crop.

Reads  data/interim/manifest.csv, data/interim/faces/<video_id>.h5, models/pretrained,
       models/pretrain_faces/model.pt (the vgg_fer backbone), models/distil_faces/model.pt
       (distilled_fer);
       params base.device, base.n_jobs, base.executor, base.dask_scheduler, embed_faces
Writes features/faces/<backbone>.h5: per video t [T] s, x [T, D] float32, valid [T]
       (+ p [T, K] class scores for backbones that have them); attrs model, weights_sha256,
       dim (2 x the backbone's for enhance meanstd) and, unless none, enhance.
       Videos without a video stream: an empty group with attribute `skipped`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from pipeline.cli import stage_cli
from pipeline.data.manifest import no_stream, read_manifest
from pipeline.embed import enhance, face_backbones, fer_xception, resnet50_vggface2
from pipeline.embed.device import resolve_device
from pipeline.errors import PipelineError
from pipeline.io.h5 import read_attrs, skipped_group
from pipeline.io.per_video import build_grouped_file, code_digest, runtime
from pipeline.models import vgg_faces
from pipeline.params import load_params


def _embed(vid: str, src: Path, backbone, batch_size: int, workers: int, skip: dict[str, str]):
    if skip.get(vid):
        return skipped_group(backbone.dim, skip[vid])
    return face_backbones.embed_faces_file(backbone, src, vid, batch_size, workers), {}


def _embed_run(
    items: list[tuple[str, Path]],
    images: set[str],
    backbone,
    batch_size: int,
    workers: int,
    skip: dict[str, str],
) -> list[tuple[dict, dict]]:
    """Results of consecutive items: image rows (one face each) in shared forward passes,
    the others one by one."""
    faces = [(v, src) for v, src in items if v in images and not skip.get(v)]
    groups = face_backbones.embed_image_files(backbone, faces, batch_size)
    shared = {v: (g, {}) for (v, _), g in zip(faces, groups)}
    return [
        shared[v] if v in shared else _embed(v, src, backbone, batch_size, workers, skip)
        for v, src in items
    ]


@stage_cli
def main(
    backbone: str,
    manifest: Path,
    faces: Path,
    pretrained: Path,
    dst: Path,
    vgg_fer: Path = Path("models/pretrain_faces/model.pt"),
    distilled: Path = Path("models/distil_faces/model.pt"),
    params: Path = Path("params.yaml"),
) -> None:
    """Embed the faces of every video with one backbone."""
    cfg = load_params("embed_faces", params)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.n_jobs if cfg.n_jobs > 0 else torch.get_num_threads())
    entry = cfg.backbones.get(backbone)
    weights = entry.weights if entry else None
    if weights is None:  # the checkpoints trained by pretrain_faces / distil_faces
        weights = {"vgg_fer": str(vgg_fer), "distilled_fer": str(distilled)}.get(backbone)
    kind = entry.enhance if entry else "none"
    model = face_backbones.load_face_backbone(
        backbone,
        pretrained_dir=pretrained,
        weights=weights,
        device=device,
        batch_size=cfg.batch_size,
    )
    model = enhance.enhance_backbone(model, kind)
    # enhance none keeps the params, code digest and attributes (so the bytes) of before
    extra = {} if kind == "none" else {"enhance": kind}
    modules = [face_backbones, fer_xception, resnet50_vggface2] + ([enhance] if extra else [])
    modules += [vgg_faces] if backbone in ("vgg_fer", "distilled_fer") else []
    rows = read_manifest(manifest)
    skip = {r.video_id: no_stream(r, "video") for r in rows}
    # rows without video have no faces file; their (empty) group is keyed on the manifest
    items = [(v, manifest if skip[v] else faces / f"{v}.h5") for v in sorted(skip)]
    missing = [vid for vid, src in items if not src.is_file()]
    if missing:
        raise PipelineError(
            f"{faces}: no faces file for {len(missing)} videos with a video "
            f"stream, e.g. {missing[0]!r}; re-run detect_faces"
        )
    fps = next((read_attrs(src)["fps"] for vid, src in items if not skip[vid]), 0.0)
    workers = 2 if device == "cuda" else 0
    kw = dict(backbone=model, batch_size=cfg.batch_size, workers=workers, skip=skip)
    images = {r.video_id for r in rows if r.modality == "image"}
    rt = runtime(["dlib-bin", "numpy", "opencv-python-headless", "torch"], device)
    build_grouped_file(
        dst,
        items,
        partial(_embed, **kw),
        params={"backbone": backbone, "weights_sha256": model.weights_sha256, "runtime": rt}
        | extra,
        code=code_digest(modules),
        desc=f"embed_faces[{backbone}]",
        executor=cfg.executor,
        scheduler=cfg.dask_scheduler,
        # image corpora: batch_size images per forward pass instead of one
        compute_batch=partial(_embed_run, images=images, **kw) if images else None,
        batch_items=cfg.batch_size,
        stage="embed_faces",
        model=backbone,
        weights=model.weights,
        weights_sha256=model.weights_sha256,
        dim=model.dim,
        fps=fps,
        runtime=rt,
        **extra,
    )


if __name__ == "__main__":
    main()
