"""Tests for pipeline.fusion: weight constraints, determinism and search results."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from pipeline.fusion import (
    apply_mcwf,
    apply_swf,
    mcwf_candidates,
    opinion_mask,
    search_mcwf,
    search_swf,
    swf_candidates,
)
from pipeline.metrics import classification_metrics
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
    f1 = f1_score(y[keep], pred[keep], labels=np.arange(n_classes), average="macro",
                  zero_division=0)
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
        np.testing.assert_array_equal(res.weights if res.weights.ndim == 1 else res.weights[:, 0],
                                      expected)
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
    np.testing.assert_allclose(smooth_stacked(P, index, 3)[:, :, 0],
                               [[0, 0, 0, 9, 9], [1.5, 1, 0, 9, 9]])


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
    np.testing.assert_allclose(apply_mcwf(P[:, :1], W, only2)[0, 0],
                               apply_mcwf(P[:, :1], W)[0, 0], rtol=1e-6)
