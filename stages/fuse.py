"""Stage `fuse`: simple (SWF) and model-and-class (MCWF) weighted score fusion.

Weights come from a random search over Dirichlet draws that maximises CPM on dev (mean CCC
of valence and arousal for ``base.task: va``, where "mcwf" has one weight column per
dimension); both fusions are then applied to dev and test.

Reads  models/fit/<model>/scores.h5 (the models of the fit matrix and the raw-audio model),
       data/interim/labels_5hz.h5; params base.seed, base.classes, base.label_rate_hz,
       base.task, fit.models, fit.features, fuse
Writes models/fuse/<swf|mcwf>/scores.h5 (same format as fit), models/fuse/<method>/weights.json
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.cli import stage_cli
from pipeline.fusion import fuse_splits
from pipeline.io.atomic import atomic_path, write_json
from pipeline.io.h5 import params_digest
from pipeline.params import load_params
from pipeline.scores import (find_scores, payload, pipeline_models, read_labels, read_scores, stack_split,
                             write_scores)

log = logging.getLogger("stages.fuse")


@stage_cli
def main(scores: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Search fusion weights on dev and write fused dev/test scores."""
    cfg = load_params("fuse", params)
    # params check that fuse.models is [all] or >= 2 of these
    produced = pipeline_models(cfg.fit_models, cfg.fit_features)
    names = produced if cfg.models == ("all",) else list(cfg.models)
    per_model = {m: read_scores(path, cfg.task) for m, path in find_scores(scores, names).items()}
    lab = read_labels(labels, cfg.task)
    stacked = {s: stack_split(per_model, lab, s, cfg.task) for s in ("dev", "test")
               if any(g["split"] == s for g in lab.values())}
    results = fuse_splits({s: (P, index) for s, (P, _, index) in stacked.items()}, stacked["dev"][1],
                          cfg.task, cfg.n_draws, cfg.concentration, cfg.seed)
    measure = "mean_ccc" if cfg.task == "va" else "cpm"
    with atomic_path(dst) as tmp:
        for method, (res, fused) in results.items():
            log.info("%s: dev %s %.4f with %d models (%d candidates)", method, measure, res.best_score,
                     len(names), cfg.n_draws + 1 + len(names))
            (tmp / method).mkdir(parents=True)
            write_json(tmp / method / "weights.json", {
                "models": names, "classes": list(cfg.classes), "task": cfg.task, "dev_score": float(res.best_score),
                "dev_score_name": measure, "weights": res.weights.round(6).tolist(), "n_draws": cfg.n_draws,
                "concentration": cfg.concentration})
            write_scores(tmp / method / "scores.h5",
                         {v: {payload(cfg.task)[0]: p, "covered": np.ones(len(p), bool)} for v, (_, p) in fused.items()},
                         {v: split for v, (split, _) in fused.items()}, cfg.label_rate_hz, stage="fuse", model=method,
                         classes=list(cfg.classes), task=cfg.task, params_digest=params_digest(vars(cfg)))


if __name__ == "__main__":
    main()
