"""The data path, training and scoring shared by the fusion networks (fusion_net)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.models.fusion_net import (
    NETS,
    Norm,
    TrainedFusionNet,
    fit_fusion_net,
    fit_norm,
    grid_embeddings,
    video_windows,
    window_spans,
)

HYPER = dict(channels=8, kernels=[1, 3], pool=3, lstm_hidden=16, lstm_layers=1, dropout=0.0)
CFG = SimpleNamespace(
    seq_len=9, hop=3, epochs=4, lr=0.01, batch_size=8, patience=3, class_weight_r=0.47
)


def test_every_net_has_the_shared_interface_and_a_params_entry():
    """Every net is built from its params.yaml entry (the stage's call) and maps the packed
    layout to one output row per window."""
    from pathlib import Path

    from pipeline.params import load_params

    nets = load_params("fit_fusion_net", Path(__file__).parents[3] / "params.yaml").nets
    assert set(nets) == set(NETS)
    for name, cls in NETS.items():
        net = cls(3, 2, 4, **nets[name].model_dump()).eval()
        assert net(torch.zeros(2, 9, 3 + 1 + 2 + 1)).shape == (2, 4), name


def test_window_spans_cover_the_grid_with_an_end_aligned_last_window():
    starts, ends = window_spans(10, 4, 3)
    assert starts.tolist() == [0, 3, 6] and ends.tolist() == [4, 7, 10]
    starts, ends = window_spans(11, 4, 3)
    assert starts.tolist() == [0, 3, 6, 7] and ends.tolist() == [4, 7, 10, 11]
    assert [a.tolist() for a in window_spans(3, 4, 3)] == [[0], [3]]  # short: one window
    assert [a.tolist() for a in window_spans(0, 4, 3)] == [[], []]


def test_windows_of_a_hand_made_video_pair_match_a_direct_computation():
    # faces at 10 Hz (two rows per 5 Hz bin), some rows without a face; audio at 5 Hz, 6 bins
    # of 7 (the audio ends early); a grid of n = 7 bins
    face = {
        "t": np.arange(14) / 10 + 0.01,
        "x": np.arange(28, dtype=np.float32).reshape(14, 2),
        "valid": np.array([1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1], bool),
    }
    audio = {
        "t": np.arange(6) / 5 + 0.1,
        "x": np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]], np.float32),
        "valid": np.array([1, 1, 1, 0, 1, 1], bool),
    }
    n = 7
    v, v_ok = grid_embeddings(face, n, 5.0, 2)
    a, a_ok = grid_embeddings(audio, n, 5.0, 1)
    # bin b holds the mean of the valid rows 2b, 2b + 1
    for b in range(n):
        rows = [r for r in (2 * b, 2 * b + 1) if face["valid"][r]]
        assert v_ok[b] == bool(rows)
        if rows:
            np.testing.assert_allclose(v[b], face["x"][rows].mean(axis=0))
    assert a_ok.tolist() == [True, True, True, False, True, True, False]

    f32 = np.float32
    norm = Norm(
        np.array([1, 2], f32), np.array([2, 4], f32), np.array([3], f32), np.array([0.5], f32)
    )
    w = video_windows(v, v_ok, a, a_ok, 4, 2, norm)
    assert w["start"].tolist() == [0, 2, 3] and w["end"].tolist() == [4, 6, 7]
    assert w["x"].shape == (3, 4, 2 + 1 + 1 + 1)
    for i, s in enumerate(w["start"]):
        for j in range(4):
            b = s + j
            face_cols = (v[b] - [1.0, 2.0]) / [2.0, 4.0] if v_ok[b] else [0.0, 0.0]
            audio_col = (a[b, 0] - 3.0) / 0.5 if a_ok[b] else 0.0
            expected = [*face_cols, float(v_ok[b]), audio_col, float(a_ok[b])]
            np.testing.assert_allclose(w["x"][i, j], expected, rtol=1e-6)
    assert w["n_valid"].tolist() == [int((v_ok | a_ok)[s : s + 4].sum()) for s in (0, 2, 3)]

    short = video_windows(v[:2], v_ok[:2], a[:2], a_ok[:2], 4, 2, norm)  # padded, invalid
    assert short["end"].tolist() == [2] and short["x"].shape == (1, 4, 5)
    assert (short["x"][0, 2:] == 0).all()


def test_norm_uses_only_valid_bins():
    v = np.array([[1.0], [3.0], [100.0]], np.float32)
    a = np.array([[2.0, 5.0], [2.0, 7.0], [-50.0, 0.0]], np.float32)
    norm = fit_norm([(v, np.array([True, True, False]), a, np.array([True, True, False]))])
    np.testing.assert_allclose(norm.mean_v, [2.0])
    np.testing.assert_allclose(norm.std_v, [1.0])
    np.testing.assert_allclose(norm.mean_a, [2.0, 6.0])
    np.testing.assert_allclose(norm.std_a, [1.0, 1.0])  # a constant column: std 1, not 0


# a tiny dataset: 3 classes, face embedding says the class, audio a weaker copy of it
def _video(rng, label, n=30, face=True, audio=True):
    centre = np.eye(3)[label] * 2
    t = np.arange(n) / 5 + 0.1
    y = np.full(n, label, np.int64)
    y[:2] = -1  # unlabelled bins
    return {
        "face": {
            "t": t,
            "x": (centre + rng.normal(0, 0.4, (n, 3))).astype(np.float32),
            "valid": rng.random(n) > 0.2,
        }
        if face
        else None,
        "audio": {
            "t": t,
            "x": (centre[:2] + rng.normal(0, 0.8, (n, 2))).astype(np.float32),
            "valid": np.ones(n, bool),
        }
        if audio
        else None,
        "y": y,
    }


def _videos(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, copies in (("train", 3), ("dev", 1), ("test", 1)):
        for c in range(copies):
            for label in range(3):
                out[f"{split}{c}_{label}"] = {**_video(rng, label), "split": split}
    out["test_noaudio"] = {**_video(rng, 1, n=20, audio=False), "split": "test"}
    out["test_nothing"] = {**_video(rng, 2, n=12, face=False, audio=False), "split": "test"}
    return out


def _fit(videos, seed=13, task="expr"):
    return fit_fusion_net(
        "conv_lstm",
        HYPER,
        videos,
        CFG,
        dims=(3, 2),
        task=task,
        n_classes=3,
        seed=seed,
        rate_hz=5.0,
    )


@pytest.fixture(scope="module")
def fitted():
    return _fit(_videos())


def test_scores_every_dev_test_video_on_its_grid(fitted):
    net, scores, report = fitted
    videos = _videos()
    assert sorted(scores) == sorted(v for v, g in videos.items() if g["split"] != "train")
    for vid, sc in scores.items():
        n = len(videos[vid]["y"])
        assert sc["p"].shape == (n, 3) and sc["covered"].shape == (n,)
        np.testing.assert_allclose(sc["p"].sum(axis=1), 1.0, atol=1e-5)
    # training windows: 9 videos x 8 windows (30 bins, 9-bin windows every 3 bins)
    assert report["train_windows"] == 9 * len(window_spans(30, 9, 3)[0])
    assert report["class_counts"] == [24, 24, 24]
    assert len(report["history"]) >= 1 and {"train_loss", "val_loss"} <= set(report["history"][0])
    assert "cpu" not in json.dumps(report)  # no timings in outputs: the same bytes every run


def test_a_video_without_audio_gets_invalid_audio_bins_and_still_gets_scores(fitted):
    net, scores, report = fitted
    assert scores["test_noaudio"]["covered"].all()
    assert "test_noaudio" in report["videos_without_audio"]
    # no modality at all: every bin is the training prior, not covered
    assert not scores["test_nothing"]["covered"].any()
    np.testing.assert_allclose(scores["test_nothing"]["p"], 1 / 3, atol=1e-6)
    # the audio-less video's windows carry audio flags 0 and zero audio columns
    g = _videos()["test_noaudio"]
    v, v_ok = grid_embeddings(g["face"], 20, 5.0, 3)
    a, a_ok = grid_embeddings(None, 20, 5.0, 2)
    assert not a_ok.any() and (a == 0).all()
    w = video_windows(v, v_ok, a, a_ok, 9, 3, net.norm)
    assert (w["x"][..., 4:] == 0).all()
    for i, s in enumerate(w["start"]):
        np.testing.assert_array_equal(w["x"][i, :, 3], v_ok[s : s + 9])


def _accuracy(scores, videos) -> float:
    """Mean per-video accuracy over labelled bins of the videos with any covered bin."""
    return np.mean(
        [
            (sc["p"].argmax(1) == videos[v]["y"])[videos[v]["y"] >= 0].mean()
            for v, sc in scores.items()
            if sc["covered"].any()
        ]
    )


def test_the_trained_net_learns_the_tiny_set(fitted):
    _, scores, _ = fitted
    assert _accuracy(scores, _videos()) > 0.8


def test_same_seed_same_scores_and_bytes_other_seed_differs(fitted, tmp_path):
    net, scores, _ = fitted
    torch.manual_seed(999)  # the caller's global torch RNG must not matter
    torch.rand(5)
    net2, scores2, _ = _fit(_videos())
    for vid in scores:
        np.testing.assert_array_equal(scores[vid]["p"], scores2[vid]["p"])
    net.save(tmp_path / "a.pt")
    net2.save(tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    _, scores3, _ = _fit(_videos(), seed=14)
    assert not np.array_equal(scores["test0_1"]["p"], scores3["test0_1"]["p"])


def test_a_saved_net_scores_a_video_as_training_did(fitted, tmp_path):
    net, scores, report = fitted
    net.save(tmp_path / "model.pt")
    loaded = TrainedFusionNet.load(tmp_path / "model.pt")
    g = _videos()["test_noaudio"]
    prior = np.asarray(report["class_counts"], np.float32) / sum(report["class_counts"])
    values, covered = loaded.video_scores(g["face"], g["audio"], len(g["y"]), prior)
    np.testing.assert_allclose(values, scores["test_noaudio"]["p"], atol=1e-6)
    np.testing.assert_array_equal(covered, scores["test_noaudio"]["covered"])


def test_valence_arousal_trains_on_ccc_and_writes_values_in_range():
    videos = _videos()
    for g in videos.values():  # valence/arousal from the class, NaN where unlabelled
        va = np.array([[-0.5, 0.5], [0.0, 0.0], [0.6, -0.3]])[np.maximum(g["y"], 0)]
        g["va"] = np.where((g["y"] >= 0)[:, None], va, np.nan).astype(np.float32)
        del g["y"]
    net, scores, report = _fit(videos, task="va")
    assert net.n_out == 2 and len(report["train_mean"]) == 2
    for sc in scores.values():
        assert sc["va"].shape[1] == 2 and (np.abs(sc["va"]) <= 1).all()
    np.testing.assert_allclose(scores["test_nothing"]["va"], [report["train_mean"]] * 12)
    assert report["history"][0]["val_loss"] is not None


def test_window_labels_are_the_majority_of_labelled_bins():
    rng = np.random.default_rng(0)
    labels = {
        "a": [0, 0, 0, 1, 1, 1, 1, 1, -1, -1],  # windows [0, 4) -> 0, [3, 7) -> 1, [6, 10) -> 1
        "b": [2] * 10,  # 2, 2, 2
        "c": [-1] * 6 + [0] * 4,  # unlabelled window dropped, then 0, 0
    }
    videos = {}
    for vid, y in labels.items():
        g = _video(rng, 0, n=10)
        videos[vid] = {**g, "y": np.array(y), "split": "train"}
    videos["dev"] = {**_video(rng, 1, n=10), "split": "dev"}
    cfg = SimpleNamespace(**{**vars(CFG), "seq_len": 4, "hop": 3, "epochs": 1})
    _, _, report = fit_fusion_net(
        "conv_lstm",
        {**HYPER, "pool": 2},
        videos,
        cfg,
        dims=(3, 2),
        task="expr",
        n_classes=3,
        seed=0,
        rate_hz=5.0,
    )
    assert report["class_counts"] == [3, 2, 3] and report["train_windows"] == 8


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(NETS))
def test_each_net_trains_on_cuda_and_scores_on_the_cpu(name):
    """``base.device: cuda`` path of ``fit_fusion_net``: params.yaml's network, trained on the
    GPU, handed back on the CPU (scores and checkpoints are made there), learning the set."""
    from pathlib import Path

    from pipeline.params import load_params

    hyper = load_params("fit_fusion_net", Path(__file__).parents[3] / "params.yaml").nets[name]
    videos = _videos()
    net, scores, report = fit_fusion_net(
        name,
        hyper.model_dump(),
        videos,
        CFG,
        dims=(3, 2),
        task="expr",
        n_classes=3,
        seed=13,
        rate_hz=5.0,
        device="cuda",
    )
    assert all(p.device.type == "cpu" for p in net.module.parameters())
    assert _accuracy(scores, videos) > 0.8, name
