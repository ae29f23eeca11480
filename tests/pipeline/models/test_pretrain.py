"""Seed 003's pre-training: checkpoints, the FER-2013 and EmoDB readers, both trainings on
corpora the tests make (stripes that tell faces apart, tones that tell utterances apart)."""

import gzip
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.errors import DataError, PipelineError
from pipeline.models import checkpoint as ck
from pipeline.models import pretrain as pt
from pipeline.models import pretrain_audio as pa
from pipeline.models.segment_audio import SegmentAudioNet
from pipeline.models.vgg_faces import VGGFaceNet

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def face_cfg(**kw):
    base = dict(
        channels=(4, 8, 8),
        dropout=0.0,
        epochs=6,
        patience=6,
        lr=3e-3,
        weight_decay=0.0,
        batch_size=16,
        max_train=None,
        precision="fp32",
        label_smoothing=0.0,
        rotate_deg=0.0,
        scale=0.0,
        seed=5,
    )
    return SimpleNamespace(**(base | kw))


def audio_cfg(**kw):
    base = dict(
        dev_speakers=("03",),
        test_speakers=("09",),
        segment_s=0.25,
        kernel_ms=5.0,
        filters=4,
        pools=(4, 4),
        lstm_hidden=8,
        dropout=0.0,
        epochs=8,
        patience=8,
        lr=1e-2,
        weight_decay=0.0,
        batch_size=8,
        augment=False,
        rate_hz=16000,
        seed=5,
    )
    return SimpleNamespace(**(base | kw))


def stripes(label: int, rng) -> np.ndarray:
    """A 48 x 48 face: horizontal stripes for anger (0), vertical ones for happiness (3)."""
    wave = (np.arange(48) // 4 % 2) * 120 + 60
    img = np.tile(wave[:, None], (1, 48)) if label == 0 else np.tile(wave[None, :], (48, 1))
    return np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)


def write_fer_table(path: Path, counts: dict[str, int], bad_line: bool = False) -> None:
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage, n in counts.items():
        for i in range(n):
            label = (0, 3)[i % 2]
            lines.append(f"{label},{' '.join(map(str, stripes(label, rng).ravel()))},{usage}")
    if bad_line:
        lines.insert(3, "3,1 2 3,Training")
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def test_checkpoint_round_trip_is_byte_reproducible_and_refuses_skipped_ones(tmp_path):
    torch.manual_seed(0)
    net = VGGFaceNet(7, channels=(4, 8)).eval()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    ck.save_checkpoint(a, net, list("abcdefg"), "FER-2013")
    ck.save_checkpoint(b, net, list("abcdefg"), "FER-2013")
    assert a.read_bytes() == b.read_bytes()
    back, classes = ck.load_checkpoint(a, "VGGFaceNet")
    x = torch.rand(2, 1, 48, 48)
    assert classes == list("abcdefg") and torch.equal(back(x), net(x))
    assert ck.checkpoint_skipped(a) is None
    with pytest.raises(PipelineError, match="holds a VGGFaceNet, not a SegmentAudioNet"):
        ck.load_checkpoint(a, "SegmentAudioNet")
    ck.save_checkpoint(b, net, list("abcdefg"), "FER-2013", skipped="no table")
    assert ck.checkpoint_skipped(b) == "no table"
    with pytest.raises(PipelineError, match=r"b.pt: pre-training was skipped \(no table\)"):
        ck.load_checkpoint(b)
    assert isinstance(ck.load_checkpoint(b, trained=False)[0], VGGFaceNet)
    with pytest.raises(PipelineError, match="no pre-trained checkpoint"):
        ck.load_checkpoint(tmp_path / "none.pt")
    new = ck.with_new_head(back, 3)
    assert new(x).shape == (2, 3) and new.init_kwargs["n_classes"] == 3


def test_read_fer2013_table_splits_by_usage_and_names_a_bad_line(tmp_path):
    table = tmp_path / "fer2013.csv.gz"
    write_fer_table(table, {"Training": 6, "PublicTest": 4, "PrivateTest": 2})
    data = pt.read_fer2013_table(table)
    assert {u: len(y) for u, (x, y) in data.items()} == {
        "Training": 6,
        "PublicTest": 4,
        "PrivateTest": 2,
    }
    assert data["Training"][0].shape == (6, 48, 48) and data["Training"][0].dtype == np.uint8
    assert data["Training"][1].tolist() == [0, 3, 0, 3, 0, 3]
    write_fer_table(table, {"Training": 6}, bad_line=True)
    with pytest.raises(DataError, match=r"fer2013.csv.gz: line 4: 3 pixels, not 48 x 48"):
        pt.read_fer2013_table(table)


