"""MTCNN in torch, batched across frames: the ``mtcnn`` 1.0.0 package's algorithm and weights.

The ``mtcnn`` package (TensorFlow, :class:`~pipeline.video.detectors.MTCNNDetector`) runs
its networks through Keras one pyramid level and one stage at a time, and its batch mode
moves boxes. This port runs the same three networks (P-, R- and O-Net of Zhang et al.
2016) in torch with the weights the wheel ships (``mtcnn/assets/weights/*.lz4``, joblib
pickles of the Keras weight lists, checked against :data:`WEIGHTS_SHA256` before loading),
batched across frames: every pyramid level of a batch of equally sized frames goes through
P-Net in one call, all candidates of the batch through R-Net, then O-Net. Everything else is
the package's algorithm, step for step (its function names in brackets), each frame's
candidates kept apart, so a batch gives the detections of one call per frame:

1. pyramid [build_scale_pyramid]: scales ``12 / min_face_size * 0.709**k`` for
   ``k < round(log(min_side / 12) / log(1 / 0.709) - 1)``; each level is the normalised
   frame ``(rgb - 127.5) / 128`` resized to ``int(side * scale)`` by TensorFlow's area
   resampling [scale_images: tf.image.resize AREA], reproduced by :func:`area_resize`;
2. P-Net [generate_bounding_box]: windows with face probability > 0.6 give boxes
   ``(2 x + 1, 2 y + 1, 2 x + 12, 2 y + 12)`` plus 11 px times the regression, over the
   scale; NMS per level (IoU 0.5) then across levels (IoU 0.7) [smart_nms_from_bboxes];
   boxes made square about their centre [resize_to_square];
3. R-Net: 24 x 24 crops by TensorFlow's ``crop_and_resize`` (bilinear, boxes over
   ``[0, 1]`` mapped onto pixel centres ``[0, side - 1]``, zero outside the frame)
   [extract_patches], reproduced by :func:`crop_and_resize`; new score, box regression
   scaled by ``side + 1`` [adjust_bboxes], score > 0.7, NMS 0.7, square;
4. O-Net: 48 x 48 crops; landmarks ``(side + 1) * l + corner - 1`` of the R-Net box
   [adjust_landmarks]; score and box as in 3; score > 0.8; NMS 0.7 over the *smaller* box
   ('min'); boxes clipped to ``[0, side - 1]`` [limit_bboxes]; box corners and landmarks
   rounded to whole pixels [to_json].

The package's NMS is not the greedy one: after sorting by score, a box is dropped when any
higher-scored box overlaps it by more than the threshold, even a box that was dropped itself
[nms]; :func:`fast_nms` does the same. Which of several boxes with the same score comes
first decides what NMS keeps, and P-Net's score saturates at 1.0 on faces: rows are sorted
as the package sorts them (:func:`sort_by_score`), image by image.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import DataError, PipelineError
from pipeline.fetch import sha256_file

log = logging.getLogger(__name__)

WEIGHTS_SHA256: dict[str, str] = {
    "pnet": "ea6b0c3e685ebee3165326ad6484acc95f2ef78f1c94fbf40a55704fa989f7b5",
    "rnet": "cb00e6460f3c98b0bfafaba3c0a0ded4bdf6e62cee7174d969e8670d7e757fee",
    "onet": "94f6ea2f4cf985275ee958cdd762d17b6009348a4fb9d8c6be39ba73ffd22ca3",
}
"""SHA-256 of ``mtcnn/assets/weights/<net>.lz4`` in the ``mtcnn==1.0.0`` wheel."""

__all__ = [
    "WEIGHTS_SHA256",
    "MTCNNTorch",
    "ONet",
    "PNet",
    "RNet",
    "area_resize",
    "crop_and_resize",
    "fast_nms",
    "sort_by_score",
    "load_weights",
    "pyramid_scales",
    "weights_folder",
]


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------
def weights_folder() -> Path:
    """``mtcnn/assets/weights`` of the installed ``mtcnn`` wheel (found without importing it,
    which would import TensorFlow)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("the mtcnn package is not installed (pip install mtcnn==1.0.0)")
    return Path(spec.submodule_search_locations[0]) / "assets" / "weights"


