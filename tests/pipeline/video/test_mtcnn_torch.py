"""The torch port of MTCNN against the ``mtcnn`` package it reproduces.

The package (TensorFlow) is the reference: its networks, its resampling ops and its NMS are
compared piece by piece, then whole detections on real CREMA-D frames (measured: the same
boxes and landmarks as the package called frame by frame on every frame), on frames without
a face, and a batch against one call per frame.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from pipeline.data.media import iter_video_frames
from pipeline.errors import DataError
from pipeline.video import mtcnn_torch as mt
from pipeline.video.detectors import MTCNNDetector, MTCNNTorchDetector, box_iou

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EVERY = 5  # CREMA-D frames compared: every 5th of the six clips (78 frames)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread, as the stage's workers have: torch's OpenMP threads stall on a busy
    2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def crema_frames(crema_videos) -> list[np.ndarray]:
    return [rgb for v in crema_videos for _, _, rgb in iter_video_frames(v, every=EVERY)]


@pytest.fixture(scope="module")
def reference(crema_frames):
    """The package's detections, one frame per call (its exact, unbatched behaviour)."""
    det = MTCNNDetector(min_face_px=20)
    return [det.detect([f])[0] for f in crema_frames]


@pytest.fixture(scope="module")
def torch_detector():
    return MTCNNTorchDetector(min_face_px=20)


def _main(dets):
    """Box, landmarks, score of the best face (NaN when none)."""
    if not dets:
        return np.full(4, np.nan), np.full((5, 2), np.nan), np.nan
    d = max(dets, key=lambda d: d.score)
    return d.box, d.landmarks, d.score


def _agreement(ref: list[list], got: list[list]) -> dict[str, float]:
    """Share of frames (where either finds a face) with main-box IoU >= 0.9, found rates, the
    largest landmark distance (px) on those frames, the share of frames with as many faces,
    and the share with exactly the same boxes and landmarks."""
    iou, marks, either = [], [], 0
    for r, g in zip(ref, got):
        if not r and not g:
            continue
        either += 1
        (rb, rl, _), (gb, gl, _) = _main(r), _main(g)
        ok = bool(r) and bool(g) and box_iou(rb, gb)[0, 0] >= 0.9
        iou.append(ok)
        if ok:
            marks.append(float(np.abs(rl - gl).max()))
    return {
        "iou_ge_0.9": float(np.mean(iou)) if either else 1.0,
        "found_ref": float(np.mean([bool(r) for r in ref])),
        "found_got": float(np.mean([bool(g) for g in got])),
        "landmarks_max_px": max(marks, default=0.0),
        "same_count": float(np.mean([len(r) == len(g) for r, g in zip(ref, got)])),
        "exact": float(np.mean([_same(r, g) for r, g in zip(ref, got)])),
    }


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.box, y.box) and np.array_equal(x.landmarks, y.landmarks)
        for x, y in zip(a, b)
    )


# ---------------------------------------------------------------- the pieces, against TF
def test_networks_compute_what_the_packages_keras_networks_compute():
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    rng = np.random.default_rng(0)
    cases = [
        (StagePNet, mt.PNet, "pnet", (2, 37, 51, 3)),
        (StageRNet, mt.RNet, "rnet", (5, 24, 24, 3)),
        (StageONet, mt.ONet, "onet", (5, 48, 48, 3)),
    ]
    for stage, net, name, shape in cases:
        keras = stage().model
        ours = mt._load_keras(net(), mt.load_weights(name))
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        want = [o.numpy() for o in keras(x)]
        want[-1] = want[-1][..., 1]  # the face probability
        with torch.no_grad():
            got = [o.numpy() for o in ours(torch.from_numpy(x).permute(0, 3, 1, 2))]
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=2e-6, err_msg=name)


def test_area_resize_is_tensorflows():
    import tensorflow as tf

    img = np.random.default_rng(1).uniform(-1, 1, (2, 120, 160, 3))
    sizes = [(int(120 * s), int(160 * s)) for s in (0.6, 0.6 * 0.709**3, 0.13)]
    got = mt.area_resize(torch.from_numpy(img).float(), sizes)
    for (h, w), g in zip(sizes, got):
        want = tf.image.resize(img, (h, w), method=tf.image.ResizeMethod.AREA).numpy()
        np.testing.assert_allclose(g.numpy(), want, atol=1e-6)


