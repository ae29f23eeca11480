"""Stage `fit_raw_audio@<net>`: one network on raw vocal waveform windows.

`cnn_lstm_raw` is the ABAW paper's 1D CNN + LSTM (model 4), `spec_attention` the EmotiW 2019
paper's spectrogram CNN with attention pooling (pipeline.models.spec_attention).

Reads  data/interim/<source>/<video_id>.h5 (vocals by default), data/interim/labels_5hz.h5,
       models/pretrain_audio/model.pt (with nets.cnn_lstm_raw.pretrained: seed 003's network);
       params base.seed, base.classes, base.label_rate_hz, base.device, base.task, fit_raw_audio,
       fit.oof_folds, fuse.cv_group
Writes models/fit/<net>/{model.joblib (model.pt for va), scores.h5, report.json, history.csv
       (per-epoch losses, a `dvc plots` curve)};
       with fit.oof_folds >= 2 scores.h5 also holds the train videos, scored out
       of fold;
       data without labelled train audio: report.json only, the skip record {"model", "skipped"}
"""

from __future__ import annotations

from pathlib import Path

import joblib

from pipeline.cli import stage_cli
from pipeline.embed.device import resolve_device
from pipeline.errors import NothingToFit, PipelineError
from pipeline.io.atomic import atomic_path, write_history, write_json
from pipeline.io.h5 import iter_groups_with_attrs, params_digest, read_attrs, read_group
from pipeline.models.persist import save_torch
from pipeline.models.raw_audio import fit_raw_audio, fit_raw_audio_va
from pipeline.params import load_params
from pipeline.scores import payload, write_scores, write_skipped


@stage_cli
def main(
    net: str,
    audio: Path,
    labels: Path,
    dst: Path,
    pretrained: Path = Path("models/pretrain_audio/model.pt"),
    params: Path = Path("params.yaml"),
) -> None:
    """Train network ``net`` (a key of fit_raw_audio.nets) on train-split audio windows and
    score dev/test on the 5 Hz grid."""
    cfg = load_params("fit_raw_audio", params)
    if net not in cfg.nets:
        raise PipelineError(f"{params}: fit_raw_audio.nets has no network {net!r}")
    key = payload(cfg.task)[1]
    videos = {}
    for vid, g, attrs in iter_groups_with_attrs(labels, [key]):
        f = audio / f"{vid}.h5"
        wave, rate = (
            (read_group(f, vid, ["wave"])["wave"], int(read_attrs(f)["rate_hz"]))
            if f.exists()
            else (None, 0)
        )
        videos[vid] = {
            "wave": wave,
            "rate_hz": rate,
            key: g[key],
            "split": attrs["split"],
            "speaker": attrs.get("speaker"),
        }
    device = resolve_device(cfg.device)
    # error if pretrain_audio was skipped
    init = pretrained if getattr(cfg.nets[net], "pretrained", False) else None
    try:
        if cfg.task == "va":
            est, scores, report = fit_raw_audio_va(
                videos, cfg, cfg.seed, cfg.label_rate_hz, device, init, net
            )
        else:
            est, scores, report = fit_raw_audio(
                videos, cfg, len(cfg.classes), cfg.seed, cfg.label_rate_hz, device, init, net
            )
    except NothingToFit as why:  # e.g. an image corpus: no audio
        write_skipped(dst, net, str(why))
        return
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        if cfg.task == "va":  # a bare torch module: reproducible torch.save bytes
            save_torch(est, tmp / "model.pt")
        else:
            joblib.dump(est, tmp / "model.joblib")
        write_json(tmp / "report.json", {**report, "source": cfg.source})
        write_history(tmp / "history.csv", report["history"])  # for `dvc plots`
        write_scores(
            tmp / "scores.h5",
            scores,
            {v: g["split"] for v, g in videos.items()},
            cfg.label_rate_hz,
            stage="fit_raw_audio",
            model=net,
            feature="raw_audio",
            classes=list(cfg.classes),
            task=cfg.task,
            params_digest=params_digest(vars(cfg)),
        )


if __name__ == "__main__":
    main()
