"""VGGish: the official checkpoint format (built here: the weights cannot be downloaded), the
TensorFlow flatten order, seed 002's sequence geometry, and the front end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.embed.audio_features import load_audio_backbone
from pipeline.embed.vggish import (
    EXAMPLE_FRAMES,
    VGGish,
    embed_vggish,
    hertz_to_mel,
    load_vggish,
    log_mel,
    mel_matrix,
)
from pipeline.errors import PipelineError

# torchvggish's vggish-10086976.pth: names and shapes, written out from the format's description
OFFICIAL = {
    "features.0": (64, 1),
    "features.3": (128, 64),
    "features.6": (256, 128),
    "features.8": (256, 256),
    "features.11": (512, 256),
    "features.13": (512, 512),
}
FC = {"embeddings.0": (4096, 12288), "embeddings.2": (4096, 4096), "embeddings.4": (128, 4096)}


def official_checkpoint(path, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (out_c, in_c) in OFFICIAL.items():
        state[f"{name}.weight"] = (
            torch.randn(out_c, in_c, 3, 3, generator=g) * (2 / (9 * in_c)) ** 0.5
        )
        state[f"{name}.bias"] = torch.randn(out_c, generator=g) * 0.01
    for name, (out_f, in_f) in FC.items():
        state[f"{name}.weight"] = torch.randn(out_f, in_f, generator=g) * (2 / in_f) ** 0.5
        state[f"{name}.bias"] = torch.randn(out_f, generator=g) * 0.01
    torch.save(state, path)
    return state


def test_official_checkpoint_loads_and_reads_tensorflow_order(tmp_path):
    state = official_checkpoint(tmp_path / "vggish-10086976.pth")
    model = load_vggish(tmp_path / "vggish-10086976.pth")
    x = torch.randn(3, 1, EXAMPLE_FRAMES, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x)
        feats = model.features(x)  # [B, 512, 6, 4]: channel, time, band
    assert feats.shape == (3, 512, 6, 4) and got.shape == (3, 128)
    # the first FC's 12,288 inputs are (time, band, channel) in row-major order (TensorFlow's)
    w1 = state["embeddings.0.weight"].view(4096, 6, 4, 512)
    h = torch.relu(torch.einsum("bcht,ohtc->bo", feats, w1) + state["embeddings.0.bias"])
    h = torch.relu(h @ state["embeddings.2.weight"].T + state["embeddings.2.bias"])
    want = torch.relu(h @ state["embeddings.4.weight"].T + state["embeddings.4.bias"])
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_checkpoint_errors_name_the_file(tmp_path):
    state = official_checkpoint(tmp_path / "ok.pth")
    del state["embeddings.4.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(PipelineError, match=r"short\.pth.*embeddings\.4\.bias"):
        load_vggish(tmp_path / "short.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match=r"junk\.pth: not a readable VGGish checkpoint"):
        load_vggish(tmp_path / "junk.pth")
    with pytest.raises(PipelineError, match="vggish: weights file None not found"):
        load_audio_backbone("vggish", pretrained_dir=None, weights=None, device="cpu", rate_hz=5)


def test_sequence_geometry_of_seed_002():
    """480 frames x 128 bands -> 30 steps of 128-d, the FC on each step's 8 bands x 512."""
    model = VGGish(n_mels=128, sequence=True).eval()
    assert model.embeddings[0].in_features == 4096
    x = torch.randn(2, 1, 480, 128)
    with torch.no_grad():
        y = model(x)
        y_half = model(x[:, :, :240])
    assert y.shape == (2, 30, 128) and y_half.shape == (2, 15, 128)
    # a step sees its own 16 frames and the convolutions' context (< 4 steps), not the rest
    assert torch.allclose(y[:, :10], y_half[:, :10], atol=1e-5)


def test_mel_filters_are_triangles_in_mel():
    w = mel_matrix(64, 257, 16000)
    assert w.shape == (257, 64) and (w[0] == 0).all() and np.isclose(w.max(), 1.0, atol=0.05)
    bins_mel = hertz_to_mel(np.linspace(0, 8000, 257))
    edges = np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)
    for k in (0, 20, 63):  # a band's weight rises linearly in mel from its lower edge
        inside = (bins_mel > edges[k]) & (bins_mel < edges[k + 1])
        want = (bins_mel[inside] - edges[k]) / (edges[k + 1] - edges[k])
        assert np.allclose(w[inside, k], want)
    assert (w[np.linspace(0, 8000, 257) > 7500] == 0).all()


def test_log_mel_frames_and_a_tone_lands_in_its_band():
    rate = 16000
    t = np.arange(int(2.0 * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    frames = log_mel(tone, rate)
    assert frames.shape == (1 + (len(tone) - 400) // 160, 64)
    centres = np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)[1:-1]
    assert frames.mean(axis=0).argmax() == np.abs(centres - hertz_to_mel(1000)).argmin()
    seq = log_mel(tone, rate, window_s=0.040, hop_s=0.040, n_mels=128)  # seed 002's front end
    assert seq.shape == (1 + (len(tone) - 640) // 640, 128)
    # 44.1 kHz input is resampled to 16 kHz first: the same tone, the same band
    t44 = np.arange(int(2.0 * 44100)) / 44100
    f44 = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t44)).astype(np.float32), 44100)
    assert (
        abs(len(f44) - len(frames)) <= 1 and f44.mean(axis=0).argmax() == frames.mean(0).argmax()
    )


def test_embed_places_examples_at_their_centres(tmp_path):
    official_checkpoint(tmp_path / "v.pth")
    backbone = load_audio_backbone(
        "vggish", pretrained_dir=None, weights=str(tmp_path / "v.pth"), device="cpu", rate_hz=5
    )
    wave = np.random.default_rng(0).standard_normal(int(3.5 * 16000)).astype(np.float32) * 0.1
    t, x = backbone.embed(wave, 16000, 3.5)
    n_frames = 1 + (len(wave) - 400) // 160
    assert x.shape == (n_frames // EXAMPLE_FRAMES, 128) == (3, 128)
    assert np.allclose(t, [0.4875, 1.4475, 2.4075])
    direct, _ = embed_vggish(load_vggish(tmp_path / "v.pth"), wave, 16000, batch_size=1)
    assert np.allclose(x, direct, atol=1e-5)  # batching does not change an example
    assert backbone.dim == 128 and len(backbone.weights_sha256) == 64