def test_crop_and_resize_is_tensorflows_inside_and_outside_the_image():
    from mtcnn.utils.images import extract_patches

    img = np.random.default_rng(2).uniform(-1, 1, (2, 90, 120, 3))
    rows = np.array(
        [
            [0, 10.3, 20.7, 80.2, 60.1, 1],  # inside
            [1, -15.5, -3.2, 40.1, 52.3, 1],  # over the top-left corner
            [1, 100.2, 70.5, 130.7, 100.1, 1],  # over the bottom-right corner
            [0, 50, 60, 40, 55, 1],  # x2 < x1: TensorFlow flips the crop
        ]
    )
    for size in (24, 48):
        want = extract_patches(img, rows, (size, size)).numpy()
        got = mt.crop_and_resize(torch.from_numpy(img).float(), rows, size).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_is_the_packages_for_each_image(method):
    """Per image, the package's NMS (ties in its order); in a batch, each image's boxes are
    sorted on their own, as in a call with that image alone (the package's batch mode sorts
    all images' boxes together, which reorders ties and moves boxes)."""
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (300, 2))
    side = rng.uniform(10, 40, (300, 1))
    score = rng.choice([0.7, 0.8, 0.9, 1.0], (300, 1))  # many ties, as P-Net saturates
    rows = np.hstack([rng.integers(0, 3, (300, 1)), xy, xy + side, score]).astype(float)
    alone = [rows[rows[:, 0] == i] for i in range(3)]
    want = [smart_nms_from_bboxes(r, 0.5, method=method, initial_sort=True) for r in alone]
    for r, w in zip(alone, want):
        np.testing.assert_array_equal(mt._nms_per_image(r, 0.5, method), w)
    np.testing.assert_array_equal(mt._nms_per_image(rows, 0.5, method), np.concatenate(want))


def test_weights_are_checked_before_loading(tmp_path):
    for name in mt.WEIGHTS_SHA256:
        shutil.copy(mt.weights_folder() / f"{name}.lz4", tmp_path)
    assert len(mt.load_weights("rnet", tmp_path)) == 16
    data = bytearray((tmp_path / "pnet.lz4").read_bytes())
    data[-1] ^= 1
    (tmp_path / "pnet.lz4").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"pnet\.lz4: checksum mismatch") as err:
        mt.MTCNNTorch(weights=tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "onet.lz4").unlink()
    with pytest.raises(DataError, match=r"onet\.lz4: MTCNN onet weights missing"):
        mt.load_weights("onet", tmp_path)


# ---------------------------------------------------------------- whole detections
@pytest.mark.slow
def test_same_faces_as_the_package_on_real_crema_d_frames(crema_frames, reference, torch_detector):
    got = [
        d
        for i in range(0, len(crema_frames), 8)
        for d in torch_detector.detect(crema_frames[i : i + 8])
    ]
    a = _agreement(reference, got)
    assert a["found_got"] == a["found_ref"] == 1.0  # the actor's face is in every frame
    assert a["iou_ge_0.9"] >= 0.99, a
    assert a["landmarks_max_px"] <= 2, a
    assert a["same_count"] >= 0.99, a
    # measured: 100 % (whole-pixel outputs); a float rounding that flips a tie may move one
    assert a["exact"] >= 0.95, a
    scores = [(_main(r)[2], _main(g)[2]) for r, g in zip(reference, got)]
    np.testing.assert_allclose(*zip(*scores), atol=1e-4)


def test_min_face_px_shrinks_the_frames_as_the_package_backend_does(crema_frames):
    frames = crema_frames[::8]
    ref = MTCNNDetector(min_face_px=40)
    want = [ref.detect([f])[0] for f in frames]
    got = MTCNNTorchDetector(min_face_px=40).detect(frames)
    a = _agreement(want, got)
    assert a["found_got"] == a["found_ref"] == 1.0
    assert a["iou_ge_0.9"] == 1.0 and a["landmarks_max_px"] <= 2, a


def test_no_face_in_a_synthetic_video(tmp_path, make_video, torch_detector):
    """A moving gradient and sensor-like noise: P-Net proposes windows in the noise, and
    R-/O-Net must turn them all down, as the package does."""
    path = make_video(tmp_path / "noface.mp4", n_frames=12, fps=25.0, size=(160, 120))
    frames = [rgb for _, _, rgb in iter_video_frames(path)]
    rng = np.random.default_rng(4)
    frames += [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    ref = MTCNNDetector(min_face_px=20)
    want = [ref.detect([f])[0] for f in frames]
    got = torch_detector.detect(frames)
    assert len(got) == len(frames)
    assert not any(want) and not any(got)
    x = torch.from_numpy(np.stack(frames[-4:])).float().sub(127.5).div(128)
    with torch.inference_mode():
        assert len(torch_detector._net._proposals(x)) > 0  # the noise reached R-Net


def test_a_batch_gives_what_one_call_per_frame_gives(crema_frames, torch_detector):
    blank = np.full_like(crema_frames[0], 90)
    frames = [*crema_frames[:: len(crema_frames) // 7][:7], blank]  # every clip, and no face
    batch = torch_detector.detect(frames)
    single = [torch_detector.detect([f])[0] for f in frames]
    assert [len(b) for b in batch] == [len(s) for s in single] and not batch[-1]
    assert all(_same(b, s) for b, s in zip(batch, single))
    scores = [(d.score, e.score) for b, s in zip(batch, single) for d, e in zip(b, s)]
    np.testing.assert_allclose(*zip(*scores), atol=1e-6)


@pytest.mark.gpu
def test_cuda_finds_the_cpu_faces(crema_frames, torch_detector):
    frames = crema_frames[::4]
    cpu = torch_detector.detect(frames)
    cuda = MTCNNTorchDetector(min_face_px=20, device="cuda").detect(frames)
    a = _agreement(cpu, cuda)
    assert a["found_got"] == a["found_ref"] and a["iou_ge_0.9"] >= 0.99, a
    assert a["landmarks_max_px"] <= 2, a
