"""Tests for pipeline.metrics: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from pipeline.metrics import ccc, classification_metrics, cpm_from_confusion, va_metrics


def test_classification_hand_computed():
    # Frame 5 (y_true = -1) is masked, leaving yt = [0,0,1,1,2], yp = [0,1,1,1,0]; K = 4.
    # accuracy = 3/5 = 0.6
    # class 0: tp 1, predicted 2, support 2 -> P = R = 1/2 -> F1 = 0.5
    # class 1: tp 2, predicted 3, support 2 -> P = 2/3, R = 1 -> F1 = 2*(2/3)/(5/3) = 0.8
    # class 2: tp 0, predicted 0, support 1 -> F1 = 0;  class 3: absent -> F1 = 0
    # macro F1 over the classes that occur {0,1,2} = (0.5 + 0.8 + 0) / 3 = 0.43333
    # macro F1 over all 4 classes = 1.3 / 4 = 0.325;  weighted = (2*0.5 + 2*0.8 + 1*0) / 5 = 0.52
    # UAR over present classes {0,1,2} = (1/2 + 1 + 0) / 3 = 0.5
    # CPM = 0.67 * 1.3 / 3 + 0.33 * 0.6 = 0.290333 + 0.198 = 0.488333
    y_true = np.array([0, 0, 1, 1, 2, -1])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    m = classification_metrics(y_true, y_pred, 4)
    assert m["n_scored"] == 5
    assert m["accuracy"] == pytest.approx(0.6)
    np.testing.assert_allclose(m["per_class_f1"], [0.5, 0.8, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx(1.3 / 3)
    assert m["macro_f1_all"] == pytest.approx(0.325)
    assert m["weighted_f1"] == pytest.approx(0.52)
    assert m["uar"] == pytest.approx(0.5)
    assert m["cpm"] == pytest.approx(0.67 * 1.3 / 3 + 0.198)
    np.testing.assert_array_equal(
        m["confusion"], [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )


def test_classification_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, size=500)
    y_pred = np.where(rng.random(500) < 0.5, y_true, rng.integers(0, 7, size=500))
    m = classification_metrics(y_true, y_pred, 7)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    weighted = f1_score(y_true, y_pred, average="weighted")
    assert m["weighted_f1"] == pytest.approx(weighted, abs=1e-12)
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["confusion"].sum() == 500
    assert np.trace(m["confusion"]) == np.sum(y_true == y_pred)


def test_masking_equals_dropping_frames():
    rng = np.random.default_rng(1)
    y_true = rng.integers(-1, 7, size=300)
    y_pred = rng.integers(0, 7, size=300)
    keep = y_true != -1
    masked = classification_metrics(y_true, y_pred, 7)
    dropped = classification_metrics(y_true[keep], y_pred[keep], 7)
    assert masked["n_scored"] == keep.sum() < 300
    for key in ("accuracy", "macro_f1", "weighted_f1", "uar", "cpm"):
        assert masked[key] == dropped[key]


def test_missing_classes_do_not_crash():
    # Class 2 is predicted but never true; class 3 is neither. K = 4.
    # class 0: tp 2, pred 2, support 3 -> F1 = 4/5;  class 1: tp 1, pred 1, support 1 -> 1
    # class 2: tp 0, pred 1 -> F1 = 0;  class 3 -> 0.  macro over {0, 1, 2} = 1.8/3 = 0.6;
    # over all four 0.45.  UAR counts only true classes {0, 1}: (2/3 + 1) / 2 = 5/6.
    m = classification_metrics(np.array([0, 0, 0, 1]), np.array([0, 0, 2, 1]), 4)
    np.testing.assert_allclose(m["per_class_f1"], [0.8, 1.0, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx(0.6)
    assert m["macro_f1_all"] == pytest.approx(0.45)
    assert m["macro_f1"] == pytest.approx(f1_score([0, 0, 0, 1], [0, 0, 2, 1], average="macro"))
    assert m["uar"] == pytest.approx(5 / 6)


def test_empty_and_out_of_range_inputs_raise():
    with pytest.raises(ValueError, match="no labelled frames"):
        classification_metrics(np.array([-1, -1]), np.array([0, 1]), 7)
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([0, 7]), 7)


def test_cpm_from_confusion_matches_reference():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 6, size=(5, 200))  # class 6 never true
    y_pred = rng.integers(0, 7, size=(5, 200))
    ref = [classification_metrics(t, p, 7) for t, p in zip(y_true, y_pred)]
    stack = np.stack([m["confusion"] for m in ref])
    np.testing.assert_allclose(cpm_from_confusion(stack), [m["cpm"] for m in ref], atol=1e-12)
    # Hand case of test_classification_hand_computed.
    conf = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert cpm_from_confusion(conf) == pytest.approx(0.67 * 1.3 / 3 + 0.198)


def test_a_perfect_prediction_scores_cpm_1_even_with_an_absent_class():
    y = np.array([0, 1, 1, 2, -1])
    m = classification_metrics(y, np.where(y >= 0, y, 0), 7)
    assert m["cpm"] == pytest.approx(1.0) and m["macro_f1"] == pytest.approx(1.0)
    assert m["macro_f1_all"] == pytest.approx(3 / 7)


def test_ccc_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    # means 2.5; var(x) = var(y) = 1.25; cov = (2.25 - 0.25 - 0.25 + 2.25)/4 = 1 -> 2/2.5
    assert ccc(x, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    # shifted copy: var 2/3 each, cov 2/3, mean gap 1 -> (4/3) / (2/3 + 2/3 + 1) = 4/7
    assert ccc(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(4 / 7)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) < 0
    assert ccc(x - 2.5, 2.5 - x) == pytest.approx(-1.0)


def test_ccc_masking():
    x = np.array([1.0, 2.0, np.nan, 3.0, 100.0])
    y = np.array([2.0, 3.0, 0.0, 4.0, -100.0])
    mask = np.array([True, True, True, True, False])
    # NaN row dropped automatically only when no mask is given; explicit mask keeps it.
    assert ccc(x[:4], y[:4]) == pytest.approx(4 / 7)
    assert ccc(x, y, mask=np.isfinite(x) & mask) == pytest.approx(4 / 7)
    with pytest.raises(ValueError):
        ccc(x, y, mask=np.zeros(5, dtype=bool))


def test_va_metrics_masks_minus_five_per_dimension():
    # Row 1 lacks arousal, row 3 lacks valence (Aff-Wild2 writes -5).
    va_true = np.array([[0.25, 0.5], [0.9, -5.0], [0.75, 0.1], [-5.0, 0.3], [0.0, -0.2]])
    va_pred = va_true + np.array([0.1, -0.1])
    va_pred[1, 1] = va_pred[3, 0] = 0.0
    got = va_metrics(va_true, va_pred)
    v_ok = np.array([True, True, True, False, True])
    a_ok = np.array([True, False, True, True, True])
    assert got["ccc_valence"] == pytest.approx(ccc(va_true[v_ok, 0], va_pred[v_ok, 0]))
    assert got["ccc_arousal"] == pytest.approx(ccc(va_true[a_ok, 1], va_pred[a_ok, 1]))
    assert got["ccc_mean"] == pytest.approx(0.5 * (got["ccc_valence"] + got["ccc_arousal"]))
    # A constant offset of 0.1 only costs the mean-gap term: valence values
    # [0.25, 0.9, 0.75, 0.0] have var 0.133125 -> ccc = 2v / (2v + 0.01).
    var_v = np.var([0.25, 0.9, 0.75, 0.0])
    assert got["ccc_valence"] == pytest.approx(2 * var_v / (2 * var_v + 0.01))
    # Scoring the -5 rows would change the result.
    assert got["ccc_arousal"] != pytest.approx(ccc(va_true[:, 1], va_pred[:, 1]))
