"""Stage `fuse`: simple (SWF) and model-and-class (MCWF) weighted score fusion, judged out
of sample: uniform weights, the best single model, SWF and MCWF are cross-validated over dev
groups, and the pooled held-out score picks shrinkage and the rule used (pipeline.fusion).
When every fused model also scored the train videos out of fold (fit.oof_folds >= 2), the train
groups join the dev groups in that cross-validation and in the final weights.

Reads  models/fit/<model>/scores.h5 (the fit matrix, the raw-audio networks, the fusion nets;
       models with a skip record, report.json "skipped", are left out with a warning),
       data/interim/labels_5hz.h5; params base.seed, base.classes, base.label_rate_hz,
       base.task, fit.models, fit.features, fit_fusion_net.nets, fit_raw_audio.nets, fuse
Writes models/fuse/<swf|mcwf|chosen>/scores.h5 (the fit format; dev rows hold held-out
       cross-validated scores), models/fuse/<swf|mcwf>/weights.json, models/fuse/choice.json
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline import scores as sc
from pipeline.cli import stage_cli
from pipeline.fusion import frame_groups, fuse_splits, fusion_records
from pipeline.io.atomic import atomic_path, write_json
from pipeline.io.h5 import params_digest
from pipeline.params import load_params

log = logging.getLogger("stages.fuse")


@stage_cli
def main(scores: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Judge fusion rules by cross-validation on dev; write fused dev/test scores."""
    cfg = load_params("fuse", params)
    produced = sc.pipeline_models(
        cfg.fit_models, cfg.fit_features, tuple(cfg.fit_nets), tuple(cfg.fit_raw_nets)
    )
    names = produced if cfg.models == ("all",) else list(cfg.models)
    per_model = {m: sc.read_scores(p, cfg.task) for m, p in sc.find_scores(scores, names).items()}
    for name, why in sc.skipped_models(scores, names).items():
        log.warning("fuse: %s left out, it was not fitted (%s)", name, why)
    names = list(per_model)
    lab = sc.read_labels(labels, cfg.task)
    stacked = {
        s: sc.stack_split(per_model, lab, s, cfg.task)
        for s in ("dev", "test")
        if any(g["split"] == s for g in lab.values())
    }
    train = None  # out-of-fold train scores (fit.oof_folds) join dev when every model has them
    has_train = [m for m in names if any(g["split"] == "train" for g in per_model[m].values())]
    if has_train and len(has_train) < len(names):
        log.warning(
            "fuse: judged on dev alone: %s have no out-of-fold train scores (fit.oof_folds "
            "covers the fit matrix and the raw-audio networks; leave the others out with "
            "fuse.models to use the out-of-fold scores)",
            ", ".join(m for m in names if m not in has_train),
        )
    elif has_train:
        stacked["train"] = sc.stack_split(per_model, lab, "train", cfg.task)
        train = (stacked["train"][1], frame_groups(stacked["train"][2], lab, cfg.cv_group))
    groups = frame_groups(stacked["dev"][2], lab, cfg.cv_group)
    dev, fused = fuse_splits(
        {s: (P, index) for s, (P, _, index) in stacked.items()},
        stacked["dev"][1],
        groups,
        names,
        cfg.fusion_config(),
        train,
    )
    records = fusion_records(dev, cfg.fusion_config(), list(cfg.classes))
    key = sc.payload(cfg.task)[0]
    with atomic_path(dst) as tmp:
        for name, per_video in fused.items():  # swf, mcwf, chosen
            (tmp / name).mkdir(parents=True)
            if name in records:
                write_json(tmp / name / "weights.json", records[name])
            arrays = {
                v: {key: p, "covered": np.ones(len(p), bool)} for v, (_, p) in per_video.items()
            }
            sc.write_scores(
                tmp / name / "scores.h5",
                arrays,
                {v: split for v, (split, _) in per_video.items()},
                cfg.label_rate_hz,
                stage="fuse",
                model=name,
                classes=list(cfg.classes),
                task=cfg.task,
                params_digest=params_digest(vars(cfg)),
            )
        write_json(tmp / "choice.json", records["choice"])
    log.info(
        "fuse: wrote %s (%s chosen, dev %s %s cross-validated)",
        dst,
        dev.chosen,
        records["choice"]["dev_score_name"],
        records["choice"]["dev_score_cv"],
    )


if __name__ == "__main__":
    main()
