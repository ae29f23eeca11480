"""Seed 002's audio branch: VGGish (sequence geometry) trained on EmoDB, then the
``vggish_seq`` backbone of ``embed_audio``."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.embed.audio_features import load_audio_backbone
from pipeline.embed.vggish import VGGishSeqNet, embed_vggish_seq, seq_log_mel
from pipeline.errors import PipelineError
from pipeline.models import checkpoint as ck
from pipeline.models.pretrain_vggish import pretrain_vggish
from tests.pipeline.models.test_pretrain import write_emodb


def _cfg(**kw):
    base = dict(
        seed=0,
        device="cpu",
        dev_speakers=("03",),
        test_speakers=("09",),
        segment_s=0.7,
        dropout=0.0,
        epochs=5,
        patience=5,
        lr=1e-4,
        weight_decay=0.0,
        batch_size=2,  # enough steps for batch norm's running statistics to settle
    )
    return SimpleNamespace(**{**base, **kw})


def test_pretrain_vggish_learns_pitch_and_feeds_the_vggish_seq_backbone(tmp_path):
    write_emodb(tmp_path)  # anger at 300 Hz, sadness at 2 kHz; 0.5 s utterances
    net, classes, report = pretrain_vggish(_cfg(), tmp_path)
    assert isinstance(net, VGGishSeqNet) and len(classes) == 7
    assert report["train_segments"] == 12  # speakers 11 and 12, one padded 0.7 s segment each
    assert report["splits"]["test"]["n"] == 6 and report["splits"]["test"]["accuracy"] == 1.0
    # the training frames' per-band statistics are part of the network
    assert not torch.allclose(net.band_mean, torch.zeros(128))
    ckpt = tmp_path / "model.pt"
    ck.save_checkpoint(ckpt, net, classes, "EmoDB")
    bb = load_audio_backbone(
        "vggish_seq", pretrained_dir=None, weights=str(ckpt), device="cpu", rate_hz=5.0
    )
    wave = np.random.default_rng(0).normal(size=16000 * 3).astype(np.float32)  # 3 s, 75 frames
    t, x = bb.embed(wave, 16000, 3.0)
    assert bb.dim == 128 and x.shape == (64, 128)  # four complete groups of 16 frames
    np.testing.assert_allclose(t, 0.04 * np.arange(64) + 0.02)
    frames = torch.from_numpy(seq_log_mel(wave, 16000)[None, None, :64])
    with torch.no_grad():
        direct = net.embed(frames)[0].numpy()  # [4, 128]
    np.testing.assert_allclose(x, np.repeat(direct, 16, axis=0), atol=1e-5)
    ck.save_checkpoint(ckpt, net, classes, "EmoDB", skipped="no wav files")
    with pytest.raises(PipelineError, match="pre-training was skipped"):
        load_audio_backbone(
            "vggish_seq", pretrained_dir=None, weights=str(ckpt), device="cpu", rate_hz=5.0
        )


def test_long_audio_is_embedded_in_the_papers_480_frame_chunks():
    torch.manual_seed(0)
    net = VGGishSeqNet(7).eval()
    wave = np.random.default_rng(1).normal(size=16000 * 25).astype(np.float32)
    x, t = embed_vggish_seq(net, wave, 16000, batch_size=1)
    frames = seq_log_mel(wave, 16000)  # 625 frames: chunks of 480 and 144 (one frame dropped)
    assert len(frames) == 625 and x.shape == (624, 128) and t[-1] == pytest.approx(24.94)
    with torch.no_grad():
        second = net.embed(torch.from_numpy(frames[None, None, 480:624]))[0].numpy()  # [9, 128]
    np.testing.assert_allclose(x[480::16], second, atol=1e-5)
    assert (x[480:496] == x[480]).all()  # each embedding held over its 16 frames


def test_pretrain_vggish_without_emodb_returns_the_seeded_untrained_net(tmp_path):
    net, _, report = pretrain_vggish(_cfg(), tmp_path)
    again, _, _ = pretrain_vggish(_cfg(), tmp_path)
    assert report == {"skipped": f"{tmp_path}: no EmoDB wav files (wav/*.wav)"}
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values())
    )
