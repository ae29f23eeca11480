"""Seed 001's audio network: the paper's front ends, attention over feature-map positions,
and learning through the raw-audio trainer."""

from types import SimpleNamespace

import librosa
import numpy as np
import pytest
import torch

from pipeline.models.attention_fbp import AttentionPool
from pipeline.models.spec_attention import SpecAttentionNet, SpectrogramFrontEnd, delta
from tests.pipeline.models.test_raw_audio import _cfg as raw_audio_cfg

SR = 16000


def _normalise(image: np.ndarray) -> np.ndarray:
    """Mean 0, (unbiased) std 1 over the whole image, as the front end does per channel."""
    return (image - image.mean()) / (image.std(ddof=1) + 1e-5)


def _standardise(wave: np.ndarray) -> np.ndarray:
    return (wave - wave.mean()) / (wave.std(ddof=1) + 1e-5)


def test_spectrogram_is_the_papers_hamming_40ms_10ms_200_lowest_bins():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(SR // 2).astype(np.float32)  # 0.5 s
    got = SpectrogramFrontEnd("spectrogram", SR)(torch.from_numpy(wave)[None]).numpy()[0, 0]
    # direct computation: 640-sample symmetric Hamming frames every 160 samples, centred
    # (reflect padding of 320), |rfft|, the 200 lowest bins (0 .. 4975 Hz), log(1 + .)
    x = np.pad(_standardise(wave.astype(np.float64)), 320, mode="reflect")
    frames = np.stack([x[s : s + 640] for s in range(0, len(x) - 640 + 1, 160)])
    mag = np.abs(np.fft.rfft(frames * np.hamming(640), axis=1))[:, :200].T  # [200, T]
    assert got.shape == (200, 1 + len(wave) // 160)
    np.testing.assert_allclose(got, _normalise(np.log1p(mag)), atol=2e-3)


def test_logmel_channels_are_librosa_logmel_and_its_deltas():
    rng = np.random.default_rng(1)
    wave = rng.standard_normal(SR // 2).astype(np.float32)
    got = SpectrogramFrontEnd("logmel", SR)(torch.from_numpy(wave)[None]).numpy()[0]
    mel = librosa.feature.melspectrogram(
        y=_standardise(wave.astype(np.float64)),
        sr=SR,
        n_fft=640,
        hop_length=160,
        window=np.hamming(640),
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
    )
    logmel = np.log(mel + 1e-6)
    d1 = librosa.feature.delta(logmel, width=9, mode="nearest")
    d2 = librosa.feature.delta(d1, width=9, mode="nearest")
    assert got.shape == (3, 64, 1 + len(wave) // 160)
    for c, expected in enumerate((logmel, d1, d2)):
        np.testing.assert_allclose(got[c], _normalise(expected), atol=5e-3)


def test_delta_is_librosas_regression_with_nearest_edges():
    x = np.random.default_rng(2).standard_normal((3, 40)).astype(np.float32)
    for width in (5, 9):
        np.testing.assert_allclose(
            delta(torch.from_numpy(x), width).numpy(),
            librosa.feature.delta(x, width=width, mode="nearest"),
            atol=1e-5,
        )
    with pytest.raises(ValueError, match="odd"):
        delta(torch.from_numpy(x), 4)


def test_attention_pools_the_h_times_w_positions_of_the_last_feature_map():
    torch.manual_seed(0)
    net = SpecAttentionNet(3, channels=(4, 8, 16), attention="relation").eval()
    x = torch.randn(2, 2 * SR)  # 2 s: a 200 x 201 spectrogram, three 2x2 pools -> 25 x 25
    f = net.feature_vectors(x)
    assert f.shape == (2, 25 * 25, 16)
    # the logits are the attention pooling of exactly those vectors, then the linear layer
    pooled = net.pool(f, torch.ones(2, 625, dtype=torch.bool))
    assert pooled.shape == (2, 32)  # relation attention: [f_i : f_s]
    torch.testing.assert_close(net(x), net.head(pooled))
    # moving one position's vector moves the output: every position takes part
    g = f.clone()
    g[:, 624] += 10.0
    assert not torch.allclose(net.pool(g, torch.ones(2, 625, dtype=torch.bool)), pooled)
    assert isinstance(net.pool, AttentionPool) and net.pool.kind == "relation"


def test_spectrogram_needs_10_khz_audio():
    with pytest.raises(ValueError, match="extract_audio.rate_hz"):
        SpecAttentionNet(2, sample_rate=8000)
    SpecAttentionNet(2, front_end="logmel", sample_rate=8000)  # log-mel works at any rate


def _tones(rng, n, f0, f1, seconds=0.5):
    """``n`` windows of a tone at ``f0`` (class 0) and ``n`` at ``f1`` (class 1) in noise."""
    t = np.arange(int(seconds * SR)) / SR
    X, y = [], []
    for label, f in ((0, f0), (1, f1)):
        for _ in range(n):
            phase = rng.uniform(0, 2 * np.pi)
            X.append(np.sin(2 * np.pi * f * t + phase) + 0.3 * rng.standard_normal(len(t)))
            y.append(label)
    return np.asarray(X, np.float32), np.asarray(y)


@pytest.mark.parametrize("front_end", ["spectrogram", "logmel"])
def test_learns_a_separable_set_through_the_raw_audio_trainer(front_end):
    from pipeline.models.audio_cnn_lstm import AudioCNNLSTMClassifier

    rng = np.random.default_rng(3)
    X, y = _tones(rng, 16, 500.0, 2000.0)
    Xv, yv = _tones(rng, 8, 500.0, 2000.0)
    clf = AudioCNNLSTMClassifier(
        net="spec_attention",
        net_params={"front_end": front_end, "channels": [4, 8, 16], "sample_rate": SR},
        epochs=8,
        lr=0.003,
        batch_size=8,
        patience=8,
        random_state=0,
    ).fit(X, y, Xv, yv)
    assert isinstance(clf.module_, SpecAttentionNet)
    assert (clf.predict(Xv) == yv).mean() >= 0.9


def test_fit_raw_audio_trains_and_names_the_spec_attention_model():
    from pipeline.errors import PipelineError
    from pipeline.models.raw_audio import fit_raw_audio

    rng = np.random.default_rng(4)

    def video(split, labels):
        t = np.arange(len(labels) * SR // 5) / SR
        f = np.repeat(np.where(np.array(labels) == 0, 500.0, 2000.0), SR // 5)
        wave = np.sin(2 * np.pi * f * t) + 0.1 * rng.standard_normal(len(t))
        return {
            "wave": wave.astype(np.float32),
            "rate_hz": SR,
            "y": np.array(labels),
            "split": split,
        }

    videos = {f"tr{i}": video("train", [i % 2] * 10) for i in range(8)}
    videos["dev"] = video("dev", [0] * 10 + [1] * 10)
    videos["test"] = video("test", [1] * 10 + [0] * 10)
    hyper = SimpleNamespace(
        front_end="logmel",
        attention="transformer",
        channels=(4, 8, 16),
        dropout=0.1,
        attention_hidden=16,
    )
    cfg = raw_audio_cfg(
        window_s=1.0, epochs=10, lr=0.003, patience=10, spec_masks=1,
        nets={"spec_attention": hyper},
    )  # fmt: skip
    model, scores, report = fit_raw_audio(videos, cfg, 2, 0, 5.0, name="spec_attention")
    assert report["model"] == "spec_attention"
    assert model.net == "spec_attention" and model.net_params["sample_rate"] == SR
    assert model.module_.pool.kind == "transformer"
    assert (scores["test"]["p"].argmax(1) == videos["test"]["y"]).mean() >= 0.8
    videos["tr0"] = {**videos["tr0"], "rate_hz": 8000}
    with pytest.raises(PipelineError, match="different sample rates"):
        fit_raw_audio(videos, cfg, 2, 0, 5.0, name="spec_attention")


def test_va_regression_through_the_spec_attention_network():
    """base.task va: the same network with two tanh outputs, trained on 1 - CCC."""
    from pipeline.metrics import ccc
    from pipeline.models.raw_audio import fit_raw_audio_va

    rng = np.random.default_rng(5)

    def video(split, arousal):  # arousal follows the pitch of a tone; valence is its negative
        arousal = np.repeat(arousal, 5)
        f = np.repeat(600.0 + 1200.0 * arousal, SR // 5)
        phase = 2 * np.pi * np.cumsum(f) / SR
        wave = np.sin(phase) + 0.05 * rng.standard_normal(len(phase))
        va = np.stack([-arousal, arousal], 1).astype(np.float32)
        return {"wave": wave.astype(np.float32), "rate_hz": SR, "va": va, "split": split}

    videos = {f"tr{i}": video("train", rng.uniform(-0.9, 0.9, 8)) for i in range(6)}
    videos["dev"] = video("dev", rng.uniform(-0.9, 0.9, 8))
    videos["test"] = video("test", np.linspace(-0.8, 0.8, 8))
    hyper = SimpleNamespace(
        front_end="logmel", attention="self", channels=(4, 8, 16), dropout=0.0,
        attention_hidden=8,
    )  # fmt: skip
    cfg = SimpleNamespace(
        window_s=0.5, overlap=0.4, epochs=8, lr=0.003, batch_size=8, patience=8,
        oof_folds=0, nets={"spec_attention": hyper},
    )  # fmt: skip
    net, scores, report = fit_raw_audio_va(videos, cfg, 0, 5.0, name="spec_attention")
    assert isinstance(net, SpecAttentionNet) and report["model"] == "spec_attention"
    assert report["history"][0]["val_loss"] == pytest.approx(1 - report["history"][0]["dev_ccc"])
    assert ccc(videos["test"]["va"][:, 1], scores["test"]["va"][:, 1]) > 0.5
