"""Tests for pipeline.models.lstm (LSTM sequence classifier)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.lstm import (
    LSTMSequenceClassifier,
    _masked_ce_sum,
    resolve_class_weights,
    split_validation,
)

torch.set_num_threads(1)

FAST = dict(hidden=16, layers=1, lr=0.01, batch_size=32)


def _sign_task(n: int, seed: int, steps: int = 12, dim: int = 3):
    """Class = sign of the mean of feature 0 over the sequence (noisy per step)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, steps, dim)).astype(np.float32)
    X[:, :, 0] += rng.choice([-0.6, 0.6], size=(n, 1))
    y = (X[:, :, 0].mean(axis=1) > 0).astype(int)
    return X, y


def _step_task(n: int, seed: int, steps: int = 10):
    """Per-step label = 1 where feature 0 > 0 (sequence-to-sequence)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, steps, 2)).astype(np.float32)
    return X, (X[:, :, 0] > 0).astype(int)


def test_learns_sequence_to_one_task_quickly():
    X, y = _sign_task(400, seed=0)
    Xt, yt = _sign_task(200, seed=1)
    clf = LSTMSequenceClassifier(epochs=25, patience=5, random_state=0, **FAST).fit(X, y)
    assert clf.score(Xt, yt) > 0.9
    proba = clf.predict_proba(Xt)
    assert proba.shape == (200, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_deterministic_given_random_state_and_leaves_global_rng_alone():
    X, y = _sign_task(120, seed=2)
    params = dict(epochs=3, dropout=0.3, layers=2, hidden=8, random_state=5)
    state = torch.get_rng_state()
    p1 = LSTMSequenceClassifier(**params).fit(X, y).predict_proba(X)
    assert torch.equal(torch.get_rng_state(), state)
    p2 = LSTMSequenceClassifier(**params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = LSTMSequenceClassifier(**{**params, "random_state": 6}).fit(X, y).predict_proba(X)
    assert not np.array_equal(p1, p3)


def test_early_stopping_on_stalled_validation_loss():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 5, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=150)  # pure noise: val loss stalls fast
    clf = LSTMSequenceClassifier(
        epochs=200,
        patience=3,
        lr=0.02,
        hidden=16,
        layers=1,
        validation_fraction=0.3,
        random_state=0,
    ).fit(X, y)
    assert clf.n_epochs_ < 200
    assert len(clf.history_) == clf.n_epochs_
    val = [h["val_loss"] for h in clf.history_]
    assert clf.best_epoch_ == int(np.argmin(val)) + 1
    assert clf.n_epochs_ == clf.best_epoch_ + 3
    assert [h["epoch"] for h in clf.history_] == list(range(1, clf.n_epochs_ + 1))


def test_given_validation_set_and_best_weights_restored():
    X, y = _sign_task(200, seed=4)
    Xv, yv = _sign_task(60, seed=5)
    clf = LSTMSequenceClassifier(epochs=6, patience=None, random_state=0, **FAST)
    clf.fit(X, y, X_val=Xv, y_val=yv)
    assert len(clf.history_) == 6  # no early stopping with patience=None
    p = clf.predict_proba(Xv)
    nll = -np.mean(np.log(p[np.arange(len(yv)), yv]))
    assert nll == pytest.approx(clf.history_[clf.best_epoch_ - 1]["val_loss"], rel=1e-4)
    assert all(h["train_loss"] > 0 for h in clf.history_)


def test_no_validation_runs_all_epochs():
    X, y = _sign_task(40, seed=6)
    clf = LSTMSequenceClassifier(epochs=4, validation_fraction=0.0, random_state=0, **FAST)
    clf.fit(X, y)
    assert clf.n_epochs_ == clf.best_epoch_ == 4
    assert all(h["val_loss"] is None for h in clf.history_)


def test_sequence_to_sequence_with_masked_labels():
    X, y = _step_task(300, seed=7)
    Xt, yt = _step_task(100, seed=8)
    y_masked = y.copy()
    rng = np.random.default_rng(0)
    y_masked[rng.random(y.shape) < 0.5] = -1  # half the steps unlabelled
    clf = LSTMSequenceClassifier(epochs=15, random_state=0, **FAST).fit(X, y_masked)
    assert clf.seq2seq_
    np.testing.assert_array_equal(clf.classes_, [0, 1])  # -1 is not a class
    proba = clf.predict_proba(Xt)
    assert proba.shape == (100, 10, 2)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-12)
    assert clf.predict(Xt).shape == (100, 10)
    assert clf.score(Xt, yt) > 0.9
    # score skips -1 targets
    yt_m = yt.copy()
    yt_m[:, ::2] = -1
    pred = clf.predict(Xt)
    assert clf.score(Xt, yt_m) == pytest.approx(np.mean(pred[:, 1::2] == yt[:, 1::2]))


def test_masked_loss_ignores_minus_one():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 3, generator=g)
    target = torch.tensor([[0, 1, -1, 2, -1]] * 4)
    keep = target != -1
    ref = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
    s, d = _masked_ce_sum(logits, target, None)
    assert float(d) == int(keep.sum())
    torch.testing.assert_close(s, ref)
    w = torch.tensor([1.0, 2.0, 3.0])
    s_w, d_w = _masked_ce_sum(logits, target, w)
    torch.testing.assert_close(
        s_w / d_w,
        torch.nn.CrossEntropyLoss(weight=w, ignore_index=-1)(
            logits.reshape(-1, 3), target.reshape(-1)
        ),
    )
    # label smoothing: the targets mix in 1/K of each class, still over labelled steps only
    s_s, d_s = _masked_ce_sum(logits, target, None, 0.3)
    log_p = torch.log_softmax(logits[keep], dim=-1)
    soft = torch.nn.functional.one_hot(target[keep], 3) * 0.7 + 0.3 / 3
    torch.testing.assert_close(s_s, -(soft * log_p).sum())
    assert float(d_s) == int(keep.sum())


def test_minus_one_rows_dropped_in_sequence_to_one():
    X, y = _sign_task(100, seed=9)
    y = y.copy()
    y[:30] = -1
    clf = LSTMSequenceClassifier(epochs=2, random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    clf_plain = LSTMSequenceClassifier(epochs=2, ignore_label=None, random_state=0, **FAST)
    np.testing.assert_array_equal(clf_plain.fit(X, y).classes_, [-1, 0, 1])


def test_two_dimensional_input_is_one_step():
    X, y = _sign_task(200, seed=10, steps=1)
    clf = LSTMSequenceClassifier(epochs=10, random_state=0, **FAST).fit(X[:, 0], y)
    assert clf.n_features_in_ == 3
    np.testing.assert_array_equal(clf.predict_proba(X[:, 0]), clf.predict_proba(X))
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(np.zeros((2, 4, 5), dtype=np.float32))


def test_class_weight_options():
    classes = np.array([0, 1, 2])
    y_idx = np.repeat([0, 1, 2, -1], [70, 20, 10, 50])
    np.testing.assert_allclose(
        resolve_class_weights("log", classes, y_idx, 0.34), [1.0, 1.0, np.log(3.4)]
    )
    np.testing.assert_allclose(
        resolve_class_weights("balanced", classes, y_idx, 0.34), 100 / (3 * np.array([70, 20, 10]))
    )
    np.testing.assert_allclose(
        resolve_class_weights({2: 5.0}, classes, y_idx, 0.34), [1.0, 1.0, 5.0]
    )
    assert resolve_class_weights(None, classes, y_idx, 0.34) is None
    with pytest.raises(ValueError):
        resolve_class_weights("inverse", classes, y_idx, 0.34)


def test_split_validation_seeded():
    tr, va = split_validation(50, 0.2, seed=3)
    assert len(va) == 10 and len(tr) == 40
    assert sorted(np.r_[tr, va].tolist()) == list(range(50))
    np.testing.assert_array_equal(split_validation(50, 0.2, seed=3)[1], va)
    assert len(split_validation(3, 0.1, seed=0)[1]) == 0  # rounds to 0: no hold-out


@pytest.mark.gpu
def test_fits_and_predicts_on_cuda():
    X, y = _sign_task(64, seed=11)
    clf = LSTMSequenceClassifier(epochs=2, device="cuda", random_state=0, **FAST).fit(X, y)
    assert next(clf.module_.parameters()).is_cuda
    proba = clf.predict_proba(X)
    assert proba.shape == (64, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_select_uar_keeps_the_epoch_with_the_best_dev_recall():
    from pipeline.models.lstm import fit_torch_classifier

    class MeanNet(torch.nn.Module):  # sequence-to-one: a linear layer on the mean step
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x.mean(dim=1))

    X, y = _sign_task(120, seed=7)
    Xv, yv = _sign_task(40, seed=8)
    yv[:20] = 0  # an unbalanced dev set: its UAR weighs the rare class up
    torch.manual_seed(0)
    net = MeanNet()
    history, best = fit_torch_classifier(
        net, torch.tensor(X), torch.tensor(y), torch.tensor(Xv), torch.tensor(yv),
        epochs=8, lr=0.05, batch_size=16, patience=None, tol=0.0, class_weights=None,
        device="cpu", generator=torch.Generator().manual_seed(0), select="uar",
    )  # fmt: skip
    uar = [h["val_uar"] for h in history]
    assert best == int(np.argmax(uar)) + 1  # the first epoch of the highest dev UAR
    with torch.no_grad():
        pred = net(torch.tensor(Xv)).argmax(1).numpy()
    recall = np.mean([(pred[yv == k] == k).mean() for k in (0, 1)])
    assert recall == pytest.approx(uar[best - 1])  # its weights were restored
    with pytest.raises(ValueError, match="select must be"):
        fit_torch_classifier(
            net, torch.tensor(X), torch.tensor(y), None, None, epochs=1, lr=0.01,
            batch_size=16, patience=None, tol=0.0, class_weights=None, device="cpu",
            generator=torch.Generator(), select="f1",
        )  # fmt: skip
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        fit_torch_classifier(
            net, torch.tensor(X), torch.tensor(y), None, None, epochs=1, lr=0.01,
            batch_size=16, patience=None, tol=0.0, class_weights=None, device="cpu",
            generator=torch.Generator(), precision="fp16",
        )  # fmt: skip
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        fit_torch_classifier(
            net, torch.tensor(X), torch.tensor(y), None, None, epochs=1, lr=0.01,
            batch_size=16, patience=None, tol=0.0, class_weights=None, device="cpu",
            generator=torch.Generator(), label_smoothing=1.0,
        )  # fmt: skip
