"""Seed 002's conv pre-transform + LSTM fusion network (pipeline.models.conv_lstm_fusion)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.metrics import ccc
from pipeline.models.conv_lstm_fusion import ConvLSTMFusionNet, TemporalPreTransform
from pipeline.models.fusion_inputs import pack_inputs
from pipeline.models.fusion_net import va_loss
from pipeline.models.losses import ccc_loss
from pipeline.models.lstm import fit_torch_classifier

PAPER = dict(channels=64, kernels=[1, 3, 5], pool=3, lstm_hidden=256, lstm_layers=2, dropout=0.2)
SMALL = dict(channels=8, kernels=[1, 3, 5], pool=3, lstm_hidden=16, lstm_layers=2, dropout=0.0)


def _packed(rng, n, T, dv, da, p_valid=0.7):
    v, a = rng.normal(size=(n, T, dv)), rng.normal(size=(n, T, da))
    vv, av = rng.random((n, T)) < p_valid, rng.random((n, T)) < p_valid
    return pack_inputs(v, vv, a, av), vv, av


@pytest.mark.parametrize("n_out", [6, 2])
def test_output_shape_for_expr_logits_and_va_outputs(n_out):
    torch.manual_seed(0)
    net = ConvLSTMFusionNet(7, 5, n_out, **PAPER).eval()
    x, _, _ = _packed(np.random.default_rng(0), 4, 27, 7, 5)
    out = net(torch.from_numpy(x))
    assert out.shape == (4, n_out)
    assert net.lstm.hidden_size == 256 and net.lstm.num_layers == 2
    assert net.lstm.input_size == 2 * 64


def test_pre_transform_keeps_every_third_step_and_matches_a_direct_computation():
    torch.manual_seed(0)
    pre = TemporalPreTransform(4, 6, (1, 3, 5), 3)
    x = torch.randn(2, 27, 4)
    out = pre(x)
    assert out.shape == (2, 9, 6)  # the paper: 27 steps -> 9
    assert pre(torch.randn(2, 28, 4)).shape == (2, 9, 6)  # a remainder step is dropped
    h = x.transpose(1, 2)
    parts = [F.conv1d(h, c.weight, c.bias, padding=c.kernel_size[0] // 2) for c in pre.convs]
    h = torch.relu(F.conv1d(torch.cat(parts, 1), pre.project.weight, pre.project.bias))
    direct = torch.stack([h[:, :, 3 * j : 3 * j + 3].amax(dim=2) for j in range(9)], dim=1)
    torch.testing.assert_close(out, direct)


def test_masked_bins_cannot_change_the_output():
    torch.manual_seed(0)
    net = ConvLSTMFusionNet(3, 2, 4, **SMALL).eval()
    rng = np.random.default_rng(1)
    x, vv, av = _packed(rng, 5, 27, 3, 2)
    out = net(torch.from_numpy(x))
    y = x.copy()
    y[..., :3][~vv] = rng.normal(size=(int((~vv).sum()), 3)) * 100  # face values under False
    y[..., 4:6][~av] = np.nan  # audio values under False: even NaN
    torch.testing.assert_close(net(torch.from_numpy(y)), out)
    z = x.copy()
    z[..., 3][~vv] = 1.0  # but the flag itself is an input: marking them valid changes it
    assert not torch.allclose(net(torch.from_numpy(z)), out)


def _separable(rng, n_per_class, n_classes, T=9):
    """Windows whose face embedding mean says the class; audio is noise, 20 % bins invalid."""
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = np.eye(n_classes)[y][:, None, :] * 2
    v = centres + rng.normal(0, 0.3, (len(y), T, n_classes))
    a = rng.normal(size=(len(y), T, 2))
    x = pack_inputs(v, rng.random((len(y), T)) > 0.2, a, rng.random((len(y), T)) > 0.2)
    return torch.from_numpy(x), y


def test_overfits_a_tiny_separable_expression_set():
    rng = np.random.default_rng(0)
    X, y = _separable(rng, 8, 3)
    torch.manual_seed(0)
    net = ConvLSTMFusionNet(3, 2, 3, **SMALL)
    fit_torch_classifier(
        net,
        X,
        torch.from_numpy(y),
        None,
        None,
        epochs=60,
        lr=0.01,
        batch_size=8,
        patience=None,
        tol=0.0,
        class_weights=None,
        device="cpu",
        generator=torch.Generator().manual_seed(0),
    )
    pred = net.eval()(X).argmax(1).numpy()
    assert (pred == y).mean() == 1.0


def test_reaches_a_high_ccc_on_a_tiny_va_set_with_the_ccc_loss():
    rng = np.random.default_rng(0)
    n, T = 32, 9
    level = rng.uniform(-0.8, 0.8, (n, 2))  # valence/arousal, carried by the audio embedding
    a = level[:, None, :] + rng.normal(0, 0.05, (n, T, 2))
    v = rng.normal(size=(n, T, 3))
    X = torch.from_numpy(pack_inputs(v, np.ones((n, T), bool), a, np.ones((n, T), bool)))
    Y = torch.from_numpy(level.astype(np.float32))
    torch.manual_seed(0)
    net = ConvLSTMFusionNet(3, 2, 2, **SMALL)
    history, _ = fit_torch_classifier(
        net,
        X,
        Y,
        None,
        None,
        epochs=80,
        lr=0.01,
        batch_size=16,
        patience=None,
        tol=0.0,
        class_weights=None,
        device="cpu",
        generator=torch.Generator().manual_seed(0),
        loss_fn=va_loss,
    )
    pred = torch.tanh(net.eval()(X)).detach().numpy()
    assert np.mean([ccc(level[:, d], pred[:, d]) for d in range(2)]) > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_ccc_loss_is_one_minus_the_mean_ccc_of_the_metrics():
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(50, 2))
    target = 0.6 * pred + rng.normal(0.3, 0.8, size=(50, 2))  # correlated, shifted, rescaled
    loss = float(ccc_loss(torch.from_numpy(pred), torch.from_numpy(target)))
    expected = 1 - np.mean([ccc(target[:, d], pred[:, d]) for d in range(2)])
    assert loss == pytest.approx(expected, abs=1e-6)
    out = torch.from_numpy(np.arctanh(np.clip(pred / 4, -0.99, 0.99)))  # va_loss applies tanh
    assert float(va_loss(out, torch.from_numpy(target))) == pytest.approx(
        1 - np.mean([ccc(target[:, d], np.tanh(out[:, d].numpy())) for d in range(2)]), abs=1e-6
    )
