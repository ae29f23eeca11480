"""Stage `pretrain_vggish`: seed 002's audio branch, VGGish (sequence geometry), on EmoDB.

Reads  <pretrain_vggish.root>/wav/*.wav (EmoDB naming); params base.seed, base.device,
       pretrain_vggish
Writes models/pretrain_vggish/model.pt (pipeline.models.checkpoint format: the `vggish_seq`
       audio backbone of embed_audio), reports/pretrain_vggish.json (utterance-level accuracy,
       UAR and macro F1 per split, epochs, history). Without wav files: the checkpoint of the
       untrained, seeded network marked `skipped`, and the report {"skipped": why}.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.models.checkpoint import save_pretraining
from pipeline.models.pretrain_vggish import pretrain_vggish
from pipeline.params import load_params

log = logging.getLogger("stages.pretrain_vggish")


@stage_cli
def main(root: Path, model: Path, report: Path, params: Path = Path("params.yaml")) -> None:
    """Pre-train on EmoDB's train speakers (best epoch by dev-speaker loss)."""
    cfg = load_params("pretrain_vggish", params)
    start = time.perf_counter()
    net, classes, result = pretrain_vggish(cfg, root, resolve_device(cfg.device))
    log.info("pretrain_vggish: %.0f s (logged only)", time.perf_counter() - start)
    save_pretraining(model, report, net, classes, "EmoDB", result)


if __name__ == "__main__":
    main()
