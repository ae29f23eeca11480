"""Stage `fit_feature_fusion`: seed 003's end-to-end feature-level fusion network.

Reads  data/interim/faces/<video_id>.h5 (aligned crops), data/interim/<source>/<video_id>.h5
       (vocals by default), data/interim/labels_5hz.h5, models/pretrain_faces/model.pt,
       models/pretrain_audio/model.pt; params base.seed, base.classes, base.label_rate_hz,
       base.device, base.task, fit_feature_fusion
Writes models/fit/feature_fusion/{model.pt, scores.h5, report.json, history.csv (per-epoch
       losses, a `dvc plots` curve)}; data without faces or
       without audio in the train split: report.json only, the skip record
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.errors import NothingToFit
from pipeline.io.atomic import atomic_path, write_history, write_json
from pipeline.io.h5 import iter_groups_with_attrs, params_digest, read_attrs, read_group
from pipeline.models.feature_fusion import fit_feature_fusion, save_feature_fusion, video_faces
from pipeline.params import load_params
from pipeline.scores import FEATURE_FUSION_MODEL, payload, write_scores, write_skipped


@stage_cli
def main(
    faces: Path,
    audio: Path,
    labels: Path,
    face_model: Path,
    audio_model: Path,
    dst: Path,
    params: Path = Path("params.yaml"),
) -> None:
    """Train on train-split segments and score dev/test on the 5 Hz grid."""
    cfg = load_params("fit_feature_fusion", params)
    key = payload(cfg.task)[1]
    videos = {}
    for vid, g, attrs in iter_groups_with_attrs(labels, [key]):
        a, f = audio / f"{vid}.h5", faces / f"{vid}.h5"
        face_t, grey = video_faces(f, vid) if f.is_file() else ([], [])
        videos[vid] = {
            "wave": read_group(a, vid, ["wave"])["wave"] if a.is_file() else None,
            "rate_hz": int(read_attrs(a)["rate_hz"]) if a.is_file() else 0,
            "face_t": face_t,
            "faces": grey,
            key: g[key],
            "split": attrs["split"],
        }
    try:
        net, scores, report = fit_feature_fusion(
            videos,
            cfg,
            face_model,
            audio_model,
            n_classes=len(cfg.classes),
            seed=cfg.seed,
            rate_hz=cfg.label_rate_hz,
            task=cfg.task,
            device=resolve_device(cfg.device),
        )
    except NothingToFit as why:  # audio-only or image data: one modality to fuse
        write_skipped(dst, FEATURE_FUSION_MODEL, str(why))
        return
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        save_feature_fusion(net, tmp / "model.pt")
        write_json(tmp / "report.json", {**report, "source": cfg.source})
        write_history(tmp / "history.csv", report["history"])  # for `dvc plots`
        write_scores(
            tmp / "scores.h5",
            scores,
            {v: g["split"] for v, g in videos.items()},
            cfg.label_rate_hz,
            stage="fit_feature_fusion",
            model=FEATURE_FUSION_MODEL,
            feature="faces+raw_audio",
            classes=list(cfg.classes),
            task=cfg.task,
            params_digest=params_digest(vars(cfg)),
        )


if __name__ == "__main__":
    main()