def load_weights(net: str, folder: str | Path | None = None) -> list[np.ndarray]:
    """The Keras weight list of ``net`` ('pnet', 'rnet' or 'onet'), checksum verified.

    Raises
    ------
    DataError
        The file is missing or its SHA-256 is not the pinned one (the file is a pickle, so it
        is never unpickled unless it is the wheel's own file).
    """
    import joblib

    path = Path(folder if folder is not None else weights_folder()) / f"{net}.lz4"
    if not path.is_file():
        raise DataError(path, f"MTCNN {net} weights missing; reinstall mtcnn==1.0.0")
    if sha256_file(path) != WEIGHTS_SHA256[net]:
        raise DataError(
            path, f"checksum mismatch for MTCNN {net} weights (not mtcnn==1.0.0's file)"
        )
    return list(joblib.load(path))


def _load_keras(model: nn.Module, arrays: list[np.ndarray]) -> nn.Module:
    """Copy a Keras weight list (layers in definition order: Conv2D kernel [kh, kw, in,
    out] and bias, PReLU alpha, Dense kernel [in, out] and bias) into ``model``'s layers."""
    it = iter(arrays)
    with torch.no_grad():
        for layer in model.children():
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(torch.from_numpy(next(it)).permute(3, 2, 0, 1))
                layer.bias.copy_(torch.from_numpy(next(it)))
            elif isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.from_numpy(next(it)).T)
                layer.bias.copy_(torch.from_numpy(next(it)))
            elif isinstance(layer, nn.PReLU):
                layer.weight.copy_(torch.from_numpy(next(it)).reshape(-1))
    if next(it, None) is not None:
        raise ValueError(f"{type(model).__name__}: more weights than layers")
    return model.eval()


# --------------------------------------------------------------------------------------------
# networks (Keras NHWC 'valid' convs; 'same' max pools pad at the end = ceil_mode here)
# --------------------------------------------------------------------------------------------
def _face_probability(logits: torch.Tensor) -> torch.Tensor:
    """Second entry of the two-class softmax over the last axis: ``1 / (1 + exp(l0 - l1))``.

    Where the face logit is the larger (probability >= 0.5, all that the thresholds keep)
    this is TensorFlow's softmax to the rounding, ``exp(0) / (exp(l0 - l1) + exp(0))``: a
    probability that saturates at 1.0 there saturates here too. Cheaper than a softmax over
    an axis of 2.
    """
    return torch.sigmoid(logits[..., 1] - logits[..., 0])


class PNet(nn.Module):
    """Proposal net, fully convolutional: ``[N, 3, H, W]`` -> box regression ``[N, h, w, 4]``
    and face probability ``[N, h, w]`` per 12 x 12 window (stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        # the two 1 x 1 heads as one matrix product over channels (oneDNN's 1 x 1 convs with
        # 2 and 4 outputs are slow); features [N, h, w, 32] in channels_last order
        heads = (self.conv4_1, self.conv4_2)
        weight = torch.cat([h.weight.flatten(1) for h in heads])
        out = nn.functional.linear(
            x.permute(0, 2, 3, 1), weight, torch.cat([h.bias for h in heads])
        )
        return out[..., :4], _face_probability(out[..., 4:])


class RNet(nn.Module):
    """Refine net: crops ``[K, 3, 24, 24]`` -> regression ``[K, 4]``, probability ``[K]``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.fc4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.fc5_1, self.fc5_2 = nn.Linear(128, 4), nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.fc4(x.permute(0, 3, 2, 1).flatten(1)))  # Keras Permute((2, 1, 3))
        return self.fc5_1(x), _face_probability(self.fc5_2(x))


class ONet(nn.Module):
    """Output net: ``[K, 3, 48, 48]`` -> regression ``[K, 4]``, landmarks ``[K, 10]`` (x1..x5,
    y1..y5 as fractions of the box), probability ``[K]``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.fc5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.fc6_1, self.fc6_2 = nn.Linear(256, 4), nn.Linear(256, 10)
        self.fc6_3 = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.fc5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.fc6_1(x), self.fc6_2(x), _face_probability(self.fc6_3(x))


# --------------------------------------------------------------------------------------------
# TensorFlow's resampling ops
# --------------------------------------------------------------------------------------------
def pyramid_scales(width: int, height: int, min_face_size: float, factor: float) -> np.ndarray:
    """The package's pyramid [build_scale_pyramid], min_size 12."""
    count = round(-((np.log(min(width, height) / 12) / np.log(factor)) + 1))
    return 12 / min_face_size * factor ** np.arange(count)


@lru_cache(maxsize=128)
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """TensorFlow's ResizeArea along one axis as a matrix ``[n_out, n_in]``: output ``o``
    averages the input cells under ``[o, o + 1) * n_in / n_out``, partial cells weighted by
    their covered fraction (float32 arithmetic, as in TensorFlow's kernel)."""
    scale = np.float32(n_in) / np.float32(n_out)
    matrix = np.zeros((n_out, n_in), np.float32)
    for o in range(n_out):
        a, b = np.float32(o) * scale, np.float32(o + 1) * scale
        for i in range(math.floor(a), math.ceil(b)):
            if i < a:
                w = scale if i + 1 > b else np.float32(i + 1) - a
            else:
                w = b - np.float32(i) if i + 1 > b else np.float32(1.0)
            matrix[o, min(n_in - 1, max(0, i))] += w
    return matrix / scale


