"""Stage `fit_fusion_net` (foreach net): a model-level fusion network on face + audio embeddings.

Reads  features/<fit_fusion_net.faces>.h5, features/<fit_fusion_net.audio>.h5 (a video lacking
       a modality has the `skipped` group attribute), data/interim/labels_5hz.h5;
       params base.seed, base.classes, base.label_rate_hz, base.device, base.task, fit_fusion_net
Writes models/fit/<net>/model.pt (pipeline.models.fusion_net.TrainedFusionNet), scores.h5 (the
       scores format, dev/test videos on the 5 Hz grid), report.json (windows, class counts or
       training mean, per-epoch history; CPU seconds go to the log only), history.csv (the
       per-epoch losses, a `dvc plots` curve); data without
       faces or without audio in the train split: report.json only, the skip record
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.errors import NothingToFit
from pipeline.io.atomic import atomic_path, write_history, write_json
from pipeline.io.h5 import params_digest, read_attrs
from pipeline.models.fusion_net import fit_fusion_net, read_videos
from pipeline.params import load_params
from pipeline.scores import write_scores, write_skipped


@stage_cli
def main(
    net: str, faces: Path, audio: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")
) -> None:
    """Train fusion network ``net`` and write its dev/test scores on the 5 Hz grid."""
    cfg = load_params("fit_fusion_net", params)
    # One intra-op thread: this network is small, and on 2 busy CPU cores two threads made a
    # demo-sized epoch 6x slower (11 s against 1.8 s of CPU time per epoch).
    torch.set_num_threads(1)
    videos = read_videos(faces, audio, labels, cfg.task)
    try:
        model, scores, report = fit_fusion_net(
            net,
            cfg.nets[net].model_dump(),
            videos,
            cfg,
            dims=(int(read_attrs(faces)["dim"]), int(read_attrs(audio)["dim"])),
            task=cfg.task,
            n_classes=len(cfg.classes),
            seed=cfg.seed,
            rate_hz=cfg.label_rate_hz,
            device=resolve_device(cfg.device),
        )
    except NothingToFit as why:  # audio-only or image data: one modality to fuse
        write_skipped(dst, net, str(why))
        return
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        model.save(tmp / "model.pt")
        write_json(tmp / "report.json", {**report, "faces": cfg.faces, "audio": cfg.audio})
        write_history(tmp / "history.csv", report["history"])  # for `dvc plots`
        write_scores(
            tmp / "scores.h5",
            scores,
            {v: g["split"] for v, g in videos.items()},
            cfg.label_rate_hz,
            stage="fit_fusion_net",
            model=net,
            feature=f"{cfg.faces}+{cfg.audio}",
            classes=list(cfg.classes),
            task=cfg.task,
            params_digest=params_digest(vars(cfg)),
        )


if __name__ == "__main__":
    main()
