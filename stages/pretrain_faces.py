"""Stage `pretrain_faces`: seed 003's VGG face model trained on FER-2013.

Reads  <pretrain_faces.root>/fer2013.csv(.gz) (Kaggle's table); params base.seed, base.device,
       pretrain_faces
Writes models/pretrain_faces/model.pt (pipeline.models.pretrain checkpoint: the `vgg_fer` face
       backbone and fit_feature_fusion's visual branch), reports/pretrain_faces.json (accuracy,
       UAR and macro F1 per FER-2013 usage, epochs, history). Without a table: the checkpoint
       of the untrained, seeded network marked `skipped`, and the report {"skipped": why}.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.models.checkpoint import save_pretraining
from pipeline.models.pretrain import pretrain_faces
from pipeline.params import load_params

log = logging.getLogger("stages.pretrain_faces")


@stage_cli
def main(root: Path, model: Path, report: Path, params: Path = Path("params.yaml")) -> None:
    """Pre-train on FER-2013's Training rows (best epoch by PublicTest loss)."""
    cfg = load_params("pretrain_faces", params)
    start = time.perf_counter()
    net, classes, result = pretrain_faces(cfg, root, resolve_device(cfg.device))
    log.info("pretrain_faces: %.0f s (logged only)", time.perf_counter() - start)
    save_pretraining(model, report, net, classes, "FER-2013", result)


if __name__ == "__main__":
    main()
