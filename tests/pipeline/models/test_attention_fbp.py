"""Seed-001 network: attention pooling (eq. 1-7), FBP (eq. 9) and the whole net, against
direct loop computations of the paper's equations."""

import numpy as np
import pytest
import torch

from pipeline.models.attention_fbp import (
    ATTENTION_KINDS,
    AttentionFBPNet,
    AttentionPool,
    FactorizedBilinearPooling,
    masked_softmax_pool,
)
from pipeline.models.fusion_inputs import pack_inputs
from pipeline.models.lstm import fit_torch_classifier


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _reference(pool: AttentionPool, f: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The paper's equations written as loops over windows and positions, in float64."""
    p = {k: v.detach().double().numpy() for k, v in pool.named_parameters()}
    out = []
    for fb, mb in zip(f, mask):
        valid = [fi for fi, m in zip(fb, mb) if m]
        if not valid:
            out.append(np.zeros(pool.out_dim))
            continue
        if pool.kind == "transformer":  # eq. 5-7
            g = [
                np.exp(p["u.weight"] @ np.tanh(p["w2.weight"] @ fi + p["w2.bias"])) for fi in valid
            ]
            out.append(sum(gi * fi for gi, fi in zip(g, valid)) / sum(g))
            continue
        a = [_sigmoid(p["w0.weight"] @ fi) for fi in valid]  # eq. 1
        f_s = sum(ai * fi for ai, fi in zip(a, valid)) / sum(a)  # eq. 2
        if pool.kind == "self":
            out.append(f_s)
            continue
        cat = [np.concatenate([fi, f_s]) for fi in valid]
        b = [_sigmoid(p["w1.weight"] @ ci) for ci in cat]  # eq. 3
        out.append(
            sum(ai * bi * ci for ai, bi, ci in zip(a, b, cat))
            / sum(ai * bi for ai, bi in zip(a, b))
        )
    return np.array(out).reshape(len(f), pool.out_dim)


def _pool(kind: str, dim: int = 4) -> AttentionPool:
    torch.manual_seed(0)
    pool = AttentionPool(dim, kind, hidden=6).double()
    with torch.no_grad():  # larger weights than the default init: weights far from uniform
        for prm in pool.parameters():
            prm.mul_(3.0)
    return pool


@pytest.fixture
def windows():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(4, 5, 4))
    mask = np.array(
        [[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=bool
    )
    return f, mask


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_attention_equals_the_equations(kind, windows):
    f, mask = windows
    pool = _pool(kind)
    got = pool(torch.from_numpy(f), torch.from_numpy(mask)).detach().numpy()
    assert got.shape == (4, 8 if kind == "relation" else 4)
    np.testing.assert_allclose(got, _reference(pool, f, mask), rtol=1e-10, atol=1e-12)
    # one valid position: its own vector ([f_i : f_i] for relation-attention)
    one = f[2, 3] if kind != "relation" else np.concatenate([f[2, 3], f[2, 3]])
    np.testing.assert_allclose(got[2], one, rtol=1e-12)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_masked_values_change_nothing_and_empty_windows_are_zero(kind, windows):
    f, mask = windows
    pool = _pool(kind)
    x = torch.from_numpy(f).requires_grad_(True)
    m = torch.from_numpy(mask)
    out = pool(x, m)
    junk = f.copy()
    junk[~mask] = np.array([1e30, -1e30, np.nan, np.inf])  # anything under a False mask
    np.testing.assert_array_equal(
        pool(torch.from_numpy(junk), m).detach().numpy(), out.detach().numpy()
    )
    assert (out[3] == 0).all() and torch.isfinite(out).all()  # no valid position -> zeros
    out.pow(2).sum().backward()
    grads = [x.grad] + [prm.grad for prm in pool.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert (x.grad[torch.from_numpy(~mask)] == 0).all()  # masked inputs get no gradient
    assert x.grad[torch.from_numpy(mask)].abs().sum() > 0


def test_masked_softmax_pool_ignores_invalid_positions():
    scores = torch.tensor([[0.0, 1.0, 50.0], [3.0, -2.0, 7.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    values = torch.arange(6.0).reshape(1, 3, 2).expand(2, 3, 2)
    out = masked_softmax_pool(scores, mask, values)
    w = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(out[0].numpy(), w @ [[0, 1], [2, 3]], rtol=1e-6)
    assert (out[1] == 0).all()  # no valid position: zeros, whatever the values


def test_unknown_attention_and_fusion_are_refused():
    with pytest.raises(ValueError, match="attention kind"):
        AttentionPool(4, "cross")
    with pytest.raises(ValueError, match="fusion must be one of"):
        AttentionFBPNet(4, 2, 3, fusion="sum")


def test_fbp_sum_pools_groups_of_k_and_normalises():
    torch.manual_seed(0)
    fbp = FactorizedBilinearPooling(3, 2, k=4, out=5, dropout=0.5).double().eval()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    p = {k: v.detach().numpy() for k, v in fbp.named_parameters()}
    prod = (x @ p["u.weight"].T + p["u.bias"]) * (y @ p["v.weight"].T + p["v.bias"])
    assert prod.shape == (6, 20)
    pooled = np.array([[row[j * 4 : j * 4 + 4].sum() for j in range(5)] for row in prod])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    np.testing.assert_allclose(fbp.pool(xt, yt).detach().numpy(), pooled, rtol=1e-12)
    z = fbp(xt, yt).detach().numpy()
    power = np.sign(pooled) * np.sqrt(np.abs(pooled) + 1e-8)
    assert z.shape == (6, 5)
    np.testing.assert_allclose(z, power / np.linalg.norm(power, axis=1, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-12)
    fbp.power_norm = False
    plain = fbp(xt, yt).detach().numpy()
    np.testing.assert_allclose(plain, pooled / np.linalg.norm(pooled, axis=1, keepdims=True))


def _two_modality_set(n: int = 40, seed: int = 0):
    """3 classes that need both modalities: the face says 'class 0 or not', the audio says
    'class 1 or not' (class 2: neither). Some bins have no face or no audio."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    T, dv, da = 6, 8, 4
    v = rng.normal(size=(n, T, dv)) + np.where(y == 0, 1.5, -1.5)[:, None, None]
    a = 3 * rng.normal(size=(n, T, da)) + np.where(y == 1, 6.0, -6.0)[:, None, None] - 40.0
    vv, av = rng.random((n, T)) > 0.3, rng.random((n, T)) > 0.3
    vv[:, 0] = av[:, 0] = True
    x = pack_inputs(v, vv, a, av)
    return torch.from_numpy(x), torch.from_numpy(y), dv, da


def _train(net, x, y, seed: int = 0, epochs: int = 40):
    return fit_torch_classifier(
        net,
        x,
        y,
        None,
        None,
        epochs=epochs,
        lr=1e-2,
        batch_size=8,
        patience=None,
        tol=0.0,
        class_weights=None,
        device="cpu",
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize(
    "hyper",
    [
        dict(fusion="fbp", visual_attention="self", audio_attention="relation", fbp_out=32),
        dict(fusion="concat", visual_attention="transformer", audio_attention="self"),
    ],
    ids=["fbp", "concat"],
)
def test_net_learns_a_two_modality_set_with_the_shared_loop(hyper):
    x, y, dv, da = _two_modality_set()
    torch.manual_seed(0)
    net = AttentionFBPNet(dv, da, 3, **hyper)  # as the fusion_net stage builds it
    history, best = _train(net, x, y)
    x_new, y_new, _, _ = _two_modality_set(n=60, seed=1)  # fresh windows: no memorising
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
        acc_new = (net(x_new).argmax(1) == y_new).float().mean().item()
    assert acc >= 0.95 and best == 40 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert acc_new >= 0.9  # without either modality it stays near 2/3


def test_net_output_shapes_masking_and_determinism():
    x, y, dv, da = _two_modality_set(n=12)
    out = {}
    for fusion in ("fbp", "concat"):
        for kind in ATTENTION_KINDS:
            torch.manual_seed(0)
            net = AttentionFBPNet(dv, da, 2, kind, kind, fusion=fusion, fbp_out=16).eval()
            out[fusion, kind] = net(x)
            assert out[fusion, kind].shape == (12, 2)
            junk = x.clone()  # values of bins flagged invalid do not matter
            junk[..., :dv] += 100 * (junk[..., dv : dv + 1] < 0.5)
            torch.testing.assert_close(net(junk), out[fusion, kind], rtol=0, atol=0)
    assert not torch.allclose(out["fbp", "self"], out["concat", "self"])

    def trained():
        torch.manual_seed(3)
        net = AttentionFBPNet(dv, da, 3, "relation", "transformer", fbp_out=16, hidden=8)
        _train(net, x, y, seed=5, epochs=3)
        return net

    a, b = trained(), trained()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_net_rebuilds_from_its_init_kwargs_and_state_dict():
    from pipeline.models.persist import module_bytes, module_from_bytes

    x, _, dv, da = _two_modality_set(n=6)
    torch.manual_seed(0)
    net = AttentionFBPNet(dv, da, 2, "transformer", "relation", fbp_out=8, hidden=5).eval()
    back = module_from_bytes(module_bytes(net))
    assert back.init_kwargs == net.init_kwargs
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
