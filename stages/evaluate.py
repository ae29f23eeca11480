"""Stage `evaluate`: metrics of every model and fusion on dev and test, plots and a summary.

Reads  models/fit/*/scores.h5, models/fuse/*/scores.h5, data/interim/labels_5hz.h5;
       params base.classes, evaluate
Writes reports/metrics.json (split -> model -> metrics; DVC metrics), reports/summary.md,
       reports/plots/confusion_<split>.json (DVC plots data, best model by dev CPM),
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
    classes = list(cfg.classes)
    files = {**find_scores(scores), **{f"fusion_{k}": v for k, v in find_scores(fused).items()}}
    models = {name: read_scores(path) for name, path in files.items()}
    lab = read_labels(labels)
    names = list(models)
    out, best = {}, None
    splits = [s for s in ("dev", "test") if any(g["split"] == s for g in lab.values())]
    stacked = {s: stack_split(models, lab, s) for s in splits}
    for split in splits:
        P, y, _ = stacked[split]
        out[split] = report.evaluate_split(P, y, names, classes)
    best = max(names, key=lambda n: out["dev"][n]["cpm"])
    out_metrics = {s: {n: {k: v for k, v in m.items() if k != "confusion"} for n, m in out[s].items()}
                   for s in splits}
    write_json(metrics, out_metrics)
    write_text(summary, f"# Results ({', '.join(splits)})\n\nCPM = 0.67 macro F1 + 0.33 accuracy on the "
               f"5 Hz grid, unannotated frames masked. Best on dev: **{best}**.\n\n"
               + report.markdown_table(out))
    with atomic_path(plots) as tmp:
        tmp.mkdir()
        for split in splits:
            P, y, _ = stacked[split]
            rows = report.confusion_records(y, P[names.index(best)].argmax(axis=1), classes)
            (tmp / f"confusion_{split}.json").write_text(json.dumps(rows))
    with atomic_path(figures) as tmp:
        tmp.mkdir()
        for split in splits:
            report.plot_confusion(tmp / f"confusion_{split}_{best}.png", out[split][best]["confusion"], classes,
                                  f"{best} ({split})")
            report.plot_per_class_f1(tmp / f"per_class_f1_{split}.png", out[split], classes,
                                     f"per-class F1 ({split})")
        split = splits[-1]
        P, y, index = stacked[split]
        start = 0
        top = sorted(names, key=lambda n: -out["dev"][n]["cpm"])[:3]
        for vid, n in index[: cfg.timeline_videos]:
            probs = {m: P[names.index(m)][start:start + n] for m in top}
            report.plot_timeline(tmp / f"timeline_{vid}.png", grid_times(n, cfg.label_rate_hz),
                                 y[start:start + n], probs, classes, f"{vid} ({split})")
            start += n
    log.info("evaluate: %d models and fusions; best on dev %s (CPM %.3f)\n%s", len(names), best,
             out["dev"][best]["cpm"], report.markdown_table(out))


if __name__ == "__main__":
    main()
