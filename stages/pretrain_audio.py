"""Stage `pretrain_audio`: seed 003's raw-audio model (conv blocks + LSTM) trained on EmoDB.

Reads  <pretrain_audio.root>/wav/*.wav (EmoDB naming); params base.seed, base.device,
       extract_audio.rate_hz, pretrain_audio
Writes models/pretrain_audio/model.pt (pipeline.models.pretrain checkpoint: fit_raw_audio's
       network with fit_raw_audio.pretrained, fit_feature_fusion's audio branch),
       reports/pretrain_audio.json (utterance-level accuracy, UAR and macro F1 per split,
       epochs, history). Without wav files: the checkpoint of the untrained, seeded network
       marked `skipped`, and the report {"skipped": why}.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.models.checkpoint import save_pretraining
from pipeline.models.pretrain_audio import pretrain_audio
from pipeline.params import load_params

log = logging.getLogger("stages.pretrain_audio")


@stage_cli
def main(root: Path, model: Path, report: Path, params: Path = Path("params.yaml")) -> None:
    """Pre-train on EmoDB's train speakers (best epoch by dev-speaker loss)."""
    cfg = load_params("pretrain_audio", params)
    start = time.perf_counter()
    net, classes, result = pretrain_audio(cfg, root, resolve_device(cfg.device))
    log.info("pretrain_audio: %.0f s (logged only)", time.perf_counter() - start)
    save_pretraining(model, report, net, classes, "EmoDB", result)


if __name__ == "__main__":
    main()
