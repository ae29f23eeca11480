"""VGGFace2 ResNet-50 face backbone (Cao et al., 2018) for 2048-d face embeddings.

Re-implements the Caffe ResNet-50 released with VGGFace2 (``resnet50_ft``: pre-trained
on MS-Celeb-1M, fine-tuned on VGGFace2, 8,631 identities) with the parameter names of
the common PyTorch port (``cydonia999/VGGFace2-pytorch``), which are torchvision's
ResNet names.

Official checkpoint format
--------------------------
``resnet50_ft_weight.pkl``: a Python-2 pickle (read with ``encoding='latin1'``) of a
dict ``name -> numpy.ndarray`` (float32) converted from the authors' Caffe model:

* ``conv1.weight`` (64, 3, 7, 7); ``bn1.{weight,bias,running_mean,running_var}`` (64,)
* ``layer{1..4}.{i}.conv{1,2,3}.weight``, ``layer{1..4}.{i}.bn{1,2,3}.*`` with
  ``i`` in 0..2, 0..3, 0..5, 0..2 (Bottleneck counts 3, 4, 6, 3)
* ``layer{1..4}.0.downsample.0.weight`` (1x1 conv) and ``...downsample.1.*`` (BN)
* ``fc.weight`` (8631, 2048), ``fc.bias`` (8631,)

No ``num_batches_tracked`` entries (a Caffe conversion); those are optional here. A plain
PyTorch state dict (``.pth``, e.g. re-saved from this model) with the same names is also
accepted.

Caffe-specific architecture details kept from the original: all convolutions are
bias-free (BN + Scale in Caffe), the stride-2 of each stage sits on the *first 1x1*
convolution of the bottleneck (not the 3x3 as in torchvision), and the stem max-pool uses
no padding with ``ceil_mode=True``. Input: 224x224 BGR images minus the per-channel mean
``(91.4953, 103.8827, 131.0912)`` (from ``resnet50_ft.prototxt``), values in 0-255.

Weights: the Caffe models are described on the VGGFace2 page of the Oxford Visual
Geometry Group (robots.ox.ac.uk, "VGGFace2 dataset"); the ``.pkl`` conversions are linked
from the README of ``cydonia999/VGGFace2-pytorch`` ("Pretrained models": resnet50_ft).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.embed.checkpoints import checked_state_dict

log = logging.getLogger(__name__)

__all__ = [
    "VGGFACE2_MEAN_BGR",
    "INPUT_SIZE_PX",
    "N_IDENTITIES",
    "EMBEDDING_DIM",
    "Bottleneck",
    "ResNet50VGGFace2",
    "preprocess",
    "load_vggface2_resnet50",
    "embed_faces_resnet",
]

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
INPUT_SIZE_PX = 224
N_IDENTITIES = 8631
EMBEDDING_DIM = 2048


class Bottleneck(nn.Module):
    """Caffe-style ResNet bottleneck: 1x1 (strided) -> 3x3 -> 1x1, each with BN.

    Parameters
    ----------
    in_channels : int
        Input channels.
    width : int
        Channels of the inner 1x1 and 3x3 convolutions; the block outputs ``4 * width``.
    stride : int
        Spatial stride, applied by ``conv1`` (the Caffe placement).
    downsample : nn.Module or None
        Projection of the identity branch (1x1 strided conv + BN), or None.
    """

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, 4 * width, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class ResNet50VGGFace2(nn.Module):
    """ResNet-50 of the VGGFace2 Caffe release, with torchvision-style parameter names.

    Parameters
    ----------
    n_classes : int
        Identities of the classifier ``fc`` (8631 for ``resnet50_ft`` / ``_scratch``).

    Notes
    -----
    ``forward`` returns the 2048-d global-average-pooled ``layer4`` output (the feature
    used as face embedding) and the identity logits. Global pooling equals the original
    7x7 average pool for 224x224 inputs and also accepts other sizes.
    """

    def __init__(self, n_classes: int = N_IDENTITIES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        in_channels = 64
        for i, (width, n_blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
        ):
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, width * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(width * 4),
            )
            blocks = [Bottleneck(in_channels, width, stride, downsample)]
            blocks += [Bottleneck(width * 4, width) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_channels = width * 4
        self.fc = nn.Linear(EMBEDDING_DIM, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed and classify faces.

        Parameters
        ----------
        x : (B, 3, 224, 224) float tensor
            BGR images in 0-255 minus ``VGGFACE2_MEAN_BGR`` (see :func:`preprocess`).

        Returns
        -------
        embedding : (B, 2048) tensor
            Global average of the last residual stage (post-ReLU, so non-negative).
        logits : (B, n_classes) tensor
            Identity scores before softmax.
        """
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        embedding = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return embedding, self.fc(embedding)


