"""Stage `evaluate`: metrics of every model and fusion on dev and test, plots and a summary.

Reads  models/fit/*/scores.h5, models/fuse/*/scores.h5, data/interim/labels_5hz.h5;
       params base.classes, base.label_rate_hz, base.task, evaluate
Writes reports/metrics.json (split -> model -> metrics; DVC metrics), reports/summary.md,
       reports/plots/confusion_<split>.json (DVC plots data, best model by dev CPM; expr),
       reports/figures/*.png (confusion matrices, per-class F1, score timelines)
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline import report
from pipeline.cli import stage_cli
from pipeline.io.atomic import atomic_path, write_json, write_text
from pipeline.labels.resample import grid_times
from pipeline.params import load_params
from pipeline.scores import find_scores, read_labels, read_scores, stack_split

log = logging.getLogger("stages.evaluate")


@stage_cli
def main(scores: Path, fused: Path, labels: Path, metrics: Path, summary: Path, plots: Path,
         figures: Path, params: Path = Path("params.yaml")) -> None:
    """Score every model and fusion on dev and test."""
    cfg = load_params("evaluate", params)
    classes, va = list(cfg.classes), cfg.task == "va"
    files = {**find_scores(scores), **{f"fusion_{k}": v for k, v in find_scores(fused).items()}}
    models = {name: read_scores(path, cfg.task) for name, path in files.items()}
    lab = read_labels(labels, cfg.task)
    names = list(models)
    splits = [s for s in ("dev", "test") if any(g["split"] == s for g in lab.values())]
    stacked = {s: stack_split(models, lab, s, cfg.task) for s in splits}
    if va:
        out = {s: report.evaluate_split_va(stacked[s][0], stacked[s][1], names) for s in splits}
        key, table = "ccc_mean", report.markdown_table_va(out)
        measure = "CCC (concordance correlation) of valence and arousal"
    else:
        out = {s: report.evaluate_split(stacked[s][0], stacked[s][1], names, classes) for s in splits}
        key, table = "cpm", report.markdown_table(out)
        measure = "CPM = 0.67 macro F1 + 0.33 accuracy"
    best = max(names, key=lambda n: out["dev"][n][key])
    write_json(metrics, {s: {n: {k: v for k, v in m.items() if k != "confusion"} for n, m in out[s].items()}
                         for s in splits})
    write_text(summary, f"# Results ({', '.join(splits)})\n\n{measure} on the 5 Hz grid, unannotated frames "
               f"masked. Best on dev: **{best}**.\n\n" + table)
    with atomic_path(plots) as tmp:
        tmp.mkdir()
        for split in splits if not va else []:
            P, y, _ = stacked[split]
            rows = report.confusion_records(y, P[names.index(best)].argmax(axis=1), classes)
            (tmp / f"confusion_{split}.json").write_text(json.dumps(rows))
    with atomic_path(figures) as tmp:
        tmp.mkdir()
        for split in splits if not va else []:
            report.plot_confusion(tmp / f"confusion_{split}_{best}.png", out[split][best]["confusion"], classes,
                                  f"{best} ({split})")
            report.plot_per_class_f1(tmp / f"per_class_f1_{split}.png", out[split], classes,
                                     f"per-class F1 ({split})")
        P, y, index = stacked[splits[-1]]
        top = sorted(names, key=lambda n: -out["dev"][n][key])[:3]
        start = 0
        for vid, n in index[: cfg.timeline_videos]:
            t, sl = grid_times(n, cfg.label_rate_hz), slice(start, start + n)
            preds = {m: P[names.index(m)][sl] for m in top}
            title = f"{vid} ({splits[-1]})"
            if va:
                report.plot_timeline_va(tmp / f"timeline_{vid}.png", t, y[sl], preds, title)
            else:
                report.plot_timeline(tmp / f"timeline_{vid}.png", t, y[sl], preds, classes, title)
            start += n
    log.info("evaluate: %d models and fusions; best on dev %s (%s %.3f)\n%s", len(names), best, key,
             out["dev"][best][key], table)


if __name__ == "__main__":
    main()
