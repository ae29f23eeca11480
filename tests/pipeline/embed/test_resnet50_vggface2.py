"""Tests for pipeline.embed.resnet50_vggface2: official .pkl format, forward, errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.embed.resnet50_vggface2 import (
    VGGFACE2_MEAN_BGR,
    ResNet50VGGFace2,
    embed_faces_resnet,
    load_vggface2_resnet50,
    preprocess,
)


def _official_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 arrays under the names/shapes of ``resnet50_ft_weight.pkl``.

    Written from the published layout (torchvision names, Caffe conversion: no
    ``num_batches_tracked``), independently of the model code.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}

    def conv(name: str, c_out: int, c_in: int, k: int) -> None:
        std = (2.0 / (c_in * k * k)) ** 0.5
        weights[name] = rng.standard_normal((c_out, c_in, k, k), np.float32) * np.float32(std)

    def bn(prefix: str, c: int, gamma: float = 1.0) -> None:
        weights[f"{prefix}.weight"] = (rng.uniform(0.5, 1.0, c) * gamma).astype(np.float32)
        weights[f"{prefix}.bias"] = (rng.standard_normal(c) * 0.1).astype(np.float32)
        weights[f"{prefix}.running_mean"] = (rng.standard_normal(c) * 0.1).astype(np.float32)
        weights[f"{prefix}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    c_in = 64
    for layer, (width, n_blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(n_blocks):
            p = f"layer{layer}.{b}"
            conv(f"{p}.conv1.weight", width, c_in if b == 0 else width * 4, 1)
            bn(f"{p}.bn1", width)
            conv(f"{p}.conv2.weight", width, width, 3)
            bn(f"{p}.bn2", width)
            conv(f"{p}.conv3.weight", width * 4, width, 1)
            bn(f"{p}.bn3", width * 4, gamma=0.2)  # keep the residual sum bounded
            if b == 0:
                conv(f"{p}.downsample.0.weight", width * 4, c_in, 1)
                bn(f"{p}.downsample.1", width * 4)
        c_in = width * 4
    weights["fc.weight"] = rng.standard_normal((8631, 2048), np.float32) * np.float32(0.02)
    weights["fc.bias"] = np.zeros(8631, np.float32)
    return weights


@pytest.fixture(scope="module")
def official_pkl(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """``resnet50_ft_weight.pkl`` look-alike: protocol-2 pickle of name -> ndarray."""
    weights = _official_weights()
    path = tmp_path_factory.mktemp("vggface2") / "resnet50_ft_weight.pkl"
    with open(path, "wb") as fh:
        pickle.dump(weights, fh, protocol=2)
    return path, weights


@pytest.fixture(scope="module")
def loaded(official_pkl) -> ResNet50VGGFace2:
    return load_vggface2_resnet50(official_pkl[0])


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


def test_load_pkl_every_tensor_equals_file(official_pkl, loaded):
    _, weights = official_pkl
    state = loaded.state_dict()
    assert {k for k in state if not k.endswith("num_batches_tracked")} == set(weights)
    for key, value in weights.items():
        assert torch.equal(state[key], torch.from_numpy(value)), key
    assert not loaded.training


def test_forward_shapes_and_eval_determinism(loaded, faces):
    with torch.no_grad():
        emb1, logits = loaded(preprocess(faces))
    assert emb1.shape == (2, 2048) and logits.shape == (2, 8631)
    assert torch.isfinite(logits).all() and (emb1 >= 0).all()
    emb2 = embed_faces_resnet(loaded, faces, batch_size=2)  # same batch -> same numbers
    assert emb2.shape == (2, 2048) and emb2.dtype == np.float32
    np.testing.assert_array_equal(emb2, emb1.numpy())


def test_embed_resizes_other_sizes(loaded):
    small = np.random.default_rng(2).integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    resized = cv2.resize(small[0], (224, 224), interpolation=cv2.INTER_LINEAR)[None]
    np.testing.assert_array_equal(
        embed_faces_resnet(loaded, small, batch_size=1),
        embed_faces_resnet(loaded, resized, batch_size=1),
    )
    with pytest.raises(ValueError):
        embed_faces_resnet(loaded, small.astype(np.float32))


def test_preprocess_is_bgr_minus_caffe_mean():
    face = np.zeros((1, 224, 224, 3), np.uint8)
    face[..., 0], face[..., 1], face[..., 2] = 10, 20, 30  # R, G, B
    x = preprocess(face)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    expected = np.array([30, 20, 10], np.float32) - np.array(VGGFACE2_MEAN_BGR, np.float32)
    np.testing.assert_allclose(x[0, :, 5, 7].numpy(), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        preprocess(face[:, :200])


def test_plain_state_dict_pth_loads(loaded, tmp_path):
    path = tmp_path / "resnet50_ft.pth"
    torch.save(loaded.state_dict(), path)
    again = load_vggface2_resnet50(path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "layer3.2.bn2.running_var"),
        ("shape", "fc.weight"),
        ("unexpected", "fc8.weight"),
        ("not_a_pickle", "not a pickle"),
        ("code_in_pickle", "not allowed"),
        ("not_a_dict", "expected a dict"),
    ],
)
def test_bad_weights_raise_naming_file(official_pkl, tmp_path, case, needle):
    _, weights = official_pkl
    path = tmp_path / f"bad_{case}.pkl"
    if case == "missing":
        _dump(path, {k: v for k, v in weights.items() if k != "layer3.2.bn2.running_var"})
    elif case == "shape":
        _dump(path, {**weights, "fc.weight": np.zeros((1000, 2048), np.float32)})
    elif case == "unexpected":
        _dump(path, {**weights, "fc8.weight": np.zeros(3, np.float32)})
    elif case == "not_a_pickle":
        path.write_text("definitely not a pickle\n")
    elif case == "code_in_pickle":
        _dump(path, {"conv1.weight": os.getcwd})  # a global function: must not be resolved
    else:
        _dump(path, [np.zeros(3, np.float32)])
    with pytest.raises(ValueError) as err:
        load_vggface2_resnet50(path)
    assert path.name in str(err.value)
    assert needle in str(err.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_vggface2_resnet50(tmp_path / "absent.pkl")
