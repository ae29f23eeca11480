"""Fitting on window features and scores on the 5 Hz grid: shapes, coverage, missing classes."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.models.fitting import fit_and_score, full_proba

OFF = {"oof_folds": 0, "oof_group": "video"}  # no out-of-fold train scores
SVM = SimpleNamespace(
    C=3.0, kernel="poly", gamma=0.1, degree=3, class_weight_r=0.47, max_train=None, **OFF
)
KELM = SimpleNamespace(
    C=10.0,
    kernel="rbf",
    gamma="scale",
    class_weight="log",
    class_weight_r=0.47,
    approximation=None,
    n_components=100,
    max_train=None,
    **OFF,
)
LSTM = SimpleNamespace(
    hidden=16,
    layers=1,
    dropout=0.0,
    epochs=15,
    lr=0.01,
    batch_size=4,
    patience=5,
    seq_len=4,
    class_weight_r=0.47,
    **OFF,
)


def _videos(rng, classes_in_train=(0, 1, 2), n_videos=6, n_win=12):
    """Windows whose features carry their class (class k -> mean k on every dimension)."""
    vids = {}
    for i in range(n_videos):
        split = "train" if i < n_videos - 2 else ("dev" if i == n_videos - 2 else "test")
        pool = classes_in_train if split == "train" else (0, 1, 2)
        y = rng.choice(pool, n_win).astype(np.int8)
        x = (y[:, None] * 2.0 + rng.normal(0, 0.3, (n_win, 4))).astype(np.float32)
        starts = np.arange(n_win) * 10
        valid = np.ones(n_win, bool)
        valid[-1] = False  # a window with too few valid frames
        vids[f"v{i}"] = {
            "x": x,
            "y": y,
            "valid": valid,
            "start": starts.astype(np.int32),
            "end": (starts + 20).astype(np.int32),
            "t": starts / 5.0 + 2,
            "attrs": {"split": split, "n_grid": int(starts[-1] + 20 + 3)},
        }
    return vids


@pytest.mark.parametrize("name,cfg", [("svm", SVM), ("kelm", KELM), ("lstm", LSTM)])
def test_scores_on_the_grid_and_accuracy(name, cfg):
    vids = _videos(np.random.default_rng(0))
    _, scores, report = fit_and_score(name, cfg, vids, 4, seed=0)
    assert sorted(scores) == ["v4", "v5"] and report["missing_classes"] == [3]
    for vid, sc in scores.items():
        g = vids[vid]
        assert sc["p"].shape == (g["attrs"]["n_grid"], 4)
        np.testing.assert_allclose(sc["p"].sum(1), 1, atol=1e-5)
        assert (sc["p"][:, 3] == 0).all()  # never-seen class: probability 0
        # bins covered only by the invalid last window, and the tail: prior, covered False
        assert not sc["covered"][-3:].any() and sc["covered"][:100].all()
        # windows are class-separable: each bin of the first half of valid window w is
        # covered by windows w - 1 and w only, so it must be predicted as one of their labels
        pred = sc["p"].argmax(1)
        hits = [
            pred[b] in (g["y"][w - 1], g["y"][w])
            for w in range(1, len(g["y"]) - 1)
            for b in range(g["start"][w], g["start"][w] + 10)
        ]
        assert np.mean(hits) >= 0.95, (name, vid, np.mean(hits))


def test_class_missing_from_training_is_reported(tmp_path):
    vids = _videos(np.random.default_rng(1), classes_in_train=(0, 2))
    _, scores, report = fit_and_score("kelm", KELM, vids, 3, seed=0)
    assert report["missing_classes"] == [1] and report["class_counts"][1] == 0
    assert all((sc["p"][:, 1] == 0).all() for sc in scores.values())


def test_svm_max_train_fits_a_seeded_subset_of_the_training_windows():
    vids = _videos(np.random.default_rng(0), n_videos=8)  # 6 train videos: 66 valid windows
    few = SimpleNamespace(**{**vars(SVM), "max_train": 30})
    model, scores, report = fit_and_score("svm", few, vids, 4, seed=0)
    assert report["train_windows"] == 30 and sum(report["class_counts"]) == 30
    assert model.named_steps["scaler"].n_samples_seen_ == 30
    _, again, _ = fit_and_score("svm", few, vids, 4, seed=0)
    _, other, _ = fit_and_score("svm", few, vids, 4, seed=1)
    assert all(np.array_equal(scores[v]["p"], again[v]["p"]) for v in scores)  # seeded
    assert not all(np.array_equal(scores[v]["p"], other[v]["p"]) for v in scores)
    _, _, full = fit_and_score("svm", SVM, vids, 4, seed=0)
    assert full["train_windows"] == 66


def test_empty_train_split_and_single_class_are_errors():
    vids = _videos(np.random.default_rng(2))
    for g in vids.values():
        if g["attrs"]["split"] == "train":
            g["attrs"]["split"] = "dev"
    with pytest.raises(PipelineError, match="no valid labelled windows in the 'train' split"):
        fit_and_score("svm", SVM, vids, 3, seed=0)
    vids = _videos(np.random.default_rng(2), classes_in_train=(1,))
    with pytest.raises(PipelineError, match="fewer than two classes"):
        fit_and_score("kelm", KELM, vids, 3, seed=0)


def test_full_proba_places_columns_by_class_index():
    out = full_proba(np.array([[0.2, 0.8]]), np.array([0, 2]), 4)
    np.testing.assert_allclose(out, [[0.2, 0, 0.8, 0]])


@pytest.mark.parametrize("name,cfg", [("kelm", KELM), ("lstm", LSTM)])
def test_out_of_fold_train_scores_come_from_models_that_never_saw_the_speaker(name, cfg):
    vids = _videos(np.random.default_rng(2), n_videos=8)
    for i, vid in enumerate(["v0", "v1", "v2", "v3", "v4", "v5"]):
        vids[vid]["attrs"]["speaker"] = f"s{i // 2}"  # three train speakers, two videos each
    by_speaker = SimpleNamespace(**{**vars(cfg), "oof_folds": 5, "oof_group": "speaker"})
    _, scores, report = fit_and_score(name, by_speaker, vids, 4, 0)
    assert sorted(scores) == [f"v{i}" for i in range(8)]
    record = report["out_of_fold"]
    assert record["folds"] == 3 and record["groups"] == 3  # capped at the train speakers
    assert sorted(map(tuple, record["held_out"])) == [("s0",), ("s1",), ("s2",)]
    # Speaker s1's scores are those of the same model fitted without s1 and scoring it.
    without = {v: g for v, g in vids.items() if v not in ("v2", "v3")}
    for vid in ("v2", "v3"):
        without[vid] = {**vids[vid], "attrs": {**vids[vid]["attrs"], "split": "test"}}
    _, expected, _ = fit_and_score(name, cfg, without, 4, 0)
    for vid in ("v2", "v3"):
        np.testing.assert_allclose(scores[vid]["p"], expected[vid]["p"], atol=1e-6)
        np.testing.assert_array_equal(scores[vid]["covered"], expected[vid]["covered"])
    # Dev and test scores are the full model's, whatever the folds.
    _, plain, _ = fit_and_score(name, cfg, vids, 4, 0)
    for vid in ("v6", "v7"):
        np.testing.assert_array_equal(scores[vid]["p"], plain[vid]["p"])
    # By video, the three speakers' six videos are six groups (five folds).
    by_video_cfg = SimpleNamespace(**{**vars(cfg), "oof_folds": 5})
    _, _, by_video = fit_and_score(name, by_video_cfg, vids, 4, 0)
    assert by_video["out_of_fold"]["folds"] == 5
