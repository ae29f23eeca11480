"""Stage `window_stats` (foreach feature): mean/std over sliding windows of an embedding.

Reads  features/<modality>/<backbone>.h5, data/interim/labels_5hz.h5;
       params base.label_rate_hz, base.classes, window_stats
Writes features/windows/<feature>.h5: per video t [W] (window centres, s), x [W, 2D],
       y [W] (or va [W, 2]), start/end [W] (5 Hz bins), n_valid, valid; attrs split, n_grid;
       file attribute n_windows (all videos' windows).
       A video that lacks the feature's modality (its embedding group has attribute
       `skipped`, e.g. an audio-only clip for a face feature) gets W = 0 windows and keeps
       the `skipped` attribute; a video with no embedding group at all stops the stage.
       When no video has the modality, the file holds only such groups (and a warning says
       so): the feature's models then write skip records.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.errors import PipelineError
from pipeline.features.summarise import no_windows, summarise_video
from pipeline.io.h5 import (
    SKIPPED,
    iter_groups_with_attrs,
    open_reader,
    open_writer,
    params_digest,
)
from pipeline.params import load_params

log = logging.getLogger("stages.window_stats")


@stage_cli
def main(embeddings: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Summarise one embedding file into window features with window labels."""
    cfg = load_params("window_stats", params)
    skipped = total = 0
    no_modality = []  # (video id, why its embedding group was skipped)
    with (
        open_reader(embeddings) as emb_file,
        open_writer(
            dst,
            stage="window_stats",
            params_digest=params_digest(vars(cfg)),
            source=str(embeddings),
            model=emb_file.attrs.get("model", ""),
            dim=2 * int(emb_file.attrs["dim"]),
            rate_hz=cfg.label_rate_hz,
            window_s=cfg.window_s,
            overlap=cfg.overlap,
        ) as w,
    ):
        src_dim = int(emb_file.attrs["dim"])
        for vid, lab, lab_attrs in iter_groups_with_attrs(labels):
            try:
                reason = emb_file.group_attrs(vid).get(SKIPPED, "")
                # a skip record's arrays are empty: not read (30,000 of them in an image corpus)
                emb = {} if reason else emb_file.group(vid, ["t", "x", "valid"])
            except PipelineError:
                raise PipelineError(
                    f"{embeddings}: no embeddings for video {vid!r}; re-run its embedding stage"
                )
            attrs = {**lab_attrs, "n_grid": len(lab["t"])}
            if reason:  # no such modality in this video: no windows, no error
                no_modality.append((vid, reason))
                w.add(vid, attrs={**attrs, SKIPPED: reason}, **no_windows(src_dim, lab))
                continue
            out = summarise_video(
                emb,
                lab,
                cfg.label_rate_hz,
                window_s=cfg.window_s,
                overlap=cfg.overlap,
                min_valid_frac=cfg.min_valid_frac,
                n_classes=len(cfg.classes),
            )
            skipped += int((~out["valid"]).sum())
            total += len(out["valid"])
            w.add(vid, attrs=attrs, **out)
        w.set_attrs(n_windows=total)  # 0: no video has the modality; `fit` reads no group
    if total == 0 and no_modality:  # e.g. a face feature of an audio-only corpus
        log.warning(
            "window_stats: no video has this feature's modality (%d skipped, e.g. %s: %s); "
            "wrote %s without windows, and its models write skip records",
            len(no_modality),
            *no_modality[0],
            dst,
        )
        return
    if total == 0:
        raise PipelineError(f"{embeddings}: no windows at all (no labelled video?)")
    if no_modality:
        log.info(
            "window_stats: %d videos without this feature's modality get no windows, e.g. %s",
            len(no_modality),
            no_modality[0][0],
        )
    log.info(
        "window_stats: %d windows, %d (%.1f %%) with too few valid frames flagged invalid -> %s",
        total,
        skipped,
        100 * skipped / total,
        dst,
    )


if __name__ == "__main__":
    main()
