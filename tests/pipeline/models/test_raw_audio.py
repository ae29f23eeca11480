"""Raw-audio model 4: window spans and labels, training and scores on the 5 Hz grid."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.models.raw_audio import fit_raw_audio, labelled_windows, net_keywords

SR = 8000


def _cfg(**changes) -> SimpleNamespace:
    """fit_raw_audio params for small tests: no augmentation, no out-of-fold scores."""
    base = dict(
        window_s=0.5,
        overlap=0.4,
        epochs=1,
        lr=0.001,
        batch_size=8,
        patience=2,
        class_weight_r=0.34,
        augment=False,
        spec_masks=0,
        cosine=False,
        ema=None,
        select="loss",
        oof_folds=0,
        oof_group="video",
        nets={"cnn_lstm_raw": SimpleNamespace(pretrained=False, filterbank="gabor")},
    )
    return SimpleNamespace(**{**base, **changes})


def test_window_spans_and_majority_labels():
    y = np.array([0] * 10 + [1] * 12 + [-1] * 3)  # 5 s at 5 Hz
    w = labelled_windows(
        np.zeros(5 * SR, np.float32), SR, y, 5.0, window_s=2.0, overlap=0.4, n_classes=2
    )
    # hop 1.2 s: windows start at 0, 1.2, 2.4, 3.6 s -> bins [0,10), [6,16), [12,22), [18,25)
    assert w["start"].tolist() == [0, 6, 12, 18] and w["end"].tolist() == [10, 16, 22, 25]
    # [6,16) holds four bins of class 0 and six of class 1; [18,25) ends in unannotated bins
    assert w["y"].tolist() == [0, 1, 1, 1] and w["x"].shape == (4, 2 * SR)


def _tone_video(rng, split, labels, speaker=None):
    """Class 0 a 300 Hz tone, class 1 a 1.2 kHz tone, one 5 Hz label per 0.2 s."""
    t = np.arange(len(labels) * SR // 5) / SR
    f = np.repeat(np.where(np.array(labels) == 0, 300.0, 1200.0), SR // 5)
    return {
        "wave": (0.5 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t))).astype(
            np.float32
        ),
        "rate_hz": SR,
        "y": np.array(labels, np.int8),
        "split": split,
        "speaker": speaker,
    }


def test_learns_tones_and_scores_every_dev_bin():
    rng = np.random.default_rng(0)
    video = lambda split, labels: _tone_video(rng, split, labels)  # noqa: E731
    videos = {f"tr{i}": video("train", [i % 2] * 10 + [(i + 1) % 2] * 10) for i in range(6)}
    videos["dev"] = video("dev", [0] * 10 + [1] * 10)
    videos["test"] = video("test", [1] * 10 + [0] * 10)
    videos["silent"] = {"wave": None, "rate_hz": 0, "y": np.zeros(8, np.int8), "split": "test"}
    cfg = _cfg(  # the params.yaml training recipe
        epochs=12, lr=0.003, patience=12, augment=True, spec_masks=2, ema=0.99
    )
    _, scores, report = fit_raw_audio(videos, cfg, 2, seed=0, rate_hz=5.0)
    assert sorted(scores) == ["dev", "silent", "test"] and report["missing_classes"] == []
    assert scores["dev"]["p"].shape == (20, 2) and scores["dev"]["covered"].all()
    assert not scores["silent"]["covered"].any()  # no audio: training prior
    np.testing.assert_allclose(scores["silent"]["p"][0], [0.5, 0.5], atol=0.05)
    acc = (scores["test"]["p"].argmax(1) == videos["test"]["y"]).mean()
    assert acc >= 0.8, acc


def test_class_missing_from_training_but_present_in_dev():
    rng = np.random.default_rng(1)
    wave = lambda n: (0.1 * rng.standard_normal(n * SR // 5)).astype(np.float32)  # noqa: E731
    videos = {
        "tr": {
            "wave": wave(20),
            "rate_hz": SR,
            "y": np.array([0] * 10 + [1] * 10, np.int8),
            "split": "train",
        },
        "dev": {"wave": wave(20), "rate_hz": SR, "y": np.array([2] * 20, np.int8), "split": "dev"},
    }
    cfg = _cfg()
    _, scores, report = fit_raw_audio(videos, cfg, 3, seed=0, rate_hz=5.0)
    assert report["missing_classes"] == [2] and (scores["dev"]["p"][:, 2] == 0).all()


def test_va_regression_learns_loudness_to_arousal():
    from pipeline.models.raw_audio import fit_raw_audio_va

    rng = np.random.default_rng(2)

    def video(split, arousal):  # arousal follows the loudness of a tone; valence is its negative
        gain = np.repeat((np.asarray(arousal) + 1.1) / 2, SR // 5)
        t = np.arange(len(gain)) / SR
        wave = (gain * np.sin(2 * np.pi * 400 * t) + 0.01 * rng.standard_normal(len(t))).astype(
            np.float32
        )
        va = np.stack([-np.asarray(arousal), np.asarray(arousal)], 1).astype(np.float32)
        return {"wave": wave, "rate_hz": SR, "va": va, "split": split}

    levels = lambda seq: np.repeat(seq, 5)  # noqa: E731
    videos = {f"tr{i}": video("train", levels(rng.uniform(-0.9, 0.9, 8))) for i in range(6)}
    videos["dev"] = video("dev", levels(rng.uniform(-0.9, 0.9, 8)))
    videos["test"] = video("test", levels(np.linspace(-0.8, 0.8, 8)))
    cfg = SimpleNamespace(
        window_s=0.5,
        overlap=0.4,
        epochs=25,
        lr=0.001,
        batch_size=8,
        patience=25,
        oof_folds=0,
        # every window is scaled to unit variance, so the loudness shows only as the SNR
        # against the fixed noise floor: random broadband kernels see it, narrow Gabor bands
        # (each normalised over time) do not. This test is about the va path, not the layer.
        nets={"cnn_lstm_raw": SimpleNamespace(pretrained=False, filterbank="learned")},
    )
    _, scores, report = fit_raw_audio_va(videos, cfg, seed=0, rate_hz=5.0)
    assert report["task"] == "va" and scores["test"]["va"].shape == (40, 2)
    assert "out_of_fold" not in report and not any(v.startswith("tr") for v in scores)
    from pipeline.metrics import ccc

    assert ccc(videos["test"]["va"][:, 1], scores["test"]["va"][:, 1]) > 0.5


def test_out_of_fold_train_scores_hold_each_speaker_out():
    rng = np.random.default_rng(3)
    videos = {
        f"tr{i}": _tone_video(rng, "train", [i % 2] * 5 + [(i + 1) % 2] * 5, f"s{i // 2}")
        for i in range(6)
    }
    videos["dev"] = _tone_video(rng, "dev", [0] * 5 + [1] * 5, "d")
    cfg = _cfg(epochs=2, lr=0.003, oof_folds=4, oof_group="speaker")
    _, scores, report = fit_raw_audio(videos, cfg, 2, seed=0, rate_hz=5.0)
    assert sorted(scores) == ["dev"] + [f"tr{i}" for i in range(6)]
    assert report["out_of_fold"]["folds"] == 3  # three train speakers
    assert sorted(map(tuple, report["out_of_fold"]["held_out"])) == [("s0",), ("s1",), ("s2",)]
    # Speaker s2's scores are those of the network trained without s2.
    without = {v: g for v, g in videos.items() if v not in ("tr4", "tr5")}
    without |= {v: {**videos[v], "split": "test"} for v in ("tr4", "tr5")}
    _, expected, _ = fit_raw_audio(without, _cfg(epochs=2, lr=0.003), 2, 0, 5.0)
    for vid in ("tr4", "tr5"):
        np.testing.assert_allclose(scores[vid]["p"], expected[vid]["p"], atol=1e-6)


def test_out_of_fold_va_scores_hold_each_speaker_out():
    from pipeline.models.raw_audio import fit_raw_audio_va

    rng = np.random.default_rng(5)
    videos = {}
    for i, split in enumerate(["train"] * 4 + ["dev"]):
        v = _tone_video(rng, split, [0] * 5 + [1] * 5, f"s{i // 2}")
        videos[f"v{i}"] = {**v, "va": np.tile([0.2, -0.3], (10, 1)).astype(np.float32)}
    cfg = SimpleNamespace(
        window_s=0.5,
        overlap=0.4,
        epochs=1,
        lr=0.001,
        batch_size=8,
        patience=1,
        oof_folds=2,
        oof_group="speaker",
        nets=_cfg().nets,
    )
    _, scores, report = fit_raw_audio_va(videos, cfg, seed=0, rate_hz=5.0)
    assert sorted(scores) == ["v0", "v1", "v2", "v3", "v4"]
    assert sorted(map(tuple, report["out_of_fold"]["held_out"])) == [("s0",), ("s1",)]
    without = {v: g for v, g in videos.items() if v not in ("v0", "v1")}
    without |= {v: {**videos[v], "split": "test"} for v in ("v0", "v1")}
    _, expected, _ = fit_raw_audio_va(
        without, SimpleNamespace(**{**vars(cfg), "oof_folds": 0}), 0, 5.0
    )
    for vid in ("v0", "v1"):
        np.testing.assert_allclose(scores[vid]["va"], expected[vid]["va"], atol=1e-6)


def test_cnn_lstm_raw_gets_its_filterbank_and_the_audio_rate():
    """``nets.cnn_lstm_raw`` reaches AudioCNNLSTM (filterbank, the videos' sample rate for the
    Gabor centres); ``pretrained`` chooses the start and is not a network keyword."""
    videos = {"a": {"wave": np.zeros(SR, np.float32), "rate_hz": SR}, "b": {"wave": None}}
    kw = net_keywords("cnn_lstm_raw", _cfg(), videos)
    assert kw == {
        "net": "cnn_lstm",
        "net_params": {"filterbank": "gabor", "sample_rate": SR},
        "init": None,
    }
    learned = _cfg(nets={"cnn_lstm_raw": SimpleNamespace(pretrained=False, filterbank="learned")})
    kw = net_keywords("cnn_lstm_raw", learned, videos)
    from pipeline.models.audio_cnn_lstm import build_raw_net

    net = build_raw_net(kw["net"], 3, kw["net_params"])
    assert net.filterbank.weight.shape[0] == 40 and not net.complex_filters
    net = build_raw_net("cnn_lstm", 3, {"filterbank": "gabor", "sample_rate": SR})
    assert net.filterbank.weight.shape[0] == 80 and net.init_kwargs["sample_rate"] == SR


@pytest.mark.gpu
def test_learns_tones_on_cuda():
    rng = np.random.default_rng(0)
    videos = {
        f"tr{i}": _tone_video(rng, "train", [i % 2] * 10 + [(i + 1) % 2] * 10) for i in range(6)
    }
    videos["test"] = _tone_video(rng, "test", [1] * 10 + [0] * 10)
    cfg = _cfg(epochs=12, lr=0.003, patience=12, augment=True, spec_masks=2, ema=0.99)
    _, scores, _ = fit_raw_audio(videos, cfg, 2, seed=0, rate_hz=5.0, device="cuda")
    acc = (scores["test"]["p"].argmax(1) == videos["test"]["y"]).mean()
    assert acc >= 0.8, acc
