"""Stage `fuse`: simple (SWF) and model-and-class (MCWF) weighted score fusion.

Weights come from a random search over Dirichlet draws that maximises CPM on dev (mean CCC
of valence and arousal for ``base.task: va``, where "mcwf" has one weight column per
dimension); both fusions are then applied to dev and test.

Reads  models/fit/<model>/scores.h5, data/interim/labels_5hz.h5;
       params base.seed, base.classes, base.label_rate_hz, base.task, fuse
Writes models/fuse/<swf|mcwf>/scores.h5 (same format as fit), models/fuse/<method>/weights.json
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline import fusion
from pipeline.cli import stage_cli
from pipeline.errors import PipelineError
from pipeline.io.atomic import atomic_path, write_json
from pipeline.io.h5 import open_writer, params_digest
from pipeline.labels.resample import grid_times
from pipeline.params import load_params
from pipeline.scores import find_scores, payload, read_labels, read_scores, stack_split

log = logging.getLogger("stages.fuse")


@stage_cli
def main(scores: Path, labels: Path, dst: Path, params: Path = Path("params.yaml")) -> None:
    """Search fusion weights on dev and write fused dev/test scores."""
    cfg = load_params("fuse", params)
    available = find_scores(scores)
    names = sorted(available) if cfg.models == ("all",) else list(cfg.models)
    missing = [m for m in names if m not in available]
    if missing or len(names) < 2:
        raise PipelineError(f"fuse.models: need >= 2 fitted models; missing {missing}, have {sorted(available)}")
    per_model = {m: read_scores(available[m], cfg.task) for m in names}
    lab = read_labels(labels, cfg.task)
    P_dev, y_dev, _ = stack_split(per_model, lab, "dev", cfg.task)
    splits = ["dev"] + (["test"] if any(g["split"] == "test" for g in lab.values()) else [])
    key = payload(cfg.task)[0]
    if cfg.task == "va":  # weights maximise the mean CCC; "mcwf" = one weight column per dimension
        methods = (("swf", lambda *a: fusion.search_va(*a, per_dimension=False), fusion.apply_va),
                   ("mcwf", lambda *a: fusion.search_va(*a, per_dimension=True), fusion.apply_va))
    else:
        methods = (("swf", fusion.search_swf, fusion.apply_swf), ("mcwf", fusion.search_mcwf, fusion.apply_mcwf))
    with atomic_path(dst) as tmp:
        for method, search, apply in methods:
            res = search(P_dev, y_dev, cfg.n_draws, cfg.concentration, cfg.seed)
            log.info("%s: dev %s %.4f with %d models (%d candidates)", method,
                     "mean CCC" if cfg.task == "va" else "CPM", res.best_score, len(names), cfg.n_draws + 1)
            (tmp / method).mkdir(parents=True)
            write_json(tmp / method / "weights.json", {
                "models": names, "classes": list(cfg.classes), "task": cfg.task,
                "dev_score": float(res.best_score), "dev_score_name": "mean_ccc" if cfg.task == "va" else "cpm",
                "weights": res.weights.round(6).tolist(), "n_draws": cfg.n_draws,
                "concentration": cfg.concentration})
            fused = {}
            for split in splits:
                P, _, index = stack_split(per_model, lab, split, cfg.task)
                p, start = apply(P, res.weights), 0
                for vid, n in index:
                    fused[vid] = (split, p[start:start + n])
                    start += n
            with open_writer(tmp / method / "scores.h5", stage="fuse", model=method, classes=list(cfg.classes),
                             task=cfg.task, rate_hz=cfg.label_rate_hz, params_digest=params_digest(vars(cfg))) as w:
                for vid in sorted(fused):
                    split, p = fused[vid]
                    w.add(vid, attrs={"split": split}, t=grid_times(len(p), cfg.label_rate_hz),
                          covered=np.ones(len(p), bool), **{key: p.astype(np.float32)})

if __name__ == "__main__":
    main()