@lru_cache(maxsize=128)
def _sparse_area_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used for matmul only
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(_area_matrix(n_in, n_out)).to_sparse_csr().to(device)


def area_resize(images: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``tf.image.resize(..., method=AREA)`` of ``[N, H, W, C]`` float images to each of
    ``sizes`` (height, width) -> one ``[N, h, w, C]`` tensor per size.

    Separable: a sparse matrix over rows, then one over columns. Frames are the outer loop,
    so a frame stays in cache while all its pyramid levels are made from it.
    """
    n, h, w, c = images.shape
    dev = images.device
    ops = [(_sparse_area_matrix(h, hs, dev), _sparse_area_matrix(w, ws, dev)) for hs, ws in sizes]
    out = [images.new_empty((n, hs, ws, c)) for hs, ws in sizes]
    for i in range(n):
        frame = images[i].reshape(h, w * c)
        for (hs, ws), (rows, cols), level in zip(sizes, ops, out):
            half = (rows @ frame).view(hs, w, c).transpose(0, 1).reshape(w, hs * c)
            level[i] = (cols @ half).view(ws, hs, c).transpose(0, 1)
    return out


def crop_and_resize(images: torch.Tensor, rows: np.ndarray, size: int) -> torch.Tensor:
    """``tf.image.crop_and_resize`` of the package's boxes (``rows``: image index, x1, y1, x2,
    y2 in pixels, as in [extract_patches]) out of ``images`` ``[N, H, W, C]``
    -> ``[K, size, size, C]``.

    TensorFlow maps a box coordinate ``v`` (here ``pixel / side``) onto ``v * (side - 1)``,
    samples ``size`` points from first to last bilinearly, and writes 0 where a sample
    falls outside the image.
    """
    n, h, w, c = images.shape
    dev = images.device
    flat = images.reshape(n * h * w, c)
    # boxes are float32 in TensorFlow, after the package's float64 division
    box = (rows[:, [2, 1, 4, 3]] / np.array([h, w, h, w])).astype(np.float32)
    ys, y_in = _samples(box[:, 0], box[:, 2], h, size)
    xs, x_in = _samples(box[:, 1], box[:, 3], w, size)
    base = torch.from_numpy(rows[:, 0].astype(np.int64) * h * w)[:, None, None]

    def corner(y: np.ndarray, x: np.ndarray) -> torch.Tensor:  # [k, size, size, C]
        index = torch.from_numpy(y * w)[:, :, None] + torch.from_numpy(x)[:, None, :] + base
        return flat.index_select(0, index.flatten().to(dev)).view(*index.shape, c)

    top_y, left_x = np.floor(ys), np.floor(xs)
    ty, by = (np.clip(v, 0, h - 1).astype(np.int64) for v in (top_y, np.ceil(ys)))
    lx, rx = (np.clip(v, 0, w - 1).astype(np.int64) for v in (left_x, np.ceil(xs)))
    y_lerp = torch.from_numpy(ys - top_y).to(dev)[:, :, None, None]
    x_lerp = torch.from_numpy(xs - left_x).to(dev)[:, None, :, None]
    top_left, top_right = corner(ty, lx), corner(ty, rx)
    top = top_left + (top_right - top_left) * x_lerp
    bottom_left, bottom_right = corner(by, lx), corner(by, rx)
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    inside = torch.from_numpy(y_in[:, :, None] & x_in[:, None, :]).to(dev)
    return (top + (bottom - top) * y_lerp) * inside[..., None]


def _samples(v1: np.ndarray, v2: np.ndarray, side: int, size: int):
    """Sample positions ``[k, size]`` (float32, TensorFlow's arithmetic) and whether each is
    inside ``[0, side - 1]``."""
    step = (v2 - v1) * np.float32(side - 1) / np.float32(size - 1)
    pos = v1[:, None] * np.float32(side - 1) + np.arange(size, dtype=np.float32) * step[:, None]
    return pos, (pos >= 0) & (pos <= side - 1)


# --------------------------------------------------------------------------------------------
# the package's box arithmetic (rows: image index, x1, y1, x2, y2, score[, landmarks], float64)
# --------------------------------------------------------------------------------------------
def sort_by_score(rows: np.ndarray) -> np.ndarray:
    """Rows best score first, ties as the package leaves them [sort_by_scores]: the reverse
    of numpy's default ``argsort`` of the score column.

    Which of several boxes with the same score (P-Net saturates at 1.0 on faces) comes first
    decides which boxes NMS keeps, so the order must be the package's, and each image's rows
    are sorted on their own, as in a call with that image alone.
    """
    return rows[np.argsort(rows[:, 5])[::-1]]


def fast_nms(rows: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """The package's NMS of one image's rows, in the order given (best first) [nms]: a row
    is dropped when an earlier one overlaps it by more than ``threshold`` (IoU, or
    intersection over the smaller area for ``method='min'``), whether or not that one was
    kept itself."""
    x1, y1, x2, y2 = (rows[:, i] for i in range(1, 5))
    area = (x2 - x1) * (y2 - y1)
    iw = np.maximum(0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    ih = np.maximum(0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = iw * ih
    if method == "union":
        denom = area[:, None] + area[None, :] - inter
    elif method == "min":
        denom = np.minimum(area[:, None], area[None, :])
    else:
        raise ValueError(f"NMS method must be 'union' or 'min', not {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        overlaps = np.triu(inter / denom > threshold, k=1)
    return rows[~overlaps.any(axis=0)]


def _nms_per_image(
    rows: np.ndarray, threshold: float, method: str = "union", sort: bool = True
) -> np.ndarray:
    """[smart_nms_from_bboxes]: each image's rows (sorted first if ``sort``) through NMS."""
    if not len(rows):
        return rows
    ids = rows[:, 0]
    parts = [rows[ids == i] for i in np.unique(ids)]
    return np.concatenate(
        [fast_nms(sort_by_score(p) if sort else p, threshold, method) for p in parts]
    )


def _square(rows: np.ndarray) -> np.ndarray:
    """[resize_to_square]: the longer side, about the same centre."""
    rows = rows.copy()
    h, w = rows[:, 4] - rows[:, 2], rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 1] = rows[:, 1] + w * 0.5 - side * 0.5
    rows[:, 2] = rows[:, 2] + h * 0.5 - side * 0.5
    rows[:, 3], rows[:, 4] = rows[:, 1] + side, rows[:, 2] + side
    return rows


