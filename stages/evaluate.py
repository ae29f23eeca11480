"""Stage `evaluate`: metrics of every model and fusion on dev and test, plots and a summary.

Reads  models/fit/*/scores.h5 (models with a skip record are left out, listed in the summary),
       models/fuse/*/scores.h5, data/interim/labels_5hz.h5,
       data/interim/manifest.csv and the label files it lists (the official per-frame units);
       params base.classes, base.label_rate_hz, base.task, fit.models, fit.features,
       fit_fusion_net.nets, fit_raw_audio.nets, evaluate
Writes reports/metrics.json (split -> model -> metrics, per frame or per clip, with the 5 Hz
       figures under grid_5hz; DVC metrics), reports/summary.md,
       reports/plots/confusion_<split>.json (DVC plots data, best model by dev CPM; expr),
       reports/figures/*.png (confusion matrices, per-class F1, score timelines)
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import report
from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.io.atomic import atomic_path, write_json, write_text
from pipeline.params import load_params
from pipeline.protocol import split_units
from pipeline.scores import (
    find_scores,
    pipeline_models,
    read_labels,
    read_scores,
    skipped_models,
    stack_split,
)

log = logging.getLogger("stages.evaluate")


@stage_cli
def main(
    scores: Path,
    fused: Path,
    labels: Path,
    manifest: Path,
    metrics: Path,
    summary: Path,
    plots: Path,
    figures: Path,
    params: Path = Path("params.yaml"),
) -> None:
    """Score every model and fusion on dev and test."""
    cfg = load_params("evaluate", params)
    names = pipeline_models(
        cfg.fit_models, cfg.fit_features, tuple(cfg.fit_nets), tuple(cfg.fit_raw_nets)
    )
    fitted = find_scores(scores, names)
    skipped = skipped_models(scores, names)
    for name, why in skipped.items():
        log.warning("evaluate: %s left out, it was not fitted (%s)", name, why)
    files = {
        **fitted,
        **{f"fusion_{k}": v for k, v in find_scores(fused, ["swf", "mcwf", "chosen"]).items()},
    }
    models = {name: read_scores(path, cfg.task) for name, path in files.items()}
    lab = read_labels(labels, cfg.task)
    stacked = {
        s: stack_split(models, lab, s, cfg.task)
        for s in ("dev", "test")
        if any(g["split"] == s for g in lab.values())
    }
    rows = {r.video_id: r for r in read_manifest(manifest)}
    units = {
        s: split_units(
            rows, P, index, task=cfg.task, classes=cfg.classes, rate_hz=cfg.label_rate_hz
        )
        for s, (P, _, index) in stacked.items()
    }
    ev = report.evaluate_all(stacked, units, list(models), cfg.task, list(cfg.classes))
    write_json(
        metrics,
        {
            s: {n: {k: v for k, v in m.items() if k != "confusion"} for n, m in per.items()}
            for s, per in ev.metrics.items()
        },
    )
    write_text(summary, report.summary_markdown(ev, skipped))
    with atomic_path(plots) as tmp:
        tmp.mkdir()
        report.write_plot_data(tmp, ev, list(cfg.classes))
    with atomic_path(figures) as tmp:
        tmp.mkdir()
        report.write_figures(tmp, ev, list(cfg.classes), cfg.label_rate_hz, cfg.timeline_videos)
    log.info(
        "evaluate: %d models and fusions; best on dev %s (%s %.3f)\n%s",
        len(models),
        ev.best,
        ev.key,
        ev.metrics["dev"][ev.best][ev.key],
        ev.table,
    )


if __name__ == "__main__":
    main()
