"""Tests for pipeline.models.kelm (kernel extreme learning machine)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_circles
from sklearn.metrics.pairwise import rbf_kernel

from pipeline.models.kelm import KELMClassifier


def _targets(y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    T = -np.ones((len(y_idx), n_classes))
    T[np.arange(len(y_idx)), y_idx] = 1.0
    return T


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, centers=3, n_features=5, cluster_std=2.0, random_state=0)
    return X[:180], y[:180], X[180:], y[180:]


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_decision_function_equals_direct_solve(blobs, kernel):
    X, y, Xt, _ = blobs
    C, gamma = 3.0, 0.05
    clf = KELMClassifier(C=C, kernel=kernel, gamma=gamma).fit(X, y)
    K = rbf_kernel(X, X, gamma=gamma) if kernel == "rbf" else X @ X.T
    Kt = rbf_kernel(Xt, X, gamma=gamma) if kernel == "rbf" else Xt @ X.T
    beta = np.linalg.solve(np.eye(len(X)) / C + K, _targets(y, 3))
    np.testing.assert_allclose(clf.dual_coef_, beta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(clf.decision_function(Xt), Kt @ beta, rtol=0, atol=1e-8)


def test_weighted_system_matches_direct_solve(blobs):
    X, y, Xt, _ = blobs
    C, gamma = 2.0, 0.05
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    sw = np.linspace(0.5, 2.0, len(y))
    clf = KELMClassifier(C=C, gamma=gamma, class_weight=cw).fit(X, y, sample_weight=sw)
    w = sw * np.array([cw[c] for c in y])
    K = rbf_kernel(X, X, gamma=gamma)
    beta = np.linalg.solve(np.diag(1.0 / (C * w)) + K, _targets(y, 3))
    np.testing.assert_allclose(
        clf.decision_function(Xt), rbf_kernel(Xt, X, gamma=gamma) @ beta, rtol=0, atol=1e-8
    )


def test_integer_weight_equals_repeating_samples(blobs):
    X, y, Xt, _ = blobs
    sw = np.ones(len(y))
    sw[:20] = 3.0
    X_rep = np.concatenate([X, X[:20], X[:20]])
    y_rep = np.concatenate([y, y[:20], y[:20]])
    for cw in (None, "log"):
        a = KELMClassifier(class_weight=cw).fit(X, y, sample_weight=sw)
        b = KELMClassifier(class_weight=cw).fit(X_rep, y_rep)
        assert a.gamma_ == pytest.approx(b.gamma_, rel=1e-12)
        np.testing.assert_allclose(a.decision_function(Xt), b.decision_function(Xt), atol=1e-8)


def test_gamma_scale_and_auto(blobs):
    X, y, _, _ = blobs
    assert KELMClassifier().fit(X, y).gamma_ == pytest.approx(1.0 / (X.shape[1] * X.var()))
    assert KELMClassifier(gamma="auto").fit(X, y).gamma_ == pytest.approx(1.0 / X.shape[1])


def test_binary_decision_is_score_of_second_class():
    X, y = make_blobs(n_samples=80, centers=2, random_state=1)
    clf = KELMClassifier(gamma=0.1).fit(X, y)
    d = clf.decision_function(X)
    assert d.shape == (80,)
    np.testing.assert_allclose(clf._scores(X)[:, 0], -d, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(d > 0).astype(int)])


def test_predict_proba_is_softmax_of_scores(blobs):
    X, y, Xt, _ = blobs
    clf = KELMClassifier(gamma=0.05).fit(X, y)
    p, d = clf.predict_proba(Xt), clf.decision_function(Xt)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(Xt))


def test_rbf_solves_circles_linear_cannot():
    X, y = make_circles(n_samples=300, noise=0.05, factor=0.4, random_state=0)
    Xt, yt = make_circles(n_samples=200, noise=0.05, factor=0.4, random_state=1)
    acc_rbf = KELMClassifier(C=10.0, kernel="rbf", gamma=2.0).fit(X, y).score(Xt, yt)
    acc_lin = KELMClassifier(C=10.0, kernel="linear").fit(X, y).score(Xt, yt)
    assert acc_rbf > 0.97
    assert acc_lin < 0.75


def test_missing_class_only_seen_classes(blobs):
    X, y, Xt, _ = blobs
    labels = np.array([0, 2, 5])[y]  # label set {0, 2, 5}; 1, 3, 4 never seen
    clf = KELMClassifier(gamma=0.05).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, [0, 2, 5])
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3)
    assert set(np.unique(clf.predict(Xt))) <= {0, 2, 5}
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[proba.argmax(axis=1)])


def test_string_labels(blobs):
    X, y, Xt, yt = blobs
    names = np.array(["angry", "happy", "sad"])
    clf = KELMClassifier(gamma=0.05).fit(X, names[y])
    assert clf.score(Xt, names[yt]) > 0.9


def test_nystroem_with_all_landmarks_equals_exact(blobs):
    X, y, Xt, _ = blobs
    exact = KELMClassifier(C=2.0, gamma=0.05).fit(X, y)
    nys = KELMClassifier(
        C=2.0, gamma=0.05, approximation="nystroem", n_components=len(X), random_state=0
    ).fit(X, y)
    assert nys.coef_.shape == (len(X), 3)
    np.testing.assert_allclose(nys.decision_function(Xt), exact.decision_function(Xt), atol=1e-6)


def test_nystroem_approximation_close_to_exact():
    X, y = make_blobs(n_samples=600, centers=4, n_features=8, cluster_std=3.0, random_state=3)
    Xt = X[400:]
    exact = KELMClassifier(C=5.0).fit(X[:400], y[:400])
    nys = KELMClassifier(C=5.0, approximation="nystroem", n_components=150, random_state=0).fit(
        X[:400], y[:400]
    )
    d_e, d_n = exact.decision_function(Xt), nys.decision_function(Xt)
    assert np.mean(np.abs(d_e - d_n)) < 0.05
    assert np.mean(exact.predict(Xt) == nys.predict(Xt)) >= 0.97


def test_max_train_subsamples_with_seed(blobs):
    X, y, Xt, _ = blobs
    a = KELMClassifier(max_train=60, random_state=0).fit(X, y)
    b = KELMClassifier(max_train=60, random_state=0).fit(X, y)
    c = KELMClassifier(max_train=60, random_state=1).fit(X, y)
    assert a.X_fit_.shape == (60, X.shape[1])
    np.testing.assert_array_equal(a.X_fit_, b.X_fit_)
    assert not np.array_equal(a.X_fit_, c.X_fit_)
    # every kept row is a training row
    assert all((X == row).all(axis=1).any() for row in a.X_fit_)


def test_deterministic_given_random_state(blobs):
    X, y, Xt, _ = blobs
    for params in (
        {},
        {"approximation": "nystroem", "n_components": 50},
        {"max_train": 100, "class_weight": "log"},
    ):
        p1 = KELMClassifier(random_state=7, **params).fit(X, y).predict_proba(Xt)
        p2 = KELMClassifier(random_state=7, **params).fit(X, y).predict_proba(Xt)
        np.testing.assert_array_equal(p1, p2)


def test_log_class_weight_changes_rare_class_ridge():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 4))
    y = np.r_[np.zeros(150, int), np.ones(10, int)]
    X[y == 1] += 0.7
    plain = KELMClassifier(gamma=0.2).fit(X, y)
    weighted = KELMClassifier(gamma=0.2, class_weight="log", class_weight_r=0.47).fit(X, y)
    # w_1 = ln(0.47 * 160 / 10) = 2.02, w_0 = 1: the minority class gets a smaller ridge
    w = np.where(y == 1, np.log(0.47 * 160 / 10), 1.0)
    K = rbf_kernel(X, X, gamma=0.2)
    beta = np.linalg.solve(np.diag(1.0 / w) + K, _targets(y, 2))
    np.testing.assert_allclose(weighted.dual_coef_, beta, atol=1e-8)
    assert (weighted.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()


def test_chunked_decision_matches_unchunked(blobs, monkeypatch):
    X, y, Xt, _ = blobs
    clf = KELMClassifier(gamma=0.05).fit(X, y)
    full = clf.decision_function(Xt)
    monkeypatch.setattr("pipeline.models.kelm._BLOCK_ELEMS", len(X) * 7)  # 7-row blocks
    np.testing.assert_allclose(clf.decision_function(Xt), full, atol=1e-12)
    np.testing.assert_allclose(
        KELMClassifier(gamma=0.05).fit(X, y).dual_coef_, clf.dual_coef_, atol=1e-10
    )


@pytest.mark.parametrize(
    "params",
    [
        {"C": 0},
        {"kernel": "poly"},
        {"gamma": -1.0},
        {"gamma": "wide"},
        {"approximation": "rff"},
        {"class_weight": "inverse"},
        {"max_train": 1},
    ],
)
def test_invalid_params_raise(blobs, params):
    X, y, _, _ = blobs
    with pytest.raises(ValueError):
        KELMClassifier(**params).fit(X, y)


def test_single_class_raises():
    with pytest.raises(ValueError, match="1 class"):
        KELMClassifier().fit(np.ones((5, 2)), np.zeros(5))
