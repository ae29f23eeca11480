"""Stage `fit` (matrix: model x feature): fit a classifier on window features, score dev/test.

Reads  features/windows/<feature>.h5; params base.seed, base.classes, base.label_rate_hz,
       base.task, fit.<model>, fit.oof_folds, fuse.cv_group
Writes models/fit/<model>_<feature>/model.joblib (the fitted estimator),
       scores.h5 (per dev/test video on the 5 Hz grid: t [n] s, p [n, K] class probabilities,
       or va [n, 2] for base.task va, and covered [n]; with fit.oof_folds >= 2 also every
       train video, scored out of fold by models that never saw its group),
       report.json (training windows, class counts, classes missing from training);
       when the train split has no window of this feature (the data lacks its modality):
       report.json only, the skip record {"model", "skipped": why}; when no video has
       a window (file attribute n_windows = 0) it writes that record without reading a group
"""

from __future__ import annotations

from pathlib import Path

import joblib

from pipeline.cli import stage_cli
from pipeline.errors import NothingToFit
from pipeline.io.atomic import atomic_path, write_json
from pipeline.io.h5 import iter_groups_with_attrs, params_digest, read_attrs
from pipeline.models.fitting import fit_and_score, fit_and_score_va
from pipeline.params import load_params
from pipeline.scores import write_scores, write_skipped


@stage_cli
def main(
    model: str, feature: str, windows: Path, dst: Path, params: Path = Path("params.yaml")
) -> None:
    """Fit one classifier on one feature's windows and write its 5 Hz scores."""
    cfg = load_params(f"fit.{model}", params)
    if read_attrs(windows).get("n_windows") == 0:  # e.g. audio windows of an image corpus:
        # a skip record without reading the (empty) group of every item
        why = f"no video has this feature's modality ({windows} holds no windows)"
        write_skipped(dst, f"{model}_{feature}", why)
        return
    videos = {vid: {**g, "attrs": a} for vid, g, a in iter_groups_with_attrs(windows)}
    try:
        if cfg.task == "va":
            est, scores, report = fit_and_score_va(model, cfg, videos)
        else:
            est, scores, report = fit_and_score(model, cfg, videos, len(cfg.classes), cfg.seed)
    except NothingToFit as why:  # e.g. face windows of an audio-only corpus
        write_skipped(dst, f"{model}_{feature}", str(why))
        return
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        joblib.dump(est, tmp / "model.joblib")
        write_json(tmp / "report.json", {**report, "feature": feature})
        write_scores(
            tmp / "scores.h5",
            scores,
            {v: g["attrs"]["split"] for v, g in videos.items()},
            cfg.label_rate_hz,
            stage="fit",
            model=f"{model}_{feature}",
            feature=feature,
            classes=list(cfg.classes),
            task=cfg.task,
            params_digest=params_digest(vars(cfg)),
        )


if __name__ == "__main__":
    main()
