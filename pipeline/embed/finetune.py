"""Frame-level fine-tuning of a face backbone (the paper's model 1, "VGGFace2-based 2D CNN").

A dense 1024 + dense K head (dropout 0.5) on the FER-2013 mini-Xception port, trained on the
training split's aligned faces with AdamW, logarithmic class weights
``w_i = max(1, ln(r N / n_i))``, per-class frame thinning (keep every n-th frame of a class),
augmentation (rotation, horizontal flip, brightness) and the best epoch chosen by dev loss.
The 1024-d layer becomes another face embedding and the softmax a frame-level model's scores.
For ``base.task: va`` the head regresses valence and arousal instead (two tanh outputs,
trained on 1 - CCC; no class weights or thinning).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.embed.fer_xception import MiniXception, preprocess_faces
from pipeline.models.class_weights import log_class_weights
from pipeline.models.losses import ccc_loss
from pipeline.models.persist import save_torch

log = logging.getLogger(__name__)


class FineTuneNet(nn.Module):
    """Backbone embedding -> Dropout -> Linear(hidden) -> ReLU -> Dropout -> Linear(K)."""

    def __init__(
        self,
        backbone: MiniXception,
        n_classes: int,
        hidden: int = 1024,
        dropout: float = 0.5,
        task: str = "expr",
    ):
        super().__init__()
        self.task = task  # "expr": softmax over n_classes; "va": tanh over 2 outputs
        # Trained in the default contiguous format: channels-last weights with contiguous
        # activations crash torch 2.13's oneDNN AVX-512 backward (see load_fer_xception).
        self.backbone = backbone.to(memory_format=torch.contiguous_format)
        self.hidden_dim = hidden
        self.head1 = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(backbone.embedding_dim, hidden), nn.ReLU()
        )
        self.head2 = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, 1, 64, 64) in [-1, 1] -> (hidden (B, 1024), logits (B, K))."""
        h = self.head1(self.backbone(x).embedding)
        return h, self.head2(h)

    @torch.no_grad()
    def embed(
        self, faces: np.ndarray, batch_size: int = 128, device: str = "cpu"
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB faces (B, H, W, 3) -> (hidden (B, 1024), probs (B, K) or VA (B, 2))."""
        self.eval()
        hs, ps = [], []
        for s in range(0, len(faces), batch_size):
            x = torch.from_numpy(preprocess_faces(faces[s : s + batch_size]))[:, None].to(device)
            h, logits = self(x)
            hs.append(h.cpu().numpy())
            ps.append(
                (torch.tanh(logits) if self.task == "va" else torch.softmax(logits, 1))
                .cpu()
                .numpy()
            )
        k = self.head2[1].out_features
        if not hs:
            return np.zeros((0, self.hidden_dim), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(hs).astype(np.float32), np.concatenate(ps).astype(np.float32)


@dataclass(frozen=True)
class FineTuneConfig:
    """Training settings (the ``finetune_faces`` params; no defaults here: params.yaml
    holds them)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    class_weight_r: float
    thinning: tuple[int, ...]  # keep every n-th frame per class (index = class); () = all
    rotation_deg: float
    flip: bool
    brightness: tuple[float, float]
    hidden: int
    dropout: float


def thin_per_class(y: np.ndarray, every: tuple[int, ...]) -> np.ndarray:
    """Indices kept when every ``every[k]``-th frame of class ``k`` is kept (in order)."""
    keep = []
    for k in range(int(y.max()) + 1 if y.size else 0):
        idx = np.flatnonzero(y == k)
        step = every[k] if k < len(every) else 1
        keep.append(idx[:: max(1, step)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def augment(faces: np.ndarray, rng: np.random.Generator, cfg: FineTuneConfig) -> np.ndarray:
    """Random rotation (+-rotation_deg), horizontal flip and brightness scaling, per face."""
    out = np.empty_like(faces)
    h, w = faces.shape[1:3]
    for i, f in enumerate(faces):
        angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        g = cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        if cfg.flip and rng.random() < 0.5:
            g = g[:, ::-1]
        out[i] = np.clip(g.astype(np.float32) * rng.uniform(*cfg.brightness), 0, 255).astype(
            np.uint8
        )
    return out


def _dev_loss(
    model: FineTuneNet, faces: np.ndarray, y: np.ndarray, loss_fn, bs: int, device: str
) -> float:
    model.eval()
    with torch.no_grad():
        out = torch.cat(
            [
                model(torch.from_numpy(preprocess_faces(faces[s : s + bs]))[:, None].to(device))[1]
                for s in range(0, len(y), bs)
            ]
        )
    return float(loss_fn(out, torch.from_numpy(y).to(device)))


def finetune(
    backbone: MiniXception,
    train: tuple[np.ndarray, np.ndarray],
    dev: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    cfg: FineTuneConfig,
    seed: int,
    device: str = "cpu",
    task: str = "expr",
) -> tuple[FineTuneNet, list[dict]]:
    """Train the head and backbone; returns the best-dev-loss model and the history.

    Parameters
    ----------
    train, dev : (faces uint8 [N, S, S, 3], labels) with int labels in [0, K) for
        ``task='expr'``, or float (valence, arousal) [N, 2] for ``task='va'``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    faces, y = train
    if task == "va":
        n_out = 2
        y, dev = y.astype(np.float32), (dev[0], dev[1].astype(np.float32))

        def loss_fn(logits, target):
            return ccc_loss(torch.tanh(logits), target)

        log.info("finetune (va): %d training faces, %d dev faces", len(y), len(dev[1]))
    else:
        n_out = n_classes
        keep = thin_per_class(y, cfg.thinning)
        faces, y = faces[keep], y[keep]
        weights = torch.tensor(
            log_class_weights(y, n_classes, cfg.class_weight_r), dtype=torch.float32
        ).to(device)

        def loss_fn(logits, target):
            return nn.functional.cross_entropy(logits, target.long(), weight=weights)

        log.info(
            "finetune: %d training faces after thinning (class counts %s), %d dev faces",
            len(y),
            np.bincount(y, minlength=n_classes).tolist(),
            len(dev[1]),
        )
    model = FineTuneNet(copy.deepcopy(backbone), n_out, cfg.hidden, cfg.dropout, task).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_loss, history = copy.deepcopy(model.state_dict()), np.inf, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(y))
        run = 0.0
        for s in range(0, len(order), cfg.batch_size):
            sel = order[s : s + cfg.batch_size]
            x = torch.from_numpy(preprocess_faces(augment(faces[sel], rng, cfg)))[:, None].to(
                device
            )
            if len(sel) < 2 and task == "va":  # CCC needs two samples
                continue
            loss = loss_fn(model(x)[1], torch.from_numpy(y[sel]).to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run += loss.item() * len(sel)
        dev_loss = _dev_loss(model, dev[0], dev[1], loss_fn, cfg.batch_size, device)
        history.append({"epoch": epoch, "train_loss": run / max(len(y), 1), "dev_loss": dev_loss})
        log.info(
            "finetune epoch %d: train loss %.4f, dev loss %.4f",
            epoch,
            history[-1]["train_loss"],
            dev_loss,
        )
        if dev_loss < best_loss:
            best_loss, best = dev_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    model.eval()
    return model, history


def save_finetuned(path, model: FineTuneNet, classes: tuple[str, ...]) -> None:
    """Save state dict and the metadata needed to rebuild the model."""
    save_torch(
        {
            "state_dict": model.state_dict(),
            "classes": list(classes),
            "hidden": model.hidden_dim,
            "backbone": "fer_xception",
            "task": model.task,
        },
        path,
    )


def save_skipped(path, reason: str, classes: tuple[str, ...]) -> None:
    """Save the skip record that stands for the model when there was nothing to fine-tune
    (no labelled train face): ``{"skipped": reason, "classes": [...]}``."""
    save_torch({"skipped": reason, "classes": list(classes)}, path)


def load_finetuned(path, device: str = "cpu") -> FineTuneNet:
    """Rebuild a model saved by :func:`save_finetuned`.

    Raises
    ------
    PipelineError
        ``path`` holds a skip record (:func:`save_skipped`).
    """
    ck = torch.load(path, map_location=device, weights_only=True)
    if "skipped" in ck:
        from pipeline.errors import PipelineError

        raise PipelineError(f"{path}: finetune_faces was skipped ({ck['skipped']})")
    task = ck.get("task", "expr")
    n_out = 2 if task == "va" else len(ck["classes"])
    model = FineTuneNet(MiniXception(), n_out, ck["hidden"], task=task).to(device)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def labelled_faces(
    faces_file,
    video_id: str,
    labels_5hz: dict[str, np.ndarray],
    rate_hz: float,
    size_px: int = 96,
    task: str = "expr",
) -> tuple[np.ndarray, np.ndarray]:
    """Valid face crops of one video with the 5 Hz label of the bin each frame falls in.

    Crops are resized to ``size_px`` (augmentation and the 64x64 input need no more), and
    frames whose bin is unannotated (-1, or NaN valence/arousal) are dropped.

    Returns
    -------
    (faces uint8 [n, size_px, size_px, 3], labels int64 [n] or float32 [n, 2] for va)
    """
    from pipeline.io.h5 import read_group

    g = read_group(faces_file, video_id, ["t", "valid", "faces"])
    y_grid = labels_5hz["va"] if task == "va" else labels_5hz["y"]
    bins = np.clip(np.floor(g["t"] * rate_hz + 1e-9).astype(np.int64), 0, len(y_grid) - 1)
    y = y_grid[bins]
    labelled = np.isfinite(y).all(axis=1) if task == "va" else y >= 0
    y = y.astype(np.float32) if task == "va" else y.astype(np.int64)
    keep = g["valid"] & labelled
    crops = (
        np.stack(
            [
                cv2.resize(f, (size_px, size_px), interpolation=cv2.INTER_AREA)
                for f in g["faces"][keep]
            ]
        )
        if keep.any()
        else np.zeros((0, size_px, size_px, 3), np.uint8)
    )
    return crops, y[keep]


def split_faces(
    rows, faces_dir, labels_5hz: dict[str, dict], rate_hz: float, split: str, task: str = "expr"
) -> tuple[np.ndarray, np.ndarray]:
    """All labelled valid crops of one split: (faces uint8 [n, 96, 96, 3], labels [n]).

    Raises
    ------
    PipelineError
        The split has no labelled face (empty split, or no face found in it).
    """
    from pipeline.errors import PipelineError

    parts = [
        labelled_faces(
            faces_dir / f"{r.video_id}.h5", r.video_id, labels_5hz[r.video_id], rate_hz, task=task
        )
        for r in rows
        if r.split == split
    ]
    if not parts or sum(len(p[1]) for p in parts) == 0:
        raise PipelineError(f"finetune_faces: no labelled faces in the {split} split")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def video_folds(video_ids: list[str], k: int, seed: int) -> dict[str, int]:
    """Assign videos to ``k`` folds of (nearly) equal size with a seeded shuffle: {id: fold}."""
    order = np.random.default_rng(seed).permutation(sorted(video_ids))
    return {str(v): i % k for i, v in enumerate(order)}


def finetune_out_of_fold(
    backbone: MiniXception,
    rows,
    faces_dir,
    labels_5hz: dict[str, dict],
    rate_hz: float,
    n_classes: int,
    cfg: FineTuneConfig,
    seed: int,
    k: int,
    device: str = "cpu",
    task: str = "expr",
) -> tuple[FineTuneNet, list[dict], dict[str, FineTuneNet]]:
    """The fine-tuned model, plus out-of-fold models for the train videos.

    Features of the videos a model was trained on are memorised ones: a classifier fitted on
    them learns from better features than it will meet on dev and test. With ``k >= 2`` the
    train videos are split into ``k`` folds by video; the model of fold j is trained on the
    other folds (early stopping on dev as usual) and embeds the videos of fold j. Dev and test
    videos are embedded by the model trained on every train video. Cost: ``k`` extra trainings.
    Every model starts from the same backbone and the same seeded head, so their hidden units
    correspond closely (the K scores exactly).

    Returns
    -------
    (full model, its history, {train video id: the model that embeds it}); the mapping is
    empty when ``k == 0``.
    """
    from pipeline.errors import NothingToFit, PipelineError

    train_rows = [r for r in rows if r.split == "train"]
    try:
        train_all = split_faces(train_rows, faces_dir, labels_5hz, rate_hz, "train", task)
    except PipelineError as err:  # no face in any train video: the data has none to learn
        raise NothingToFit(str(err)) from None
    dev = split_faces(rows, faces_dir, labels_5hz, rate_hz, "dev", task)

    def train_on(train: tuple[np.ndarray, np.ndarray]) -> tuple[FineTuneNet, list[dict]]:
        return finetune(backbone, train, dev, n_classes, cfg, seed, device, task)

    net, history = train_on(train_all)
    embedder: dict[str, FineTuneNet] = {}
    if k:
        if len(train_rows) < k:
            from pipeline.errors import ParamsError

            raise ParamsError(
                f"finetune_faces.oof_folds: {k} folds for {len(train_rows)} "
                "train videos; use fewer folds or 0"
            )
        fold_of = video_folds([r.video_id for r in train_rows], k, seed)
        for j in range(k):
            log.info("finetune: out-of-fold model %d of %d", j + 1, k)
            subset = [r for r in train_rows if fold_of[r.video_id] != j]
            fold_net, _ = train_on(
                split_faces(subset, faces_dir, labels_5hz, rate_hz, "train", task)
            )
            embedder |= {r.video_id: fold_net for r in train_rows if fold_of[r.video_id] == j}
    return net, history, embedder


def embed_video(
    net: FineTuneNet, row, faces_dir, n_classes: int, device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, group attrs)`` of one manifest row: ``t, x`` (hidden layer), ``p`` (softmax,
    or valence/arousal for va) and ``valid``, from ``faces_dir/<video_id>.h5`` read a chunk of
    faces at a time. A row without a video stream gets an empty group with attribute
    ``skipped`` (:func:`~pipeline.io.h5.skipped_group`)."""
    from pipeline.data.manifest import no_stream
    from pipeline.io.h5 import read_group, read_rows, skipped_group

    k = 2 if net.task == "va" else n_classes
    if reason := no_stream(row, "video"):
        arrays, attrs = skipped_group(net.hidden_dim, reason)
        return {**arrays, "p": np.zeros((0, k), np.float32)}, attrs
    path = faces_dir / f"{row.video_id}.h5"
    g = read_group(path, row.video_id, ["t", "valid"])
    x = np.zeros((len(g["t"]), net.hidden_dim), np.float32)
    p = np.zeros((len(g["t"]), k), np.float32)
    for idx, faces in read_rows(path, row.video_id, "faces", np.flatnonzero(g["valid"])):
        x[idx], p[idx] = net.embed(faces, device=device)
    return {"t": g["t"], "x": x, "p": p, "valid": g["valid"]}, {}


def embed_videos(
    net: FineTuneNet,
    rows,
    faces_dir,
    writer,
    n_classes: int,
    device: str = "cpu",
    embedder: dict[str, FineTuneNet] | None = None,
) -> None:
    """Write :func:`embed_video` of every row to ``writer``.

    ``embedder`` maps video ids to the model that embeds them (out-of-fold train videos);
    other videos use ``net``.
    """
    for r in rows:
        model = (embedder or {}).get(r.video_id, net)
        arrays, attrs = embed_video(model, r, faces_dir, n_classes, device)
        writer.add(r.video_id, attrs=attrs, **arrays)


def write_skipped_embeddings(rows, writer, dim: int, n_out: int, reason: str) -> None:
    """Give every row an empty group (attribute ``skipped``: why) when fine-tuning was
    skipped (:func:`save_skipped`); ``dim`` is the hidden width, ``n_out`` the width of
    ``p`` (K classes, or 2 for valence/arousal)."""
    from pipeline.data.manifest import no_stream
    from pipeline.io.h5 import skipped_group

    for r in rows:
        arrays, attrs = skipped_group(dim, no_stream(r, "video") or reason)
        writer.add(r.video_id, attrs=attrs, **arrays, p=np.zeros((0, n_out), np.float32))
