"""Seed 003's pre-training: each uni-modal network on a corpus of its own domain.

- faces: :class:`~pipeline.models.vgg_faces.VGGFaceNet` on FER-2013 (Kaggle's CSV; Training
  trains, PublicTest picks the epoch, PrivateTest is reported when the table has it);
- audio: :class:`~pipeline.models.segment_audio.SegmentAudioNet` on EmoDB 2 s segments
  (speaker-independent: dev speakers pick the epoch, test speakers are reported;
  :mod:`pipeline.models.pretrain_audio`).

This module holds the shared training loop and measures, and the face pre-training.

The stages write the networks with :func:`pipeline.models.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import logging
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from pipeline.errors import DataError, PipelineError
from pipeline.metrics import uar
from pipeline.models.lstm import fit_torch_classifier, fork_rng_devices, predict_logits
from pipeline.models.vgg_faces import VGGFaceNet

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- corpora
def read_fer2013_table(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """FER-2013 as arrays: ``{usage: (faces uint8 [N, 48, 48], labels int64 [N])}``.

    ``usage`` is the table's own (Training, PublicTest, PrivateTest); labels are its codes
    (0 anger ... 6 neutral, :data:`pipeline.data.adapters.FER2013_EMOTIONS`). Malformed rows
    stop the stage with their line (pre-training on a silently shortened corpus would report
    numbers for data it did not see).
    """
    from pipeline.data.adapters import FER2013_SPLITS, fer2013_face

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no FER-2013 table")
    opener = gzip.open if path.suffix == ".gz" else open
    faces: dict[str, list] = {u: [] for u in FER2013_SPLITS}
    labels: dict[str, list] = {u: [] for u in FER2013_SPLITS}
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"emotion", "pixels", "Usage"} <= set(reader.fieldnames or ()):
                raise DataError(path, "needs a header with the columns emotion, pixels, Usage")
            for row in reader:
                face, why = fer2013_face(row)
                if why:
                    raise DataError(path, f"line {reader.line_num}: {why}")
                faces[row["Usage"]].append(face)
                labels[row["Usage"]].append(int(row["emotion"]))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, f"cannot be read as a FER-2013 table ({err})") from None
    return {u: (np.stack(faces[u]), np.asarray(labels[u], np.int64)) for u in faces if faces[u]}


# ----------------------------------------------------------------------------- training
def class_probabilities(module: nn.Module, X: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Softmax class probabilities (N, K) float64 of ``module`` on inputs ``X`` (N, ...), on
    the CPU in eval mode."""
    logits = predict_logits(module, X, batch_size=batch_size, device="cpu")
    return torch.softmax(logits.double(), dim=-1).numpy()


def split_metrics(
    module: nn.Module,
    X: torch.Tensor,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Accuracy, UAR and macro F1 (over the classes present) of ``module`` on ``(X, y)``.

    With ``groups`` (e.g. the utterance of each segment), the class probabilities of a
    group's items are averaged and each group is scored once (labels are per group).
    """
    return probability_metrics(class_probabilities(module, X, batch_size), y, groups)


def flip_metrics(
    module: nn.Module, X: torch.Tensor, y: np.ndarray, batch_size: int = 256
) -> dict[str, float]:
    """:func:`split_metrics` of images ``X`` (N, C, H, W) with test-time flip averaging: the
    class probabilities of each image and of its mirror image are averaged (the usual
    FER-2013 protocol adds this, or ten crops, to the plain figures)."""
    p = sum(class_probabilities(module, x, batch_size) for x in (X, X.flip(-1)))
    return probability_metrics(p / 2, y)


def probability_metrics(
    p: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy, UAR and macro F1 (over the classes present) of class probabilities ``p``
    (N, K) against labels ``y`` (N,); ``groups`` as in :func:`split_metrics`."""
    if groups is not None:
        ids, first = np.unique(groups, return_index=True)
        p = np.stack([p[groups == g].mean(axis=0) for g in ids])
        y = y[first]
    pred = p.argmax(axis=1)
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(pred == y)),
        "uar": uar(y, pred),
        "macro_f1": float(
            f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0)
        ),
    }


