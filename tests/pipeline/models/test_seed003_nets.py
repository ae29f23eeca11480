"""Seed 003's two uni-modal networks: the VGG face model and the raw-audio segment model."""

import numpy as np
import pytest
import torch

from pipeline.models.segment_audio import SegmentAudioNet
from pipeline.models.vgg_faces import VGGFaceNet, augment_faces, grey_faces


def test_vgg_face_net_shapes_feature_size_and_brightness_invariance():
    torch.manual_seed(0)
    net = VGGFaceNet(7, channels=(4, 8, 16)).eval()
    x = torch.rand(3, 1, 48, 48) * 100
    assert net(x).shape == (3, 7)
    assert net.features(x).shape == (3, 16) and net.dim == 16
    # every face is standardised first: brightness and contrast do not change the output
    assert torch.allclose(net(x), net(2.5 * x + 40), atol=1e-4)
    assert torch.allclose(net(x[:, 0]), net(x))  # (B, H, W) works too
    assert len(net.blocks) == 3  # one module per block (frozen as units)


def test_grey_faces_converts_rgb_crops_and_keeps_48px_grey_ones():
    rgb = np.zeros((2, 224, 224, 3), np.uint8)
    rgb[0, :, :112] = (255, 0, 0)  # left half red
    out = grey_faces(rgb)
    assert out.shape == (2, 48, 48) and out.dtype == np.uint8
    assert out[0, :, :20].mean() == pytest.approx(76, abs=1)  # BT.601 weight of red
    assert out[0, :, 30:].max() == 0 and out[1].max() == 0
    grey = np.arange(48 * 48, dtype=np.uint8).reshape(1, 48, 48)
    assert np.array_equal(grey_faces(grey), grey)
    with pytest.raises(ValueError, match="uint8"):
        grey_faces(rgb.astype(np.float32))


def test_augment_faces_flips_and_shifts_within_bounds_and_is_seeded():
    x = torch.zeros(64, 1, 48, 48)
    x[:, :, 20:28, 0:8] = 1.0  # a bright square at the left edge
    a = augment_faces(x, torch.Generator().manual_seed(3))
    b = augment_faces(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    cols = [torch.nonzero(img[0].sum(0)).flatten() for img in a]
    left = sum(int(c.min()) <= 4 for c in cols)  # not flipped (shift <= 4 px)
    right = sum(int(c.max()) >= 43 for c in cols)  # flipped to the right edge
    assert left + right == 64 and 15 < left < 49
    rows = torch.stack([torch.nonzero(img[0].sum(1)).flatten().float().mean() for img in a])
    assert (rows - 23.5).abs().max() <= 4 and rows.std() > 0.5  # shifted up/down by <= 4


def test_augment_faces_rotates_and_zooms_about_the_centre_only_when_asked():
    x = torch.zeros(256, 1, 48, 48)
    x[:, :, 22:26, 8:40] = 1.0  # a centred horizontal bar, 32 x 4 pixels
    plain = augment_faces(x, torch.Generator().manual_seed(3))
    off = augment_faces(x, torch.Generator().manual_seed(3), rotate_deg=0.0, scale=0.0)
    assert torch.equal(plain, off)  # the same draws as before the options existed
    turned = augment_faces(x, torch.Generator().manual_seed(3), rotate_deg=30.0)
    # a bar's height in rows grows with |angle|: 32 * sin(angle) + 4 px, <= 32 * sin 30 + 4
    heights = torch.stack([(img[0].sum(1) > 0.5).sum() for img in turned]).float()
    assert heights.max() > 12 and heights.max() <= 21 and heights.min() <= 6
    mass = turned.sum((1, 2, 3))  # a rotation keeps the bar's area (32 * 4), any shear grows it
    assert (mass - 128).abs().max() < 4, mass
    assert torch.equal(turned, augment_faces(x, torch.Generator().manual_seed(3), rotate_deg=30.0))
    zoomed = augment_faces(x, torch.Generator().manual_seed(3), scale=0.25)
    widths = torch.stack([(img[0].sum(0) > 0.5).sum() for img in zoomed]).float()
    assert widths.min() >= 32 * 0.75 - 2 and widths.max() <= 32 * 1.25 + 2
    assert widths.max() - widths.min() > 8  # zoomed in and out


def test_segment_audio_net_kernels_follow_5ms_at_each_block_rate():
    net = SegmentAudioNet(7)
    kernels = [block[0].kernel_size[0] for block in net.blocks]
    assert kernels == [81, 11, 3]  # 5 ms at 16 kHz, 2 kHz, 250 Hz (odd, at least 3)
    assert [block[0].out_channels for block in net.blocks] == [32, 32, 32]
    assert net.dim == 256 and net.min_samples == 512
    net.eval()
    x = torch.randn(2, 32000)
    assert net(x).shape == (2, 7) and net.features(x).shape == (2, 256)
    # each segment is normalised to zero mean and unit variance: the level does not matter
    assert torch.allclose(net(x), net(0.01 * x + 0.3), atol=1e-4)
    with pytest.raises(ValueError, match="shorter than the pooling"):
        net(torch.randn(1, 100))