def preprocess(faces_uint8_rgb: np.ndarray) -> torch.Tensor:
    """Turn RGB face crops into the network input of the VGGFace2 Caffe models.

    Parameters
    ----------
    faces_uint8_rgb : (B, 224, 224, 3) uint8 array
        RGB face crops, 0-255.

    Returns
    -------
    (B, 3, 224, 224) float32 tensor
        Channels in BGR order, each minus ``VGGFACE2_MEAN_BGR``; no scaling to [0, 1].
    """
    faces = np.asarray(faces_uint8_rgb)
    if faces.dtype != np.uint8:
        raise ValueError(f"preprocess expects uint8 faces, got {faces.dtype}")
    if faces.ndim != 4 or faces.shape[1:] != (INPUT_SIZE_PX, INPUT_SIZE_PX, 3):
        raise ValueError(
            f"preprocess expects (B, {INPUT_SIZE_PX}, {INPUT_SIZE_PX}, 3) RGB faces, "
            f"got {faces.shape}"
        )
    bgr = faces[..., ::-1].astype(np.float32) - np.asarray(VGGFACE2_MEAN_BGR, np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)))


# --------------------------------------------------------------------------- loading
_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds dicts of numpy arrays (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> object:
        is_dtype_class = module == "numpy.dtypes" and name.endswith("DType")
        if (module, name) in _PICKLE_ALLOWED or is_dtype_class:
            module = module.replace("numpy.core.", "numpy._core.")  # numpy 1.x pickles
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weight pickle")


def _read_weight_pickle(path: Path) -> object:
    """Read the VGGFace2 ``.pkl`` (Python-2 pickle, ``encoding='latin1'``) safely."""
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a pickle of numpy arrays ({err})") from err


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(
            f"{path}: not a readable PyTorch state dict (torch.load(weights_only=True) "
            f"failed: {err})"
        ) from err


def load_vggface2_resnet50(
    path: str | Path, device: str | torch.device = "cpu"
) -> ResNet50VGGFace2:
    """Load VGGFace2 ResNet-50 weights (``resnet50_ft_weight.pkl`` or a state-dict ``.pth``).

    Parameters
    ----------
    path : str or Path
        ``.pkl``: pickle of ``name -> numpy array`` as distributed with
        ``cydonia999/VGGFace2-pytorch`` (read with ``encoding='latin1'`` by an unpickler
        that only rebuilds numpy arrays). Any other suffix: ``torch.load(weights_only=True)``
        of a plain state dict (or ``{'state_dict': state_dict}``).
    device : str or torch.device
        Device for the returned model.

    Returns
    -------
    ResNet50VGGFace2
        With all tensors from the file, in eval mode on ``device``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read, is not a dict of arrays, or its keys / shapes differ
        from the model (listed). Messages start with the file path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VGGFace2 ResNet-50 weights not found")
    weights = _read_weight_pickle(path) if path.suffix == ".pkl" else _read_torch(path)
    if isinstance(weights, Mapping) and isinstance(weights.get("state_dict"), Mapping):
        weights = weights["state_dict"]
    if not isinstance(weights, Mapping):
        raise ValueError(f"{path}: expected a dict name -> array, found {type(weights).__name__}")
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = ResNet50VGGFace2()
    state = checked_state_dict(model, weights, path, "VGGFace2 ResNet-50")
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device).eval()
    log.info("loaded VGGFace2 ResNet-50 from %s (%d tensors) on %s", path, len(weights), device)
    return model


# --------------------------------------------------------------------------- embedding
def _resize_faces(faces: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 224, 224, 3) uint8 (area when shrinking, else bilinear)."""
    if faces.shape[1:3] == (INPUT_SIZE_PX, INPUT_SIZE_PX):
        return faces
    shrink = faces.shape[1] > INPUT_SIZE_PX or faces.shape[2] > INPUT_SIZE_PX
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    size = (INPUT_SIZE_PX, INPUT_SIZE_PX)
    return np.stack([cv2.resize(f, size, interpolation=interp) for f in faces])


def embed_faces_resnet(
    model: ResNet50VGGFace2,
    faces_uint8: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """2048-d VGGFace2 ResNet-50 embeddings of RGB face crops.

    Parameters
    ----------
    model : ResNet50VGGFace2
        Loaded model; moved to ``device`` and set to eval mode.
    faces_uint8 : (B, H, W, 3) uint8 array
        RGB face crops (0-255); resized to 224x224 with OpenCV when ``H, W != 224``
        (the whole crop is resized, no centre crop).
    batch_size : int
        Faces per forward pass.
    device : str or torch.device
        Where to run. On CUDA the model and inputs use ``channels_last`` and
        ``torch.autocast`` float16; on CPU everything stays float32.

    Returns
    -------
    (B, 2048) float32 array
        Global-average-pooled ``layer4`` features.
    """
    faces = np.asarray(faces_uint8)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(
            f"embed_faces_resnet expects (B, H, W, 3) uint8 RGB faces, got "
            f"{faces.shape} {faces.dtype}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model.to(device, memory_format=memory_format).eval()
    out = np.empty((len(faces), EMBEDDING_DIM), dtype=np.float32)
    with torch.no_grad():
        for lo in range(0, len(faces), batch_size):
            x = preprocess(_resize_faces(faces[lo : lo + batch_size]))
            x = x.to(device, memory_format=memory_format, non_blocking=on_cuda)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=on_cuda):
                emb, _ = model(x)
            out[lo : lo + len(x)] = emb.float().cpu().numpy()
    log.debug("vggface2 resnet50: embedded %d faces on %s", len(faces), device)
    return out
