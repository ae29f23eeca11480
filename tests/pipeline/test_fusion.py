"""Tests for pipeline.fusion: weight constraints, determinism, search results, the entropy gate,
smoothing, and the out-of-sample judgement and choice of fusion rules."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, f1_score

from pipeline.fusion import (
    FusionConfig,
    apply_mcwf,
    apply_swf,
    at_chance_models,
    fuse_dev,
    fuse_splits,
    fuse_with,
    group_folds,
    mcwf_candidates,
    opinion_mask,
    search_mcwf,
    search_swf,
    swf_candidates,
)
from pipeline.metrics import at_chance, ccc, classification_metrics
from pipeline.scores import smooth_scores, smooth_stacked

K = 7


def _noise(rng, n_models, n_frames, alpha=1.0):
    return rng.dirichlet(np.full(K, alpha), size=(n_models, n_frames)).astype(np.float32)


def _perfect(y):
    """Probabilities with 0.7 on the true class and 0.05 on each other class."""
    p = np.full((y.size, K), 0.05, dtype=np.float32)
    p[np.arange(y.size), np.maximum(y, 0)] = 0.7
    return p


def test_candidate_constraints():
    c = swf_candidates(50, 4, 0.5, seed=1)
    assert c.shape == (55, 4)  # uniform, 4 single models, 50 draws
    np.testing.assert_array_equal(c[0], np.full(4, 0.25))
    np.testing.assert_array_equal(c[1:5], np.eye(4))
    assert (c >= 0).all()
    np.testing.assert_allclose(c.sum(axis=1), 1.0, rtol=1e-12)

    m = mcwf_candidates(50, 4, K, 0.5, seed=1)
    assert m.shape == (55, 4, K)
    np.testing.assert_array_equal(m[0], np.full((4, K), 0.25))
    # candidate 2 gives all classes to model 1
    np.testing.assert_array_equal(m[2], np.repeat(np.eye(4)[1][:, None], K, axis=1))
    assert (m >= 0).all()
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-12)  # every class column
    assert not np.allclose(m[5, :, 0], m[5, :, 1])  # columns are separate draws


def test_apply_matches_direct_loop():
    rng = np.random.default_rng(0)
    P = _noise(rng, 3, 5)
    w = np.array([0.2, 0.5, 0.3])
    W = rng.dirichlet(np.ones(3), size=K).T  # (3, K)
    swf = np.zeros((5, K))
    mcwf = np.zeros((5, K))
    for n in range(5):
        for k in range(K):
            for m in range(3):
                swf[n, k] += w[m] * P[m, n, k]
                mcwf[n, k] += W[m, k] * P[m, n, k]
    np.testing.assert_allclose(apply_swf(P, w), swf, rtol=1e-6)
    np.testing.assert_allclose(apply_mcwf(P, W), mcwf, rtol=1e-6)


def _sklearn_cpm(y, pred, n_classes):
    """CPM straight from scikit-learn, on the labelled frames."""
    keep = y != -1
    f1 = f1_score(
        y[keep], pred[keep], labels=np.arange(n_classes), average="macro", zero_division=0
    )
    return 0.67 * f1 + 0.33 * accuracy_score(y[keep], pred[keep])


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("n_classes", [3, 7, 10])
@pytest.mark.parametrize("chunk", [1, 17, None])
@pytest.mark.parametrize("mode", ["swf", "mcwf"])
def test_search_scores_match_sklearn(mode, chunk, n_classes, gate):
    # K = 10: the former bit-packed search refused more than 8 classes.
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(-1, n_classes, size=n)
    P = rng.dirichlet(np.ones(n_classes), size=(3, n)).astype(np.float32)
    P[:, :20] = 1.0 / n_classes  # exact ties: np.argmax's first class, in search and apply
    opinion = None
    if gate:  # the median normalised entropy: about half the models' frames abstain
        entropy = -np.sum(P * np.log(P), axis=2) / np.log(n_classes)
        opinion = opinion_mask(P, float(np.median(entropy)))
        assert 0.4 < opinion.mean() < 0.6
    if mode == "swf":
        res = search_swf(P, y, n_draws=60, seed=3, chunk=chunk, opinion=opinion)
        cands = swf_candidates(60, 3, 1.0, seed=3)
        preds = [apply_swf(P, w, opinion).argmax(axis=1) for w in cands]
    else:
        res = search_mcwf(P, y, n_draws=60, seed=3, chunk=chunk, opinion=opinion)
        cands = mcwf_candidates(60, 3, n_classes, 1.0, seed=3)
        preds = [apply_mcwf(P, w, opinion).argmax(axis=1) for w in cands]
    ref = np.array([_sklearn_cpm(y, p, n_classes) for p in preds])
    np.testing.assert_allclose(res.history, ref, rtol=0, atol=1e-12)
    assert res.best_score == res.history.max() == pytest.approx(ref.max(), abs=1e-12)
    np.testing.assert_array_equal(res.weights, cands[int(np.argmax(res.history))])


@pytest.mark.parametrize("search", [search_swf, search_mcwf])
def test_search_is_deterministic(search):
    rng = np.random.default_rng(2)
    y = rng.integers(0, K, size=300)
    P = _noise(rng, 4, 300)
    a = search(P, y, n_draws=40, seed=7)
    b = search(P, y, n_draws=40, seed=7)
    c = search(P, y, n_draws=40, seed=8)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.history, c.history)


def test_swf_finds_the_perfect_model():
    rng = np.random.default_rng(3)
    y = rng.integers(-1, K, size=500)
    P = np.concatenate([_noise(rng, 2, 500), _perfect(y)[None], _noise(rng, 1, 500)])
    w, best, history = search_swf(P, y, n_draws=300, concentration=1.0, seed=0)
    # Any w with w[2] > 0.62 makes every frame right: 0.65 w2 > (1 - w2) * 1.
    perfect_cpm = classification_metrics(y, P[2].argmax(axis=1), K)["cpm"]
    assert perfect_cpm == pytest.approx(1.0)
    assert best == pytest.approx(perfect_cpm)
    assert np.argmax(w) == 2 and w[2] > 0.5
    assert history[0] < best  # the uniform weighting is not enough here


def test_mcwf_favours_the_informative_model():
    rng = np.random.default_rng(4)
    y = rng.integers(0, K, size=500)
    P = np.concatenate([_noise(rng, 2, 500, alpha=0.5), _perfect(y)[None]])
    W, best, history = search_mcwf(P, y, n_draws=300, concentration=1.0, seed=0)
    assert W.shape == (3, K)
    np.testing.assert_allclose(W.sum(axis=0), 1.0)
    assert best == history.max() and best > history[0] + 0.1  # uniform: ~0.80
    assert best > 0.95
    assert W[2].mean() > W[:2].mean(axis=1).max()


def test_without_draws_the_best_of_uniform_and_single_models_wins():
    # n_draws=0 leaves the uniform weights and each single model: the search returns the
    # first of them with the highest CPM, whichever that is for this data.
    rng = np.random.default_rng(5)
    y = rng.integers(0, K, size=200)
    P = _noise(rng, 3, 200)
    direct = [classification_metrics(y, apply_swf(P, np.full(3, 1 / 3)).argmax(axis=1), K)["cpm"]]
    direct += [classification_metrics(y, P[m].argmax(axis=1), K)["cpm"] for m in range(3)]
    for search in (search_swf, search_mcwf):
        res = search(P, y, n_draws=0, seed=0)
        np.testing.assert_allclose(res.history, direct, rtol=0, atol=1e-12)
        best = int(np.argmax(direct))
        expected = np.full(3, 1 / 3) if best == 0 else np.eye(3)[best - 1]
        np.testing.assert_array_equal(
            res.weights if res.weights.ndim == 1 else res.weights[:, 0], expected
        )
        assert res.best_score == max(direct)


def test_invalid_inputs_raise():
    y = np.array([0, 1, 2])
    P = np.full((2, 3, K), 1.0 / K, dtype=np.float32)
    with pytest.raises(ValueError, match="no labelled"):
        search_swf(P, np.full(3, -1), n_draws=2)
    bad = P.copy()
    bad[0, 0, 0] = -0.1
    with pytest.raises(ValueError, match="non-negative"):
        search_swf(bad, y, n_draws=2)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-negative"):
        search_mcwf(bad, y, n_draws=2)
    with pytest.raises(ValueError):
        swf_candidates(3, 2, 0.0, seed=0)


def test_moving_average_is_centred_and_shorter_at_the_edges():
    p = np.arange(5, dtype=np.float32)[:, None]  # (n, 1)
    np.testing.assert_allclose(smooth_scores(p, 3)[:, 0], [0.5, 1, 2, 3, 3.5])
    np.testing.assert_allclose(smooth_scores(p, 2)[:, 0], [0.5, 1.5, 2.5, 3.5, 4])  # one ahead
    np.testing.assert_allclose(smooth_scores(p, 5)[:, 0], [1, 1.5, 2, 2.5, 3])
    for off in (0, 1):
        assert smooth_scores(p, off) is p
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=9).astype(np.float32)
    np.testing.assert_allclose(smooth_scores(probs, 4).sum(axis=1), 1, rtol=1e-6)
    # Video by video: a window never reaches into the next video.
    P = np.concatenate([np.zeros((2, 3, 1)), np.full((2, 2, 1), 9.0)], axis=1)
    index = [("a", 3), ("b", 2)]
    np.testing.assert_array_equal(smooth_stacked(P, index, 3), P)
    P[1, 0, 0] = 3.0
    np.testing.assert_allclose(
        smooth_stacked(P, index, 3)[:, :, 0], [[0, 0, 0, 9, 9], [1.5, 1, 0, 9, 9]]
    )


def test_opinion_mask_is_normalised_entropy():
    P = np.array([[[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0], [0, 0, 0, 0]]])
    # normalised entropies: 0, 1, ln 2 / ln 4 = 0.5, undefined (all zero: no opinion)
    np.testing.assert_array_equal(opinion_mask(P, 0.6), [[True, False, True, False]])
    np.testing.assert_array_equal(opinion_mask(P, 0.4), [[True, False, False, False]])
    np.testing.assert_array_equal(opinion_mask(2 * P, 0.6), [[True, False, True, False]])
    assert opinion_mask(P, None) is None


def test_gate_drops_abstaining_models_and_renormalises():
    sure = [0.8, 0.1, 0.1]
    flat = [0.3, 0.4, 0.3]
    other = [0.1, 0.1, 0.8]
    P = np.array([[sure, flat], [flat, flat], [other, flat]], dtype=np.float32)  # (3, 2, 3)
    opinion = np.array([[True, False], [False, False], [True, False]])
    # SWF: model 1 abstains on frame 0; w = (0.2, 0.5, 0.3) -> (0.4, 0, 0.6) there.
    w = np.array([0.2, 0.5, 0.3])
    fused = apply_swf(P, w, opinion)
    np.testing.assert_allclose(fused[0], 0.4 * np.array(sure) + 0.6 * np.array(other), rtol=1e-6)
    # Frame 1: every model abstains -> the plain fusion.
    np.testing.assert_allclose(fused[1], apply_swf(P, w)[1], rtol=1e-6)
    # MCWF: each class column is renormalised over the models that keep an opinion.
    W = np.array([[0.5, 0.1, 0.0], [0.5, 0.3, 0.9], [0.0, 0.6, 0.1]])
    fused = apply_mcwf(P, W, opinion)
    expected0 = [sure[0], (0.1 * sure[1] + 0.6 * other[1]) / 0.7, other[2]]  # class 2: 0.1/0.1
    np.testing.assert_allclose(fused[0], expected0, rtol=1e-6)
    np.testing.assert_allclose(fused[1], apply_mcwf(P, W)[1], rtol=1e-6)
    # Class 0 of a frame where only model 2 (weight 0 for class 0) has an opinion: plain.
    only2 = np.array([[False], [False], [True]])
    np.testing.assert_allclose(
        apply_mcwf(P[:, :1], W, only2)[0, 0], apply_mcwf(P[:, :1], W)[0, 0], rtol=1e-6
    )


# ------------------------------------------------------------------ out-of-sample judgement

CFG = FusionConfig(
    task="expr",
    n_draws=2000,
    concentration=0.3,
    seed=0,
    cv_folds=5,
    cv_group="speaker",
    shrinkage=(0.0, 0.25, 0.5),
    choice_se=1.0,
    rule="auto",
    smooth_bins=0,
    entropy_gate=None,
)


def _softmax_scores(rng, y, strength, n_classes=4):
    """(N, K) probabilities: Gaussian logits plus ``strength`` on class ``y``."""
    logits = rng.standard_normal((y.size, n_classes)) + strength * np.eye(n_classes)[y]
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _good_and_noise(rng, n_groups, n_frames, n_noise=3, n_classes=4):
    """One informative model and ``n_noise`` pure-noise models (confident, label-blind)."""
    y = rng.integers(0, n_classes, n_groups * n_frames)
    groups = np.repeat([f"s{g}" for g in range(n_groups)], n_frames)
    good = _softmax_scores(rng, y, 1.5)
    noise = [_softmax_scores(rng, rng.integers(0, n_classes, y.size), 2.0) for _ in range(n_noise)]
    return np.stack([good] + noise), y, groups


def _cpm(y, fused):
    return classification_metrics(y, fused.argmax(axis=1), fused.shape[1])["cpm"]


def test_group_folds_keep_groups_whole_and_cap_the_folds():
    groups = np.repeat(["a", "b", "c", "d"], [5, 3, 4, 2])
    labelled = np.ones(groups.size, bool)
    labelled[groups == "d"] = False  # a group without labels is never held out
    folds, n_groups = group_folds(groups, labelled, n_folds=5)
    assert n_groups == 3 and set(folds) == {-1, 0, 1, 2}  # capped at 3 labelled groups
    assert (folds[groups == "d"] == -1).all()
    for g in "abc":
        assert np.unique(folds[groups == g]).size == 1  # a group is never split
    assert np.unique(folds[groups != "d"]).size == 3  # every fold holds a group
    folds, n_groups = group_folds(groups, groups == "a", n_folds=5)
    assert n_groups == 1 and (folds == -1).all()  # one group: no cross-validation


def test_at_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    y[:100] = -1
    assert "predicts one class (index 2)" in at_chance(y, np.full(y.size, 2), 4)
    assert "within the chance band" in at_chance(y, rng.integers(0, 4, y.size), 4)
    better = np.where(rng.random(y.size) < 0.2, np.maximum(y, 0), rng.integers(0, 4, y.size))
    assert at_chance(y, better, 4) is None  # UAR ~0.4 against chance 0.25 +- 0.02
    # Only the classes present count: predicting 2 present classes at random is chance.
    y2 = rng.integers(0, 2, 2000)
    assert at_chance(y2, rng.integers(0, 2, y2.size), 7) is not None


def test_cross_validation_exposes_a_search_that_fits_noise():
    # A small dev set (6 speakers x 25 frames): one informative model and three pure-noise
    # models that the searches can fit in sample. Test speakers are new draws.
    rng = np.random.default_rng(0)
    P, y, groups = _good_and_noise(rng, 6, 25)
    P_test, y_test, _ = _good_and_noise(rng, 4, 500)
    models = ["good", "noise1", "noise2", "noise3"]
    dev = fuse_dev(P, y, groups, models, CFG)  # no exclusion: the noise stays searchable
    test = {m: _cpm(y_test, fuse_with(P_test, dev.fits[m], CFG)) for m in dev.fits}
    assert dev.cv_folds == 5 and dev.n_groups == 6
    for method in ("swf", "mcwf"):  # the searches fit dev: held out, they score lower
        fit = dev.fits[method]
        assert fit.dev_score_cv < fit.dev_score_in_sample
        assert fit.dev_score_cv == _cpm(y, fit.dev_fused)  # the pooled held-out predictions
    for method in ("uniform", "single"):
        assert dev.fits[method].dev_score_cv is not None
    # The trap is real here: picking by in-sample dev score would lose on test...
    in_sample_pick = max(dev.fits, key=lambda m: dev.fits[m].dev_score_in_sample)
    assert test[in_sample_pick] < test["single"] - 0.02
    # ... the pipeline's out-of-sample choice does not.
    assert dev.chosen != in_sample_pick
    assert test[dev.chosen] >= test["single"]
    np.testing.assert_array_equal(dev.fits["single"].weights, [1, 0, 0, 0])


def test_one_standard_error_rule_prefers_the_simpler_rule():
    # Same design, another draw: MCWF has the best cross-validated score by less than one
    # standard error; the rule keeps the single model, which is also better on test.
    rng = np.random.default_rng(3)
    P, y, groups = _good_and_noise(rng, 6, 25)
    P_test, y_test, _ = _good_and_noise(rng, 4, 500)
    models = ["good", "noise1", "noise2", "noise3"]
    dev = fuse_dev(P, y, groups, models, CFG)
    best = dev.fits[dev.best_cv]
    assert dev.best_cv == "mcwf" and dev.chosen == "single"
    se = np.std(best.fold_scores, ddof=1) / np.sqrt(dev.cv_folds)
    assert dev.cv_standard_error == pytest.approx(se)
    assert dev.fits["single"].dev_score_cv >= best.dev_score_cv - se  # within one error
    assert dev.fits["uniform"].dev_score_cv < best.dev_score_cv - se  # simpler, but not within
    test = {m: _cpm(y_test, fuse_with(P_test, dev.fits[m], CFG)) for m in ("single", "mcwf")}
    assert test["single"] > test["mcwf"]
    assert fuse_dev(P, y, groups, models, replace(CFG, choice_se=0.0)).chosen == "mcwf"


def test_held_out_folds_never_see_their_own_labels():
    # Model 0 is perfect on speaker a and wrong on b; model 1 the reverse. On all of dev
    # either looks half right, so `single` picks model 0 (the first maximum). Held out, each
    # speaker is predicted by the model that was right on the *other* speaker: all wrong.
    y = np.array([0, 1, 2, 0, 1, 2])
    groups = np.array(["a"] * 3 + ["b"] * 3)
    right = np.eye(3)[y].astype(np.float32)
    wrong = np.eye(3)[(y + 1) % 3].astype(np.float32)
    P = np.stack([np.concatenate([right[:3], wrong[3:]]), np.concatenate([wrong[:3], right[3:]])])
    dev = fuse_dev(P, y, groups, ["m0", "m1"], replace(CFG, n_draws=0))
    single = dev.fits["single"]
    assert single.dev_score_in_sample == pytest.approx(0.5)
    assert single.dev_score_cv == 0.0
    np.testing.assert_array_equal(single.dev_fused.argmax(axis=1), (y + 1) % 3)


def test_one_group_means_no_cross_validation_and_uniform_weights(caplog):
    rng = np.random.default_rng(1)
    P, y, _ = _good_and_noise(rng, 2, 30, n_noise=1)
    dev = fuse_dev(P, y, np.full(y.size, "only"), ["good", "noise"], CFG)
    assert dev.cv_folds == 0 and dev.chosen == "uniform" and "no cross-validation" in dev.note
    assert "no cross-validation" in caplog.text
    for fit in dev.fits.values():
        assert fit.dev_score_cv is None and fit.shrinkage_cv == {}
    np.testing.assert_allclose(dev.fits["swf"].weights, [0.5, 0.5])
    np.testing.assert_allclose(dev.fits["mcwf"].weights, np.full((2, 4), 0.5))  # (L, K)


def test_shrinkage_pulls_weights_towards_uniform():
    rng = np.random.default_rng(2)
    P, y, groups = _good_and_noise(rng, 4, 40, n_noise=2)
    full = fuse_dev(P, y, groups, ["a", "b", "c"], replace(CFG, shrinkage=(1.0,)))
    np.testing.assert_allclose(full.fits["swf"].weights, np.full(3, 1 / 3))
    np.testing.assert_allclose(full.fits["mcwf"].weights, np.full((3, 4), 1 / 3))
    none = fuse_dev(P, y, groups, ["a", "b", "c"], replace(CFG, shrinkage=(0.0,)))
    half = fuse_dev(P, y, groups, ["a", "b", "c"], replace(CFG, shrinkage=(0.5,)))
    np.testing.assert_allclose(half.fits["swf"].weights, 0.5 * none.fits["swf"].weights + 0.5 / 3)
    grid = fuse_dev(P, y, groups, ["a", "b", "c"], CFG)
    for method in ("swf", "mcwf"):
        fit = grid.fits[method]
        assert set(fit.shrinkage_cv) == set(CFG.shrinkage)
        assert fit.dev_score_cv == max(fit.shrinkage_cv.values())
        best = [s for s, v in fit.shrinkage_cv.items() if v == fit.dev_score_cv]
        assert fit.shrinkage == best[0]  # the first of equal scores


def test_a_chance_model_is_excluded_with_a_reason(caplog):
    rng = np.random.default_rng(3)
    P, y, groups = _good_and_noise(rng, 4, 100, n_noise=1)
    weak = _softmax_scores(rng, y, 0.8)
    P = np.concatenate([P, weak[None]])
    models = ["good", "noise", "weak"]
    excluded = at_chance_models(P, y, models)
    assert list(excluded) == ["noise"] and "chance band" in excluded["noise"]
    index = [(f"v{i}", 100) for i in range(4)]
    dev, fused = fuse_splits({"dev": (P, index)}, y, groups, models, CFG)
    assert dev.excluded == excluded and "noise left out" in caplog.text
    for fit in dev.fits.values():
        assert np.all(fit.weights[1] == 0)
    assert set(fused) == {"swf", "mcwf", "chosen"}
    # Every model at chance: none is excluded (fusion needs a model).
    assert at_chance_models(P[1:2], y, ["noise"]) == {}


def test_smoothing_and_gate_reach_the_fusion():
    rng = np.random.default_rng(4)
    P, y, groups = _good_and_noise(rng, 4, 50, n_noise=0)
    P = np.concatenate([P, _softmax_scores(rng, y, 1.0)[None]])  # two informative models
    index = [(f"v{i}", 50) for i in range(4)]
    cfg = replace(CFG, n_draws=50, shrinkage=(1.0,))  # SWF = uniform weights: both count
    _, plain = fuse_splits({"dev": (P, index), "test": (P, index)}, y, groups, ["a", "b"], cfg)
    _, smoothed = fuse_splits(
        {"dev": (P, index), "test": (P, index)}, y, groups, ["a", "b"], replace(cfg, smooth_bins=5)
    )
    _, gated = fuse_splits(
        {"dev": (P, index), "test": (P, index)},
        y,
        groups,
        ["a", "b"],
        replace(cfg, entropy_gate=0.5),
    )
    # Test rows use the final weights on the smoothed scores; the same data with smoothing
    # gives other fused scores, with the gate too.
    for other in (smoothed, gated):
        assert not np.allclose(other["swf"]["v0"][1], plain["swf"]["v0"][1])


def test_va_fusion_is_cross_validated_by_ccc():
    rng = np.random.default_rng(5)
    groups = np.repeat([f"s{g}" for g in range(5)], 40)
    y = rng.uniform(-1, 1, (groups.size, 2))
    y[:10] = np.nan
    good = np.nan_to_num(y) + 0.4 * rng.standard_normal(y.shape)
    noise = [rng.uniform(-1, 1, y.shape) for _ in range(3)]
    P = np.stack([good] + noise).astype(np.float32)
    cfg = replace(CFG, task="va", concentration=1.0)
    dev = fuse_dev(P, y, groups, ["good", "n1", "n2", "n3"], cfg)
    assert dev.cv_folds == 5 and dev.excluded == {}
    assert dev.fits["mcwf"].weights.shape == (4, 2) and dev.fits["swf"].weights.shape == (4,)
    for method in ("swf", "mcwf"):
        fit = dev.fits[method]
        direct = np.mean([ccc(fit.dev_fused[:, d], y[:, d]) for d in range(2)])
        assert fit.dev_score_cv == pytest.approx(direct, abs=1e-6)  # pooled held-out CCC
        assert fit.dev_score_cv < fit.dev_score_in_sample
    assert dev.fits[dev.chosen].dev_score_cv >= dev.fits["uniform"].dev_score_cv
    with pytest.raises(ValueError, match="entropy_gate"):
        fuse_dev(P, y, groups, ["good", "n1", "n2", "n3"], replace(cfg, entropy_gate=0.9))


def test_fuse_stage_writes_weights_choice_and_out_of_fold_dev_scores(tmp_path):
    from pipeline.io.h5 import open_writer
    from pipeline.scores import write_scores
    from stages.fuse import main

    rng = np.random.default_rng(6)
    params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    classes = params["base"]["classes"]
    k = len(classes)
    n, vids = 40, [f"v{i}" for i in range(8)]
    split = {v: "dev" if i < 6 else "test" for i, v in enumerate(vids)}
    y = {v: rng.integers(0, k, n).astype(np.int8) for v in vids}
    y["v0"][:5] = -1
    with open_writer(tmp_path / "labels.h5", rate_hz=5.0, task="expr", classes=classes) as w:
        for i, v in enumerate(vids):  # two videos per speaker: 3 dev speakers
            w.add(
                v,
                attrs={"split": split[v], "speaker": f"spk{i // 2}"},
                y=y[v],
                t=np.arange(n) / 5.0,
                valid=np.ones(n, bool),
            )
    for name, strength in (("svm_fer", 1.5), ("kelm_fer", 0.8), ("svm_mfcc", None)):
        truth = {v: np.maximum(y[v], 0) if strength else rng.integers(0, k, n) for v in vids}
        sc = {
            v: {
                "p": _softmax_scores(rng, truth[v], strength or 2.0, k),
                "covered": np.ones(n, bool),
            }
            for v in vids
        }
        write_scores(tmp_path / "fit" / name / "scores.h5", sc, split, 5.0, classes=classes)
    params["fuse"].update(
        models=["svm_fer", "kelm_fer", "svm_mfcc"], n_draws=200, cv_group="speaker"
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(
        [
            "--scores",
            str(tmp_path / "fit"),
            "--labels",
            str(tmp_path / "labels.h5"),
            "--dst",
            str(tmp_path / "fuse"),
            "--params",
            str(tmp_path / "params.yaml"),
        ]
    )

    choice = json.loads((tmp_path / "fuse" / "choice.json").read_text())
    assert choice["cv_folds"] == 3 and choice["n_groups"] == 3 and choice["cv_group"] == "speaker"
    assert choice["method"] in ("uniform", "single", "swf", "mcwf")
    assert choice["dev_score_cv"] == choice["cv_scores"][choice["method"]]
    assert "svm_mfcc" in choice["excluded"]
    for method in ("swf", "mcwf"):
        rec = json.loads((tmp_path / "fuse" / method / "weights.json").read_text())
        for key in ("dev_score_cv", "dev_score_in_sample", "excluded", "cv_folds", "shrinkage"):
            assert key in rec, key
        assert rec["chosen"] == (method == choice["method"]) and "dev_score" not in rec
        assert rec["models"] == ["svm_fer", "kelm_fer", "svm_mfcc"]
        assert np.all(np.asarray(rec["weights"])[2] == 0)  # the excluded model
        # Dev rows of scores.h5 are the held-out predictions: their CPM is dev_score_cv.
        with h5py.File(tmp_path / "fuse" / method / "scores.h5") as f:
            assert sorted(f) == vids and f["v7"].attrs["split"] == "test"
            p = np.concatenate([f[v]["p"][()] for v in vids[:6]])
        y_dev = np.concatenate([y[v] for v in vids[:6]])
        assert _cpm(y_dev, p) == pytest.approx(rec["dev_score_cv"], abs=1e-12)
    assert (tmp_path / "fuse" / "chosen" / "scores.h5").is_file()


def test_the_best_single_model_wins_unless_fusion_beats_it_beyond_the_noise():
    """The preference order starts with the single model: when every rule is within
    ``choice_se`` standard errors of the best (here: an infinitely wide band), no fusion."""
    rng = np.random.default_rng(5)
    P, y, groups = _good_and_noise(rng, 6, 25)
    models = ["good", "noise1", "noise2", "noise3"]
    dev = fuse_dev(P, y, groups, models, replace(CFG, choice_se=1e9))
    assert dev.chosen == "single"
    np.testing.assert_array_equal(dev.fits["single"].weights, [1, 0, 0, 0])


def test_a_named_rule_is_used_whatever_the_cross_validation_says():
    rng = np.random.default_rng(3)
    P, y, groups = _good_and_noise(rng, 6, 25)
    models = ["good", "noise1", "noise2", "noise3"]
    auto = fuse_dev(P, y, groups, models, CFG)
    assert auto.chosen == "single"
    forced = fuse_dev(P, y, groups, models, replace(CFG, rule="mcwf"))
    assert forced.chosen == "mcwf" and forced.best_cv == auto.best_cv
    assert forced.fits["mcwf"].dev_score_cv == auto.fits["mcwf"].dev_score_cv  # still reported


def test_out_of_fold_train_scores_join_the_pool():
    """A model that shines on the two dev speakers only wins when dev is all fusion sees; with
    six more (out-of-fold) train speakers in the pool, the model that holds for everyone wins."""
    rng = np.random.default_rng(7)
    n = 80
    y_tr = rng.integers(0, 4, 6 * n)
    y_dev = rng.integers(0, 4, 2 * n)
    g_tr = np.repeat([f"t{g}" for g in range(6)], n)
    g_dev = np.repeat(["d0", "d1"], n)
    steady = [_softmax_scores(rng, y, 1.0) for y in (y_tr, y_dev)]
    dev_only = [_softmax_scores(rng, y_tr, 0.2), _softmax_scores(rng, y_dev, 2.5)]
    P_tr, P_dev = (np.stack([steady[i], dev_only[i]]) for i in (0, 1))
    index_tr = [(f"tr{g}", n) for g in range(6)]
    index_dev = [("dev0", n), ("dev1", n)]
    models = ["steady", "dev_only"]
    cfg = replace(CFG, n_draws=200)

    alone, _ = fuse_splits({"dev": (P_dev, index_dev)}, y_dev, g_dev, models, cfg)
    assert alone.pool == "dev" and alone.n_groups == 2
    assert alone.fits["swf"].weights[1] > alone.fits["swf"].weights[0]

    index_test = [("test0", n), ("test1", n)]
    splits = {"train": (P_tr, index_tr), "dev": (P_dev, index_dev), "test": (P_dev, index_test)}
    pooled, fused = fuse_splits(splits, y_dev, g_dev, models, cfg, train=(y_tr, g_tr))
    assert pooled.pool == "train out of fold + dev" and pooled.n_groups == 8
    assert pooled.cv_folds == 5
    assert pooled.fits["swf"].weights[0] > pooled.fits["swf"].weights[1]
    single = pooled.fits["single"]
    assert single.weights.tolist() == [1.0, 0.0]  # the single model is chosen on 8 speakers
    # Fused rows exist for dev and test only; dev rows are the pool's held-out dev frames.
    assert set(fused["chosen"]) == {"dev0", "dev1", "test0", "test1"}
    for name in ("swf", "chosen"):
        fit = pooled.fits[pooled.chosen if name == "chosen" else name]
        dev_rows = np.concatenate([fused[name][v][1] for v in ("dev0", "dev1")])
        np.testing.assert_array_equal(dev_rows, fit.dev_fused[6 * n :])