def test_flip_metrics_average_each_image_with_its_mirror():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.randn(40, 1, 4, 4)
    y = np.random.default_rng(0).integers(0, 3, 40)
    with torch.no_grad():
        p = (torch.softmax(net(x), -1) + torch.softmax(net(x.flip(-1)), -1)).double() / 2
    want = pt.probability_metrics(p.numpy(), y)
    got = pt.flip_metrics(net, x, y, batch_size=7)
    assert got == pytest.approx(want)
    # the mirror images matter: the decisions differ from the plain ones
    assert got != pytest.approx(pt.split_metrics(net, x, y))


def test_pretrain_faces_learns_stripes_and_reports_every_usage(tmp_path):
    write_fer_table(
        tmp_path / "fer2013.csv.gz", {"Training": 96, "PublicTest": 32, "PrivateTest": 16}
    )
    net, classes, report = pt.pretrain_faces(face_cfg(), tmp_path)
    assert classes[0] == "anger" and classes[3] == "happiness" and len(classes) == 7
    assert set(report["splits"]) == {"Training", "PublicTest", "PrivateTest"}
    assert report["splits"]["PublicTest"]["n"] == 32
    assert report["splits"]["PublicTest"]["accuracy"] >= 0.9, report["splits"]
    assert report["splits"]["PrivateTest"]["accuracy"] >= 0.9
    assert set(report["splits_flip"]) == {"PublicTest", "PrivateTest"}
    assert report["splits_flip"]["PublicTest"]["accuracy"] >= 0.9, report["splits_flip"]
    assert 1 <= report["best_epoch"] <= report["epochs_run"] == len(report["history"])
    # max_train: a seeded subset of the Training rows, reported as trained on
    _, _, small = pt.pretrain_faces(face_cfg(max_train=20, epochs=1), tmp_path)
    assert small["train_rows"] == 20 and small["splits"]["Training"]["n"] == 20


def test_pretrain_faces_in_bf16_autocast_learns_with_other_arithmetic(tmp_path):
    write_fer_table(tmp_path / "fer2013.csv.gz", {"Training": 96, "PublicTest": 32})
    fp32, _, plain = pt.pretrain_faces(face_cfg(epochs=2), tmp_path)
    bf16, _, half = pt.pretrain_faces(face_cfg(epochs=2, precision="bf16"), tmp_path)
    assert plain["precision"] == "fp32" and half["precision"] == "bf16"
    # same seed, same batches: only the arithmetic differs, so the weights do, a little
    w32, w16 = fp32.state_dict(), bf16.state_dict()
    gaps = [float((w32[k] - w16[k]).abs().max()) for k in w32 if w32[k].is_floating_point()]
    assert max(gaps) > 1e-4, gaps
    assert max(gaps) < 0.5, gaps
    # and bf16 training still learns the stripes
    bf16_long, _, report = pt.pretrain_faces(face_cfg(precision="bf16"), tmp_path)
    assert report["splits"]["PublicTest"]["accuracy"] >= 0.9, report["splits"]
    assert next(bf16_long.parameters()).dtype == torch.float32  # weights stay float32


def test_pretrain_faces_with_smoothing_and_rotation_learns_and_reports_them(tmp_path):
    write_fer_table(tmp_path / "fer2013.csv.gz", {"Training": 96, "PublicTest": 32})
    plain, _, _ = pt.pretrain_faces(face_cfg(epochs=1), tmp_path)
    cfg = face_cfg(label_smoothing=0.1, rotate_deg=10.0, scale=0.1)
    _, _, report = pt.pretrain_faces(cfg, tmp_path)
    assert report["label_smoothing"] == 0.1
    assert report["augment"] == {"rotate_deg": 10.0, "scale": 0.1}
    assert report["splits"]["PublicTest"]["accuracy"] >= 0.9, report["splits"]
    # the options reach the training loop: one epoch of each differs
    once, _, _ = pt.pretrain_faces(face_cfg(epochs=1, label_smoothing=0.1), tmp_path)
    turned, _, _ = pt.pretrain_faces(face_cfg(epochs=1, rotate_deg=10.0), tmp_path)
    w = plain.state_dict()
    for other in (once, turned):
        assert not torch.equal(w["head.weight"], other.state_dict()["head.weight"])


def test_pretrain_faces_without_a_table_returns_the_seeded_untrained_net(tmp_path):
    net, _, report = pt.pretrain_faces(face_cfg(), tmp_path)
    assert report == {"skipped": f"{tmp_path}: no fer2013.csv or fer2013.csv.gz"}
    again, _, _ = pt.pretrain_faces(face_cfg(), tmp_path)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values())
    )


def write_emodb(root: Path) -> None:
    """Two emotions told apart by pitch: anger (W) at 300 Hz, sadness (T) at 2 kHz."""
    rng = np.random.default_rng(1)
    (root / "wav").mkdir(parents=True)
    t = np.arange(8000) / 16000
    for speaker in ("03", "09", "11", "12"):
        for k in range(6):
            code, f0 = (("W", 300.0), ("T", 2000.0))[k % 2]
            wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.normal(size=t.size)
            sf.write(root / "wav" / f"{speaker}a0{k}{code}a.wav", wave, 16000)
    (root / "wav" / "notes.wav").write_bytes(b"")  # not EmoDB naming: skipped


