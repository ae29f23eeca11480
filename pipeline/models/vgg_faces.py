"""Seed 003's visual model: three VGG-style conv blocks on raw grey face pixels.

Adhikari & Joshi (eNTERFACE'05) pre-train the visual branch on FER-2013 (48 x 48 grey faces)
and keep its 256-d average-pooled feature for the feature-level fusion network. A block is
[Conv3x3 -> BatchNorm -> ReLU] x 2 -> MaxPool 2 -> Dropout (VGG, Simonyan & Zisserman 2015);
three blocks take 48 x 48 to 6 x 6, global average pooling gives the feature (as many
values as the last block has channels), and a linear layer the class logits.

Every face is standardised to zero mean and unit variance first, so the net does not depend
on the brightness and contrast of a corpus (FER-2013's faces and this pipeline's aligned
crops differ in both).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

FACE_SIDE_PX = 48  # FER-2013


def grey_faces(faces: np.ndarray, side_px: int = FACE_SIDE_PX) -> np.ndarray:
    """Face crops as the net's input: grey uint8 (B, side_px, side_px).

    Parameters
    ----------
    faces : (B, H, W, 3) uint8 RGB or (B, H, W) uint8 grey crops of any size
        (e.g. ``detect_faces``' 224 x 224 aligned crops, or FER-2013's 48 x 48 faces).

    Returns
    -------
    (B, side_px, side_px) uint8; shrinking uses area averaging (no aliasing).
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim not in (3, 4):
        raise ValueError(f"faces must be uint8 (B, H, W[, 3]), got {faces.dtype} {faces.shape}")
    out = np.empty((len(faces), side_px, side_px), np.uint8)
    for i, face in enumerate(faces):
        grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY) if face.ndim == 3 else face
        if grey.shape != (side_px, side_px):
            grey = cv2.resize(np.ascontiguousarray(grey), (side_px, side_px), cv2.INTER_AREA)
        out[i] = grey
    return out


def augment_faces(
    x: torch.Tensor,
    generator: torch.Generator,
    shift_px: int = 4,
    rotate_deg: float = 0.0,
    scale: float = 0.0,
) -> torch.Tensor:
    """Random training copies of faces: a horizontal flip (p = 0.5), a shift of up to
    ``shift_px`` pixels in each direction (edges repeated) and, where ``rotate_deg`` or
    ``scale`` is set, a rotation by an angle uniform in +-``rotate_deg`` degrees and a zoom
    by a factor uniform in 1 +- ``scale`` about the centre (bilinear, edges repeated).

    ``x`` (B, 1, H, W) float; every draw comes from the CPU ``generator`` (the rotation and
    zoom draws after the flip and shift ones, so ``rotate_deg = scale = 0`` is the same
    stream as before they existed).
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = nn.functional.pad(x, (shift_px,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * shift_px + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift_px + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(
        b, 1, h, w + 2 * shift_px
    )
    x = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, 1, h, w)
    x = torch.gather(x, 3, cols)
    if rotate_deg == 0 and scale == 0:
        return x
    angle = torch.deg2rad((2 * torch.rand(b, generator=generator) - 1) * rotate_deg)
    zoom = 1 + (2 * torch.rand(b, generator=generator) - 1) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # theta maps output to input coordinates in [-1, 1]: 1/zoom enlarges the face
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)],
        1,
    ).to(x.dtype)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class VGGFaceNet(nn.Module):
    """Three VGG blocks, global average pooling, linear classifier.

    Parameters
    ----------
    n_classes : int
        Outputs K (7 for FER-2013).
    channels : sequence of int, default=(64, 128, 256)
        Channels of each block; the last is the feature size (the paper: 256).
    dropout : float, default=0.25
        After every block and before the classifier (the paper: 0.25).

    Shapes
    ------
    input : (B, 1, H, W) or (B, H, W) float or uint8 grey faces (any scale; 48 x 48 in training)
    output : (B, K) logits; :meth:`features` gives (B, channels[-1])
    """

    def __init__(
        self, n_classes: int, channels: Sequence[int] = (64, 128, 256), dropout: float = 0.25
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        self.init_kwargs = dict(n_classes=n_classes, channels=channels, dropout=dropout)
        blocks, c_in = [], 1
        for c_out in channels:
            layers = []
            for c in (c_in, c_out):
                layers += [
                    nn.Conv2d(c, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(dropout)))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)  # blocks[i]: block i (frozen as a unit)
        self.dim = c_in
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, n_classes)
        # NHWC weights: oneDNN's convolutions run about 20 % faster on a CPU (222 against
        # 270 ms per training batch of 64 faces, 2 cores); same values, other strides
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The average-pooled feature (B, channels[-1]) of grey faces."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = x.float()
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))
