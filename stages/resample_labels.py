"""Stage `resample_labels`: every video's labels on the common 5 Hz grid.

Reads  data/interim/manifest.csv and the label files it lists;
       params base.task, base.classes, base.label_rate_hz, resample_labels
Writes data/interim/labels_5hz.h5 (per video: t, y [n] int8 or va [n, 2], valid;
       attrs split, speaker)
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.io.h5 import open_writer, params_digest
from pipeline.labels.resample import video_labels_5hz
from pipeline.params import load_params


@stage_cli
def main(manifest: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Resample per-frame or clip labels of every video to base.label_rate_hz."""
    cfg = load_params("resample_labels", params)
    rows = read_manifest(manifest)
    with open_writer(
        dst,
        stage="resample_labels",
        params_digest=params_digest(vars(cfg)),
        rate_hz=cfg.label_rate_hz,
        task=cfg.task,
        classes=list(cfg.classes),
    ) as w:
        for r in rows:
            arrays = video_labels_5hz(
                r,
                task=cfg.task,
                classes=cfg.classes,
                rate_hz=cfg.label_rate_hz,
                min_frames=cfg.min_frames_per_bin,
            )
            w.add(r.video_id, attrs={"split": r.split, "speaker": r.speaker}, **arrays)


if __name__ == "__main__":
    main()
