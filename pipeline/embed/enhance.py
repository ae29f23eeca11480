"""Feature enhancement of face embeddings (Table 3 of Zhou, Meng et al., EmotiW 2019).

Each aligned face is seen 18 times: rotated by -2, 0 or +2 degrees, scaled by 1, 1.03 or
1.07 (both about the image centre), each with and without a horizontal flip. All 18 views go
through the backbone and their embeddings are aggregated into one vector per face:

- ``mean`` (F-Mean): the mean of the 18 embeddings, dim D.
- ``meanstd`` (F-MeanStd): the mean and the (population) standard deviation concatenated,
  dim 2D.
- ``normfft`` (F-NormFFT): the magnitude of the real FFT of the l2-normalised F-Mean
  embedding, dim D // 2 + 1. The paper's text available here names this variant without
  defining it; this is our reading, not a verified copy.
- ``none``: the backbone's embedding of the face itself (no extra views).

Class scores (backbones that have them) become the mean of the 18 views' probabilities.
Rotation and scaling use ``cv2.warpAffine`` (bilinear) with the border replicated, so the
corners a rotation uncovers hold face-border colours rather than black. The cost is 18
forward passes per face; ``tests/benchmarks/bench_enhance.py`` measures it.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Literal

import cv2
import numpy as np

from pipeline.embed.face_backbones import FaceBackbone

__all__ = [
    "ENHANCE_KINDS",
    "TRANSFORMS",
    "aggregate_views",
    "augment_faces",
    "enhance_backbone",
    "enhanced_dim",
    "transform_face",
]

Enhance = Literal["none", "mean", "meanstd", "normfft"]
ENHANCE_KINDS: tuple[str, ...] = ("none", "mean", "meanstd", "normfft")

TRANSFORMS: tuple[tuple[float, float, bool], ...] = tuple(
    itertools.product((-2.0, 0.0, 2.0), (1.0, 1.03, 1.07), (False, True))
)
"""The 18 views ``(rotation_deg, scale, flip)``; ``(0.0, 1.0, False)`` is the face itself."""


def transform_face(face: np.ndarray, rotation_deg: float, scale: float, flip: bool) -> np.ndarray:
    """One view of a face: rotation and scaling about the centre, then an optional flip.

    Parameters
    ----------
    face : (H, W, 3) uint8 array
    rotation_deg : float
        Counter-clockwise rotation in degrees.
    scale : float
        Zoom factor (> 1 enlarges the face, cropping its border).
    flip : bool
        Mirror left-right after the warp.

    Returns
    -------
    (H, W, 3) uint8 array; the identity view returns the input's values exactly.
    """
    h, w = face.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation_deg, scale)
    out = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def augment_faces(faces: np.ndarray) -> np.ndarray:
    """All 18 views of every face.

    Parameters
    ----------
    faces : (N, H, W, 3) uint8 array

    Returns
    -------
    (N, 18, H, W, 3) uint8 array; view ``j`` of face ``i`` is ``TRANSFORMS[j]`` applied to it.
    """
    out = np.empty((len(faces), len(TRANSFORMS)) + faces.shape[1:], dtype=faces.dtype)
    for i, face in enumerate(faces):
        for j, (rot, scale, flip) in enumerate(TRANSFORMS):
            out[i, j] = transform_face(face, rot, scale, flip)
    return out


def enhanced_dim(dim: int, kind: Enhance) -> int:
    """Size of the aggregated embedding of a backbone of size ``dim``."""
    return {"none": dim, "mean": dim, "meanstd": 2 * dim, "normfft": dim // 2 + 1}[kind]


def aggregate_views(emb: np.ndarray, kind: Enhance) -> np.ndarray:
    """Aggregate the embeddings of the views of each face.

    Parameters
    ----------
    emb : (N, V, D) float array
        Embeddings of V views of N faces (V = 18 for :data:`TRANSFORMS`).
    kind : {'mean', 'meanstd', 'normfft'}

    Returns
    -------
    (N, enhanced_dim(D, kind)) float32 array.
    """
    mean = emb.mean(axis=1)
    if kind == "mean":
        out = mean
    elif kind == "meanstd":
        out = np.concatenate([mean, emb.std(axis=1)], axis=1)
    elif kind == "normfft":
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        unit = mean / np.where(norm > 0, norm, 1.0)
        out = np.abs(np.fft.rfft(unit, axis=1))
    else:
        raise ValueError(f"enhance must be one of {ENHANCE_KINDS[1:]}, got {kind!r}")
    return out.astype(np.float32)


def enhance_backbone(backbone: FaceBackbone, kind: Enhance) -> FaceBackbone:
    """The backbone with feature enhancement ``kind`` wrapped around its ``embed``.

    ``none`` returns ``backbone`` itself. Otherwise the returned backbone embeds the 18 views
    of each face of a batch (one call to the wrapped ``embed`` with 18 N faces, so memory
    grows 18-fold per batch) and aggregates them; its ``dim`` is
    :func:`enhanced_dim` and its name is unchanged.
    """
    if kind == "none":
        return backbone
    if kind not in ENHANCE_KINDS:
        raise ValueError(f"enhance must be one of {ENHANCE_KINDS}, got {kind!r}")
    n_views = len(TRANSFORMS)

    def embed(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        views = augment_faces(faces)
        x, p = backbone.embed(views.reshape((-1,) + faces.shape[1:]))
        x = aggregate_views(x.reshape(len(faces), n_views, -1), kind)
        if p is not None:
            p = p.reshape(len(faces), n_views, -1).mean(axis=1).astype(np.float32)
        return x, p

    return replace(backbone, dim=enhanced_dim(backbone.dim, kind), embed=embed)
