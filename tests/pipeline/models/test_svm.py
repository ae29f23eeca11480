"""Tests for pipeline.models.svm and pipeline.models.class_weights."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from pipeline.models.class_weights import as_sklearn_class_weight, log_class_weights
from pipeline.models.svm import make_svm


# ------------------------------------------------------------------ class weights
def test_log_class_weights_formula():
    y = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])  # N = 100
    w = log_class_weights(y, 4, r=0.47)
    expected = [1.0, 1.0, math.log(47 / 15), math.log(47 / 5)]  # ln(0.94), ln(1.57) < 1
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_log_class_weights_ignore_unlabelled():
    y = np.repeat([0, 1, -1], [80, 20, 500])
    np.testing.assert_allclose(
        log_class_weights(y, 2, r=0.34), [1.0, max(1.0, math.log(0.34 * 100 / 20))], rtol=1e-12
    )
    # a [N, S] label array is counted as a whole
    np.testing.assert_allclose(
        log_class_weights(y.reshape(20, 30), 2, r=0.34), log_class_weights(y, 2, r=0.34)
    )


def test_log_class_weights_absent_class_gets_max_finite_weight(caplog):
    y = np.repeat([0, 1, 3], [90, 8, 2])  # class 2 absent
    with caplog.at_level(logging.WARNING, logger="pipeline.models.class_weights"):
        w = log_class_weights(y, 4, r=0.47)
    assert np.all(np.isfinite(w))
    assert w[2] == w.max() == pytest.approx(math.log(0.47 * 100 / 2))
    assert "absent" in caplog.text


def test_log_class_weights_sample_weight_equals_repetition():
    y = np.array([0, 0, 1, 2, 2, 2])
    sw = np.array([1, 2, 3, 1, 0, 1])
    np.testing.assert_allclose(
        log_class_weights(y, 3, 0.9, sample_weight=sw),
        log_class_weights(np.repeat(y, sw), 3, 0.9),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "y, n_classes, r",
    [([0, 1], 2, 0.0), ([0, 3], 2, 0.5), ([-1, -1], 2, 0.5), ([], 2, 0.5), ([0, 1], 0, 0.5)],
)
def test_log_class_weights_errors(y, n_classes, r):
    with pytest.raises(ValueError):
        log_class_weights(np.asarray(y, dtype=int), n_classes, r)


def test_as_sklearn_class_weight():
    d = as_sklearn_class_weight(np.array([1.0, 2.5]), np.array([3, 7]))
    assert d == {3: 1.0, 7: 2.5}
    assert all(type(k) is int and type(v) is float for k, v in d.items())
    assert as_sklearn_class_weight([1.0], ["sad"]) == {"sad": 1.0}
    with pytest.raises(ValueError):
        as_sklearn_class_weight([1.0, 2.0], [0])


# ---------------------------------------------------------------------------- SVM
@pytest.fixture(scope="module")
def imbalanced():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [120, 30, 10])
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    X = centres[y] + rng.normal(size=(len(y), 3))
    return X * 50.0, y  # large units: the scaler matters


def test_defaults_are_the_paper_setting(imbalanced):
    X, y = imbalanced
    model = make_svm(y=y, n_classes=3)
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["scaler", "svc"]
    svc = model.named_steps["svc"].estimator
    assert (svc.C, svc.kernel, svc.gamma, svc.degree) == (3.0, "poly", 0.1, 3)


def test_class_weights_reach_the_svc(imbalanced):
    X, y = imbalanced
    model = make_svm(y=y, n_classes=3, random_state=0)
    expected = as_sklearn_class_weight(log_class_weights(y, 3, 0.47), np.arange(3))
    assert expected[2] == pytest.approx(math.log(0.47 * 160 / 10)) and expected[0] == 1.0
    assert model.named_steps["svc"].estimator.class_weight == expected
    model.fit(X, y)
    fitted_svc = model.named_steps["svc"].calibrated_classifiers_[0].estimator
    np.testing.assert_allclose(fitted_svc.class_weight_, [expected[c] for c in range(3)])


def test_probabilities_shape_and_sum(imbalanced):
    X, y = imbalanced
    model = make_svm(y=y, n_classes=3, random_state=0).fit(X, y)
    proba = model.predict_proba(X[:25])
    assert proba.shape == (25, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])


def test_separable_toy_problem_reaches_accuracy_one():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    X = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])[y] + rng.normal(scale=0.5, size=(60, 2))
    model = make_svm(y=y, random_state=0).fit(X, y)
    assert model.score(X, y) == 1.0


def test_deterministic(imbalanced):
    X, y = imbalanced
    p1 = make_svm(y=y, random_state=0).fit(X, y).predict_proba(X)
    p2 = make_svm(y=y, random_state=0).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


def test_no_class_weight_and_variants(imbalanced):
    X, y = imbalanced
    assert make_svm(class_weight_r=None).named_steps["svc"].estimator.class_weight is None
    with pytest.raises(ValueError, match="labels y"):
        make_svm()
    bare = make_svm(class_weight_r=None, scale=False, probability=False)
    assert isinstance(bare, SVC) and bare.class_weight is None
    # n_classes defaults to max(y) + 1
    assert set(make_svm(y=y).named_steps["svc"].estimator.class_weight) == {0, 1, 2}


def test_calibration_folds_keep_each_video_on_one_side():
    from pipeline.models.svm import calibration_folds

    rng = np.random.default_rng(0)
    groups = np.repeat([f"v{i}" for i in range(8)], 30)
    y = rng.integers(0, 3, len(groups))
    folds = calibration_folds(y, groups)
    assert len(folds) == 5
    for train, cal in folds:
        assert not set(groups[train]) & set(groups[cal])
        assert set(y[train]) == {0, 1, 2}
    assert sorted(np.concatenate([cal for _, cal in folds]).tolist()) == list(range(len(y)))


def test_calibration_folds_fall_back_to_stratified_when_a_class_lives_in_one_video(caplog):
    from pipeline.models.svm import calibration_folds

    groups = np.repeat(["a", "b", "c"], 10)
    y = np.array([0, 1] * 5 + [0, 1] * 5 + [2] * 10)  # class 2 only in video c
    folds = calibration_folds(y, groups)
    assert "stratified folds" in caplog.text
    assert all(set(y[train]) == {0, 1, 2} for train, _ in folds)


def test_calibration_with_fewer_windows_per_class_than_folds():
    """Three windows per class in six videos: grouped folds (at most 3, the largest class's
    count), and the calibrated SVM fits; a class with a single window is refused by name."""
    from pipeline.models.svm import calibration_folds

    y = np.repeat([0, 1, 2, 3], 3)
    groups = np.repeat([f"v{i}" for i in range(6)], 2)
    folds = calibration_folds(y, groups)
    assert 2 <= len(folds) <= 3
    assert all(set(y[train]) == {0, 1, 2, 3} for train, _ in folds)
    assert all(not set(groups[train]) & set(groups[cal]) for train, cal in folds)
    X = np.random.default_rng(0).normal(size=(len(y), 4)) + y[:, None]
    proba = make_svm(y=y, calibration_cv=folds).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="two or more training windows per class"):
        calibration_folds(np.array([0, 1, 1, 2, 2]), None)