def pretrain(
    module: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    dev: tuple[np.ndarray, np.ndarray] | None,
    cfg: Any,
    seed: int,
    device: str = "cpu",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    precision: str = "fp32",
    label_smoothing: float = 0.0,
) -> tuple[list[dict], int]:
    """Train ``module`` in place with the shared loop (Adam, cross-entropy or ``loss_fn``,
    cosine decay from ``cfg.lr``, best dev epoch kept, early stopping after ``cfg.patience``
    epochs; ``precision`` "bf16" trains under bfloat16 autocast, ``label_smoothing`` softens
    the training targets, see :func:`~pipeline.models.lstm.fit_torch_classifier`).

    ``train`` / ``dev``: (inputs [N, ...] float32 or uint8, labels [N] int64, or float targets
    [N, ...] for ``loss_fn``). Returns the per-epoch history and the epoch kept.
    """
    torch_device = torch.device(device)
    with torch.random.fork_rng(devices=fork_rng_devices(torch_device)):
        torch.manual_seed(seed)
        return fit_torch_classifier(
            module,
            torch.from_numpy(train[0]),
            torch.from_numpy(train[1]),
            torch.from_numpy(dev[0]) if dev is not None else None,
            torch.from_numpy(dev[1]) if dev is not None else None,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            patience=cfg.patience,
            tol=1e-4,
            class_weights=None,
            device=torch_device,
            generator=torch.Generator().manual_seed(seed),
            weight_decay=cfg.weight_decay,
            grad_clip=5.0,
            augment=augment,
            cosine=True,
            loss_fn=loss_fn,
            precision=precision,
            label_smoothing=label_smoothing,
        )


def thin(x: np.ndarray, y: np.ndarray, max_items: int | None, seed: int):
    """At most ``max_items`` of ``(x, y)``, a seeded random subset kept in table order (a
    CPU-sized run); None keeps everything."""
    if max_items is None or len(y) <= max_items:
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(y), max_items, replace=False))
    return x[keep], y[keep]


def nan_to_none(history: list[dict]) -> list[dict]:
    """History rows with NaN replaced by None (valid JSON)."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in history
    ]


def seeded_module(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` with torch's generator seeded from ``seed`` (its initial weights), leaving
    the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def fer2013_table(root: str | Path) -> Path | None:
    """Kaggle's ``fer2013.csv`` or ``fer2013.csv.gz`` under ``root``, or None."""
    from pipeline.data.adapters import FER2013_FILES

    return next((Path(root) / n for n in FER2013_FILES if (Path(root) / n).is_file()), None)


def pretrain_faces(
    cfg: Any, root: Path, device: str = "cpu"
) -> tuple[VGGFaceNet, list[str], dict]:
    """Train seed 003's face model on FER-2013 (Training; the epoch by PublicTest loss).

    Parameters
    ----------
    cfg : the ``pretrain_faces`` params (channels, dropout, epochs, patience, lr,
        weight_decay, batch_size, max_train, precision, label_smoothing, rotate_deg, scale,
        seed)
    root : the folder holding ``fer2013.csv`` or ``fer2013.csv.gz``

    Returns
    -------
    (network, FER-2013 class names, report): the report holds accuracy, UAR and macro F1 of
    every usage the table has (Training, PublicTest, PrivateTest), the same with test-time
    flip averaging for the held-out usages (``splits_flip``), the epochs and the per-epoch
    history; ``{"skipped": why}`` and the untrained network without a table.
    """
    from pipeline.data.adapters import FER2013_EMOTIONS
    from pipeline.models.vgg_faces import augment_faces

    classes = list(FER2013_EMOTIONS)
    module = seeded_module(cfg.seed, lambda: VGGFaceNet(len(classes), cfg.channels, cfg.dropout))
    table = fer2013_table(root)
    if table is None:
        return module, classes, {"skipped": f"{root}: no fer2013.csv or fer2013.csv.gz"}
    data = {
        usage: (faces[:, None].astype(np.float32), y)
        for usage, (faces, y) in read_fer2013_table(table).items()
    }
    if "Training" not in data:
        raise DataError(table, "has no Training rows to pre-train on")
    train = thin(*data["Training"], cfg.max_train, cfg.seed)
    log.info(
        "pretrain_faces: %d Training faces, %d PublicTest faces",
        len(train[1]),
        len(data.get("PublicTest", ((), ()))[1]),
    )
    history, best = pretrain(
        module,
        train,
        data.get("PublicTest"),
        cfg,
        cfg.seed,
        device,
        functools.partial(augment_faces, rotate_deg=cfg.rotate_deg, scale=cfg.scale),
        precision=cfg.precision,
        label_smoothing=cfg.label_smoothing,
    )
    module.to("cpu").eval()
    report = {
        "corpus": "FER-2013",
        "table": table.name,
        "train_rows": int(len(train[1])),
        "precision": cfg.precision,
        "label_smoothing": cfg.label_smoothing,
        "augment": {"rotate_deg": cfg.rotate_deg, "scale": cfg.scale},
        "epochs_run": len(history),
        "best_epoch": best,
        "splits": {  # Training: the rows trained on (max_train)
            u: split_metrics(module, torch.from_numpy(x), y)
            for u, (x, y) in {**data, "Training": train}.items()
        },
        "splits_flip": {  # each face and its mirror image, probabilities averaged
            u: flip_metrics(module, torch.from_numpy(x), y)
            for u, (x, y) in data.items()
            if u != "Training"
        },
        "history": nan_to_none(history),
    }
    return module, classes, report
