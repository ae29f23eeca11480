"""Seed 003's feature-level fusion network: segments, packing, freezing, training, scoring."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.errors import NothingToFit, PipelineError
from pipeline.models import feature_fusion as ff
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.segment_audio import SegmentAudioNet
from pipeline.models.vgg_faces import VGGFaceNet
from tests.pipeline.models.test_pretrain import stripes

SR = 16000


def cfg(**kw):
    base = dict(
        segment_s=1.0,
        overlap=0.5,
        faces_per_segment=3,
        pretrained=True,
        freeze_blocks=1,
        hidden=16,
        dropout=0.0,
        epochs=12,
        patience=12,
        lr=3e-3,
        batch_size=8,
        class_weight_r=0.47,
    )
    return SimpleNamespace(**(base | kw))


def checkpoints(tmp_path, skipped=None):
    torch.manual_seed(0)
    face = VGGFaceNet(7, channels=(4, 8))
    audio = SegmentAudioNet(7, filters=4, pools=(8, 8), lstm_hidden=8)
    save_checkpoint(tmp_path / "faces.pt", face, list("abcdefg"), "FER-2013", skipped)
    save_checkpoint(tmp_path / "audio.pt", audio, list("abcdefg"), "EmoDB", skipped)
    return tmp_path / "faces.pt", tmp_path / "audio.pt", face, audio


def test_segment_starts_cover_the_video():
    assert ff.segment_starts(5.0, 2.0, 0.5).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert ff.segment_starts(1.2, 2.0, 0.5).tolist() == [0.0]  # shorter: one segment
    assert ff.segment_starts(4.5, 2.0, 0.0).tolist() == [0.0, 2.0, 4.0]


def test_pack_segments_samples_faces_inside_each_segment_and_flags_the_rest():
    face_t = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 2.0])  # 2.0 s: the start of the third segment
    faces = np.stack([np.full((48, 48), 10 * (i + 1), np.uint8) for i in range(6)])
    wave = np.arange(int(2.5 * SR), dtype=np.float32)
    x = ff.pack_segments(wave, SR, face_t, faces, np.array([0.0, 1.0, 2.0]), 1.0, 3)
    s, px = SR, 48 * 48
    assert x.shape == (3, s + 3 * px + 3)
    assert x[1, 0] == SR and x[1, s - 1] == 2 * SR - 1  # audio of [1, 2) s
    assert x[2, : SR // 2].min() > 0 and x[2, SR // 2 : s].max() == 0  # zero-padded past the end
    seg0 = [x[0, s + j * px] for j in range(3)]
    assert seg0 == [10, 30, 50]  # first, middle and last of the 5 faces in [0, 1)
    assert x[0, -3:].tolist() == [1, 1, 1]
    assert x[1, -3:].tolist() == [0, 0, 0]  # no face in [1, 2): 2.0 s is not in it
    assert x[2, -3:].tolist() == [1, 0, 0] and x[2, s] == 60  # one face in [2, 3)
    no_audio = ff.pack_segments(None, SR, face_t, faces, np.array([0.0]), 1.0, 3)
    assert no_audio[0, :s].max() == 0 and no_audio[0, -3:].sum() == 3


def test_frozen_blocks_keep_their_weights_and_batchnorm_statistics(tmp_path):
    _, _, face, audio = checkpoints(tmp_path)
    net = ff.FeatureFusionNet(
        3, face.init_kwargs, audio.init_kwargs, SR, 2, freeze_face_blocks=1, freeze_audio_blocks=1
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.from_numpy(
        ff.pack_segments(
            np.random.default_rng(0).normal(size=2 * SR).astype(np.float32),
            SR,
            np.array([0.2, 0.6]),
            np.stack([stripes(0, np.random.default_rng(1))] * 2),
            np.array([0.0, 1.0]),
            1.0,
            2,
        )
    )
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()
    for _ in range(2):
        loss = net(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = net.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        frozen = k.startswith(("face.blocks.0.", "audio.blocks.0."))
        if frozen:
            assert not moved, k  # weights and running statistics alike
        elif k.endswith("weight") and "blocks.1.0" in k:
            assert moved, k


def synthetic_videos(n_per_class: int = 3):
    """Videos of 4 s whose class shows in the audio (pitch) and in the faces (stripes)."""
    rng = np.random.default_rng(2)
    videos, t = {}, np.arange(4 * SR) / SR
    for split, count in (("train", n_per_class), ("dev", 1), ("test", 1)):
        for k in range(2 * count):
            label = k % 2
            f0 = (300.0, 2500.0)[label]
            wave = (np.sin(2 * np.pi * f0 * t) + 0.1 * rng.normal(size=t.size)).astype(np.float32)
            face_t = np.arange(0, 4, 0.2)
            faces = np.stack([stripes((0, 3)[label], rng) for _ in face_t])
            videos[f"{split}_{k}"] = {
                "wave": wave,
                "rate_hz": SR,
                "face_t": face_t,
                "faces": faces,
                "y": np.full(20, label, np.int64),
                "split": split,
            }
    return videos


def test_fit_feature_fusion_learns_and_scores_dev_and_test_on_the_grid(tmp_path):
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path)
    videos = synthetic_videos()
    net, scores, report = ff.fit_feature_fusion(
        videos, cfg(), faces_ckpt, audio_ckpt, n_classes=3, seed=1, rate_hz=5.0
    )
    assert sorted(scores) == ["dev_0", "dev_1", "test_0", "test_1"]
    for vid, s in scores.items():
        assert s["p"].shape == (20, 3) and s["covered"].all()
        assert s["p"].argmax(1).tolist() == [videos[vid]["y"][0]] * 20, vid
    assert report["init"] == {"faces": "faces.pt: FER-2013", "audio": "audio.pt: EmoDB"}
    assert report["train_segments"] == 6 * 7 and report["class_counts"] == [21, 21, 0]
    assert report["missing_classes"] == [2]
    # frozen first blocks: exactly the checkpoint's
    face = torch.load(faces_ckpt, weights_only=True)["state_dict"]
    assert torch.equal(net.face.blocks[0][0].weight, face["blocks.0.0.weight"])
    assert not torch.equal(net.face.blocks[1][0].weight, face["blocks.1.0.weight"])


def test_fit_feature_fusion_gives_the_same_network_for_the_same_inputs(tmp_path):
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path)
    videos = synthetic_videos(1)
    a, b = (
        ff.fit_feature_fusion(
            videos, cfg(epochs=2), faces_ckpt, audio_ckpt, n_classes=2, seed=1, rate_hz=5.0
        )[0]
        for _ in range(2)
    )
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_feature_fusion_starts_from_random_weights_where_pretraining_was_skipped(tmp_path):
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path, skipped="no corpus")
    _, _, report = ff.fit_feature_fusion(
        synthetic_videos(1),
        cfg(epochs=1),
        faces_ckpt,
        audio_ckpt,
        n_classes=2,
        seed=1,
        rate_hz=5.0,
    )
    assert report["init"]["faces"] == "random (pre-training skipped: no corpus)"
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path)
    _, _, report = ff.fit_feature_fusion(
        synthetic_videos(1),
        cfg(epochs=1, pretrained=False),
        faces_ckpt,
        audio_ckpt,
        n_classes=2,
        seed=1,
        rate_hz=5.0,
    )
    assert report["init"]["audio"] == "random (fit_feature_fusion.pretrained: false)"


def test_fit_feature_fusion_needs_both_modalities_and_the_branch_rate(tmp_path):
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path)
    videos = synthetic_videos(1)
    no_faces = {
        v: {**g, "face_t": np.zeros(0), "faces": g["faces"][:0]} for v, g in videos.items()
    }
    with pytest.raises(NothingToFit, match="no train video has a face"):
        ff.fit_feature_fusion(
            no_faces, cfg(), faces_ckpt, audio_ckpt, n_classes=2, seed=1, rate_hz=5.0
        )
    no_audio = {v: {**g, "wave": None} for v, g in videos.items()}
    with pytest.raises(NothingToFit, match="no train video has audio"):
        ff.fit_feature_fusion(
            no_audio, cfg(), faces_ckpt, audio_ckpt, n_classes=2, seed=1, rate_hz=5.0
        )
    other_rate = {v: {**g, "rate_hz": 22050} for v, g in videos.items()}
    with pytest.raises(
        PipelineError, match="audio at \\[22050\\] Hz, the audio branch expects 16000"
    ):
        ff.fit_feature_fusion(
            other_rate, cfg(), faces_ckpt, audio_ckpt, n_classes=2, seed=1, rate_hz=5.0
        )


@pytest.mark.gpu
def test_fit_feature_fusion_on_cuda_learns_and_keeps_the_frozen_block(tmp_path):
    faces_ckpt, audio_ckpt, _, _ = checkpoints(tmp_path)
    videos = synthetic_videos()
    net, scores, _ = ff.fit_feature_fusion(
        videos, cfg(), faces_ckpt, audio_ckpt, n_classes=3, seed=1, rate_hz=5.0, device="cuda"
    )
    for vid, s in scores.items():
        assert s["p"].argmax(1).tolist() == [videos[vid]["y"][0]] * 20, vid
    face = torch.load(faces_ckpt, weights_only=True)["state_dict"]
    assert torch.equal(net.face.blocks[0][0].weight.cpu(), face["blocks.0.0.weight"])
