"""Valence/arousal path: regressors on windows, CCC fusion search, CCC evaluation."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline import fusion, report
from pipeline.errors import PipelineError
from pipeline.metrics import ccc
from pipeline.models.fitting import fit_and_score_va

SVM = SimpleNamespace(C=3.0, kernel="rbf", gamma=0.1, degree=3, oof_folds=0, oof_group="video")
KELM = SimpleNamespace(
    C=10.0, kernel="rbf", gamma="scale", approximation=None, oof_folds=0, oof_group="video"
)


def _videos(rng):
    vids = {}
    for i in range(6):
        split = "train" if i < 4 else ("dev" if i == 4 else "test")
        va = rng.uniform(-0.8, 0.8, (15, 2)).astype(np.float32)
        x = np.concatenate([va, 0.1 * rng.standard_normal((15, 3))], axis=1).astype(np.float32)
        va[3] = np.nan  # an unannotated window
        starts = np.arange(15) * 10
        vids[f"v{i}"] = {
            "x": x,
            "va": va,
            "valid": np.ones(15, bool),
            "start": starts,
            "end": starts + 10,
            "attrs": {"split": split, "n_grid": 150},
        }
    return vids


@pytest.mark.parametrize("name,cfg", [("svm", SVM), ("kelm", KELM)])
def test_regressors_recover_va_from_informative_features(name, cfg):
    vids = _videos(np.random.default_rng(0))
    _, scores, report_ = fit_and_score_va(name, cfg, vids)
    assert sorted(scores) == ["v4", "v5"] and report_["train_windows"] == 56
    for vid, sc in scores.items():
        truth = np.repeat(np.nan_to_num(vids[vid]["va"], nan=0), 10, axis=0)
        assert sc["va"].shape == (150, 2) and sc["covered"].all() and np.abs(sc["va"]).max() <= 1
        ok = np.repeat(np.isfinite(vids[vid]["va"]).all(1), 10)
        assert (
            ccc(truth[ok, 0], sc["va"][ok, 0]) > 0.8 and ccc(truth[ok, 1], sc["va"][ok, 1]) > 0.8
        )


def test_out_of_fold_va_scores_come_from_models_without_the_speaker():
    vids = _videos(np.random.default_rng(0))
    for i in range(4):
        vids[f"v{i}"]["attrs"]["speaker"] = f"s{i // 2}"
    cfg = SimpleNamespace(**{**vars(KELM), "oof_folds": 5, "oof_group": "speaker"})
    _, scores, report_ = fit_and_score_va("kelm", cfg, vids)
    assert sorted(scores) == [f"v{i}" for i in range(6)]
    assert report_["out_of_fold"]["folds"] == 2  # two train speakers
    without = {v: g for v, g in vids.items() if v not in ("v0", "v1")}
    without |= {
        v: {**vids[v], "attrs": {**vids[v]["attrs"], "split": "test"}} for v in ("v0", "v1")
    }
    _, expected, _ = fit_and_score_va("kelm", KELM, without)
    for vid in ("v0", "v1"):
        np.testing.assert_allclose(scores[vid]["va"], expected[vid]["va"], atol=1e-6)


def test_lstm_and_nystroem_are_refused_for_va():
    vids = _videos(np.random.default_rng(0))
    with pytest.raises(PipelineError, match="task va supports the svm and kelm models"):
        fit_and_score_va("lstm", SVM, vids)
    with pytest.raises(PipelineError, match="approximation: not available for task va"):
        fit_and_score_va(
            "kelm", SimpleNamespace(**{**vars(KELM), "approximation": "nystroem"}), vids
        )


def test_ccc_search_is_exact_constrained_and_finds_the_good_model():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (500, 2))
    y[:20] = np.nan
    good = y + 0.1 * rng.standard_normal(y.shape)
    P = np.stack(
        [np.nan_to_num(good), rng.uniform(-1, 1, y.shape), 0.3 * np.nan_to_num(y)]
    ).astype(np.float32)
    for per_dim in (False, True):
        res = fusion.search_va(P, y, 500, 1.0, seed=3, per_dimension=per_dim)
        w = res.weights
        assert (w >= 0).all() and np.allclose(w.sum(axis=0), 1)
        fused = fusion.apply_va(P, w)
        direct = np.mean([ccc(fused[:, d], y[:, d]) for d in range(2)])
        assert res.best_score == pytest.approx(direct, abs=1e-6)  # moment formula == direct CCC
        assert res.best_score >= res.history[0]  # at least as good as uniform weights
        assert (w[0] if w.ndim == 1 else w[0].min()) > 0.5  # the accurate model dominates
    again = fusion.search_va(P, y, 500, 1.0, seed=3)
    np.testing.assert_array_equal(again.weights, fusion.search_va(P, y, 500, 1.0, seed=3).weights)


def test_va_report():
    y = np.array([[0.1, 0.2], [0.3, 0.1], [np.nan, np.nan], [-0.5, 0.4]])
    P = np.stack([np.nan_to_num(y), -np.nan_to_num(y)])
    from pipeline.protocol import Units

    out = report.evaluate_split_va(P, y, Units(y, P, "frames"), ["same", "flipped"])
    assert out["same"]["ccc_mean"] == pytest.approx(1.0) and out["flipped"]["ccc_valence"] < 0
    assert out["same"]["n_scored"] == 3 and out["same"]["grid_5hz"]["ccc_mean"] == pytest.approx(1)
    table = report.markdown_table_va({"dev": out}).splitlines()
    assert table[2].startswith("| same | 1.000")


def test_fusion_is_never_worse_than_the_best_single_model_on_dev():
    rng = np.random.default_rng(4)
    y = rng.uniform(-1, 1, (300, 2))
    models = [
        y + s * rng.standard_normal(y.shape)
        for s in (0.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    ]
    P = np.stack(models).astype(np.float32)
    best_single = max(np.mean([ccc(m[:, d], y[:, d]) for d in range(2)]) for m in P)
    for per_dim in (False, True):
        assert (
            fusion.search_va(P, y, 50, 1.0, seed=0, per_dimension=per_dim).best_score
            >= best_single - 1e-9
        )