def test_emodb_segments_and_pretrain_audio_learn_pitch_speaker_independently(tmp_path):
    write_emodb(tmp_path)
    data, classes = pa.emodb_segments(tmp_path, ("03",), ("09",), 16000, 0.25)
    assert classes == sorted(classes) and len(classes) == 7
    # 6 utterances of 0.5 s per speaker, 3 half-overlapping segments of 0.25 s each
    assert {s: len(y) for s, (x, y, u) in data.items()} == {"train": 36, "dev": 18, "test": 18}
    assert data["train"][0].shape == (36, 4000)
    assert len(np.unique(data["dev"][2])) == 6  # utterance ids
    net, _, report = pa.pretrain_audio(audio_cfg(), tmp_path)
    assert isinstance(net, SegmentAudioNet)
    assert report["splits"]["dev"]["n"] == 6  # scored per utterance
    assert report["splits"]["test"]["accuracy"] == 1.0, report["splits"]
    skipped = pa.pretrain_audio(audio_cfg(), tmp_path / "nothing")[2]
    assert skipped == {"skipped": f"{tmp_path / 'nothing'}: no EmoDB wav files (wav/*.wav)"}


def test_raw_audio_classifier_starts_from_a_pretrain_audio_checkpoint(tmp_path):
    from pipeline.models.audio_cnn_lstm import AudioCNNLSTMClassifier

    torch.manual_seed(0)
    net = SegmentAudioNet(7, filters=4, pools=(4, 4), lstm_hidden=8)
    ckpt = tmp_path / "audio.pt"
    ck.save_checkpoint(ckpt, net, [str(k) for k in range(7)], "EmoDB")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4000)).astype(np.float32), np.arange(12) % 3
    clf = AudioCNNLSTMClassifier(epochs=1, lr=1e-6, batch_size=4, init=str(ckpt), random_state=0)
    clf.fit(X, y)
    assert isinstance(clf.module_, SegmentAudioNet) and clf.module_.head.out_features == 3
    first = clf.module_.blocks[0][0].weight
    assert torch.allclose(first, net.blocks[0][0].weight, atol=1e-4)  # pre-trained, barely moved
    assert clf.predict_proba(X).shape == (12, 3)
    ck.save_checkpoint(ckpt, net, [], "EmoDB", skipped="no wav files")
    with pytest.raises(PipelineError, match="pre-training was skipped"):
        AudioCNNLSTMClassifier(epochs=1, init=str(ckpt)).fit(X, y)


def test_vgg_fer_backbone_embeds_crops_with_the_pretrain_faces_checkpoint(tmp_path):
    from pipeline.embed.face_backbones import load_face_backbone

    torch.manual_seed(0)
    net = VGGFaceNet(7, channels=(4, 8))
    ckpt = tmp_path / "faces.pt"
    ck.save_checkpoint(ckpt, net, list("abcdefg"), "FER-2013")
    bb = load_face_backbone(
        "vgg_fer", pretrained_dir=tmp_path, weights=str(ckpt), device="cpu", batch_size=2
    )
    crops = np.random.default_rng(0).integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    x, p = bb.embed(crops)
    assert x.shape == (5, 8) and bb.dim == 8 and p.shape == (5, 7)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    ck.save_checkpoint(ckpt, net, list("abcdefg"), "FER-2013", skipped="no table")
    with pytest.raises(PipelineError, match="pre-training was skipped"):
        load_face_backbone(
            "vgg_fer", pretrained_dir=tmp_path, weights=str(ckpt), device="cpu", batch_size=2
        )


@pytest.mark.skipif(not (SHARED / "emodb" / "wav").is_dir(), reason="../shared/data/emodb absent")
def test_emodb_segments_on_the_real_corpus_split_by_speaker():
    data, classes = pa.emodb_segments(SHARED / "emodb", ("03", "08"), ("09", "10"), 16000, 2.0)
    n_utt = {s: len(np.unique(u)) for s, (x, y, u) in data.items()}
    assert sum(n_utt.values()) == 408  # the shared copy: 408 utterances of 2.0 s
    assert all(len(y) == n_utt[s] for s, (x, y, u) in data.items())  # one segment each
    assert data["train"][0].shape[1] == 32000


@pytest.mark.gpu
def test_pretrain_faces_learns_stripes_on_cuda(tmp_path):
    write_fer_table(tmp_path / "fer2013.csv.gz", {"Training": 96, "PublicTest": 32})
    net, _, report = pt.pretrain_faces(face_cfg(), tmp_path, device="cuda")
    assert all(p.device.type == "cpu" for p in net.parameters())  # saved from the CPU
    assert report["splits"]["PublicTest"]["accuracy"] >= 0.9, report["splits"]
