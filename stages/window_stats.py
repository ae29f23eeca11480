"""Stage `window_stats` (foreach feature): mean/std over sliding windows of an embedding.

Reads  features/<modality>/<backbone>.h5, data/interim/labels_5hz.h5;
       params base.label_rate_hz, base.classes, window_stats
Writes features/windows/<feature>.h5: per video t [W] (window centres, s), x [W, 2D],
       y [W] (or va [W, 2]), start/end [W] (5 Hz bins), n_valid, valid; attrs split, n_grid
"""
from __future__ import annotations

import logging
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.errors import PipelineError
from pipeline.features.summarise import summarise_video
from pipeline.io.h5 import iter_groups, open_writer, params_digest, read_attrs, read_group, read_group_attrs
from pipeline.params import load_params

log = logging.getLogger("stages.window_stats")


@stage_cli
def main(embeddings: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Summarise one embedding file into window features with window labels."""
    cfg = load_params("window_stats", params)
    src_attrs = read_attrs(embeddings)
    skipped = total = 0
    with open_writer(dst, stage="window_stats", params_digest=params_digest(vars(cfg)),
                     source=str(embeddings), model=src_attrs.get("model", ""),
                     dim=2 * int(src_attrs["dim"]), rate_hz=cfg.label_rate_hz, window_s=cfg.window_s,
                     overlap=cfg.overlap) as w:
        for vid, lab in iter_groups(labels):
            lab_attrs = read_group_attrs(labels, vid)
            try:
                emb = read_group(embeddings, vid, ["t", "x", "valid"])
            except PipelineError:
                raise PipelineError(f"{embeddings}: no embeddings for video {vid!r}; re-run its embedding stage")
            out = summarise_video(emb, lab, cfg.label_rate_hz, window_s=cfg.window_s, overlap=cfg.overlap,
                                  min_valid_frac=cfg.min_valid_frac, n_classes=len(cfg.classes))
            skipped += int((~out["valid"]).sum())
            total += len(out["valid"])
            w.add(vid, attrs={**lab_attrs, "n_grid": len(lab["t"])}, **out)
    if total == 0:
        raise PipelineError(f"{embeddings}: no windows at all")
    log.info("window_stats: %d windows, %d (%.1f %%) with too few valid frames flagged invalid -> %s",
             total, skipped, 100 * skipped / total, dst)


if __name__ == "__main__":
    main()