def _regress(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[adjust_bboxes]: corners move by the offsets times (side + 1)."""
    rows = rows.copy()
    w, h = rows[:, 3] - rows[:, 1] + 1, rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return rows


# --------------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------------
class MTCNNTorch:
    """The three MTCNN stages in torch on ``device``, batched across frames.

    Parameters
    ----------
    device : str
        Torch device (``cpu``, ``cuda``).
    min_face_size : float
        The package's ``min_face_size`` (the pyramid's first scale is ``12 / min_face_size``).
    thresholds : (float, float, float)
        P-Net, R-Net, O-Net score thresholds (the package's defaults).
    scale_factor : float
        Pyramid step.
    weights : path-like or None
        Folder with ``pnet.lz4``, ``rnet.lz4``, ``onet.lz4``; None = the installed wheel's.
    """

    def __init__(
        self,
        device: str = "cpu",
        min_face_size: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        scale_factor: float = 0.709,
        weights: str | Path | None = None,
    ):
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        # channels_last: oneDNN's convolutions of 3-channel input are several times faster
        self.pnet, self.rnet, self.onet = (
            _load_keras(net(), load_weights(name, weights))
            .to(self.device)
            .to(memory_format=torch.channels_last)
            for name, net in (("pnet", PNet), ("rnet", RNet), ("onet", ONet))
        )

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Faces in equally sized RGB uint8 images ``[H, W, 3]``.

        Returns
        -------
        list of arrays, one per image, rows sorted by score (best first): x1, y1, x2, y2
        (whole pixels, clipped to the image), score, then landmarks x, y of left eye, right
        eye, nose, mouth left, mouth right (whole pixels) -> shape ``[faces, 15]``.
        """
        if not len(images):
            return []
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(list(images))))
        x = batch.to(self.device).float().sub_(127.5).div_(128)  # [N, H, W, 3]
        n, h, w, _ = x.shape
        rows = self._proposals(x)
        if len(rows):
            rows = self._refine(x, rows)
        if len(rows):
            rows = self._output(x, rows)
        return [_finish(rows[rows[:, 0] == i], h, w) for i in range(n)]

    def _proposals(self, x: torch.Tensor) -> np.ndarray:
        """P-Net over the pyramid of the batch; NMS per level, then across levels."""
        _, h, w, _ = x.shape
        scales, sizes = [], []
        for scale in pyramid_scales(w, h, self.min_face_size, self.scale_factor):
            hs, ws = (int(v) for v in (np.asarray([h, w]) * scale).astype(np.int64))
            if min(_pnet_cells(hs), _pnet_cells(ws)) >= 1:  # else no 12 x 12 window fits
                scales.append(scale)
                sizes.append((hs, ws))
        levels = []
        for scale, image in zip(scales, area_resize(x, sizes)):
            reg, prob = self.pnet(_nchw(image))
            b, y, xx = torch.nonzero(prob > self.thresholds[0], as_tuple=True)
            if not len(b):
                continue
            off = reg[b, y, xx].double().cpu().numpy()
            score = prob[b, y, xx].cpu().numpy()
            b, y, xx = (v.cpu().numpy() for v in (b, y, xx))
            rows = np.stack(
                [
                    b,
                    (2 * xx + 1 + off[:, 0] * 11) / scale,
                    (2 * y + 1 + off[:, 1] * 11) / scale,
                    (2 * xx + 12 + off[:, 2] * 11) / scale,
                    (2 * y + 12 + off[:, 3] * 11) / scale,
                    score,
                ],
                axis=1,
            )
            # [generate_bounding_box] sorts each image's windows; NMS keeps that order
            ids = rows[:, 0]
            rows = np.concatenate([sort_by_score(rows[ids == i]) for i in np.unique(ids)])
            levels.append(_nms_per_image(rows, 0.5, sort=False))
        if not levels:
            return np.empty((0, 6))
        return _square(_nms_per_image(np.concatenate(levels), 0.7))

    def _refine(self, x: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """R-Net on 24 x 24 crops of every candidate of the batch."""
        reg, prob = _on_crops(self.rnet, x, rows, 24)
        rows = rows.copy()
        rows[:, 5] = prob
        rows = _regress(rows, reg)
        rows = rows[rows[:, 5] > self.thresholds[1]]
        return _square(_nms_per_image(rows, 0.7))

    def _output(self, x: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """O-Net on 48 x 48 crops: score, box, landmarks; 'min' NMS."""
        reg, marks, prob = _on_crops(self.onet, x, rows, 48)
        w = rows[:, 3:4] - rows[:, 1:2] + 1
        h = rows[:, 4:5] - rows[:, 2:3] + 1
        marks = np.concatenate(
            [w * marks[:, :5] + rows[:, 1:2] - 1, h * marks[:, 5:] + rows[:, 2:3] - 1], axis=1
        )
        rows = rows.copy()
        rows[:, 5] = prob
        rows = np.concatenate([_regress(rows, reg), marks], axis=1)
        rows = rows[rows[:, 5] > self.thresholds[2]]
        return _nms_per_image(rows, 0.7, "min")


CROP_SAMPLES = 1 << 19
"""Crops go through R-/O-Net this many pixels at a time (910 of 24 x 24, 227 of 48 x 48)."""


def _on_crops(net: nn.Module, x: torch.Tensor, rows: np.ndarray, size: int) -> list[np.ndarray]:
    """``net``'s outputs (float64 arrays) on the ``size`` x ``size`` crops of ``rows``."""
    step = max(1, CROP_SAMPLES // (size * size))
    outs = [
        net(_nchw(crop_and_resize(x, rows[i : i + step], size))) for i in range(0, len(rows), step)
    ]
    return [torch.cat(parts).double().cpu().numpy() for parts in zip(*outs)]


def _nchw(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W, C]`` -> the ``[N, C, H, W]`` view the networks take (channels_last)."""
    return images.permute(0, 3, 1, 2)


def _pnet_cells(side: int) -> int:
    """P-Net output cells along an axis of ``side`` pixels."""
    return math.ceil((side - 2) / 2) - 4 if side >= 3 else 0


def _finish(rows: np.ndarray, h: int, w: int) -> np.ndarray:
    """[limit_bboxes] then [to_json]'s rounding: boxes clipped to the image, whole pixels."""
    out = np.empty((len(rows), 15))
    if not len(rows):
        return out
    x1, x2 = (np.clip(rows[:, i], 0, w - 1) for i in (1, 3))
    y1, y2 = (np.clip(rows[:, i], 0, h - 1) for i in (2, 4))
    out[:, :4] = np.round(np.stack([x1, y1, x1 + (x2 - x1), y1 + (y2 - y1)], axis=1))
    out[:, 4] = rows[:, 5]
    marks = np.round(rows[:, 6:16])
    out[:, 5::2], out[:, 6::2] = marks[:, :5], marks[:, 5:]
    return out
