"""Fine-tuning pieces: thinning, augmentation, a short real training run, save/load."""

import gzip

import numpy as np
import pytest
import torch

from pipeline.embed.fer_xception import MiniXception
from pipeline.embed.finetune import (
    augment,
    finetune,
    load_finetuned,
    save_finetuned,
    thin_per_class,
)


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
    model2, hist2 = finetune(
        backbone, (faces[::2], y[::2]), (faces[1::2], y[1::2]), 3, cfg, seed=0
    )
    assert hist2 == hist  # seeded: identical training


def test_va_head_regresses_and_round_trips(fer_rows, tmp_path, finetune_config):
    faces, y = fer_rows  # angry, happy, neutral -> circumplex positions as VA targets
    va = np.array([[-0.5, 0.7], [0.8, 0.5], [0.0, 0.0]], np.float32)[y]
    cfg = finetune_config(epochs=2, batch_size=16, lr=1e-3, hidden=32, thinning=())
    torch.manual_seed(0)
    model, hist = finetune(
        MiniXception(), (faces[::2], va[::2]), (faces[1::2], va[1::2]), 3, cfg, seed=0, task="va"
    )
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
    write_h5(
        faces / "v.h5",
        {
            "v": {
                "t": np.arange(3) / 5,
                "valid": np.array([True, False, True]),
                "faces": np.zeros((3, 8, 8, 3), np.uint8),
            }
        },
    )
    net = SimpleNamespace(
        hidden_dim=4,
        task="expr",
        embed=lambda f, device: (
            np.ones((len(f), 4), np.float32),
            np.full((len(f), 6), 1 / 6, np.float32),
        ),
    )
    rows = [
        ManifestRow(
            "s",
            "s.wav",
            "dev",
            "s",
            "",
            "anger",
            2.0,
            False,
            0.0,
            0,
            0,
            0,
            True,
            16000,
            "audio",
            0,
        ),
        ManifestRow(
            "v", "v.mp4", "dev", "v", "", "anger", 0.6, True, 5.0, 3, 8, 8, False, 0, "video", 0
        ),
    ]
    dst = tmp_path / "finetuned.h5"
    with open_writer(dst, dim=4) as w:
        embed_videos(net, rows, faces, w, 6)
    groups = dict(iter_groups(dst))
    assert groups["s"]["x"].shape == (0, 4) and groups["s"]["p"].shape == (0, 6)
    assert read_group_attrs(dst, "s")["skipped"] == "no video stream (modality audio)"
    assert groups["v"]["x"].shape == (3, 4)
    assert groups["v"]["valid"].tolist() == [True, False, True]


def test_video_folds_are_seeded_and_balanced():
    from pipeline.embed.finetune import video_folds

    ids = [f"v{i}" for i in range(7)]
    folds = video_folds(ids, 3, seed=1)
    assert folds == video_folds(list(reversed(ids)), 3, seed=1)  # order-independent
    assert sorted(np.bincount(list(folds.values())).tolist()) == [2, 2, 3]


def test_train_videos_are_embedded_by_a_model_that_never_saw_them(
    tmp_path, finetune_config, monkeypatch
):
    from types import SimpleNamespace

    import pipeline.embed.finetune as ft
    from pipeline.io.h5 import write_h5

    rng = np.random.default_rng(0)
    rows, grid = [], {}
    for i, split in enumerate(["train"] * 4 + ["dev"]):
        vid = f"v{i}"
        n = 6 + i  # a different number of faces per video identifies the training set
        write_h5(
            tmp_path / f"{vid}.h5",
            {
                vid: {
                    "t": np.arange(n) / 5.0 + 0.1,
                    "valid": np.ones(n, bool),
                    "faces": rng.integers(0, 255, (n, 96, 96, 3), dtype=np.uint8),
                }
            },
        )
        grid[vid] = {"y": (np.arange(n) % 3).astype(np.int8)}
        rows.append(SimpleNamespace(video_id=vid, split=split))
    seen = {}  # id(model) -> number of training faces

    def spy(backbone, train, *args, **kw):
        net, hist = real(backbone, train, *args, **kw)
        seen[id(net)] = len(train[1])
        return net, hist

    real = ft.finetune
    monkeypatch.setattr(ft, "finetune", spy)
    cfg = finetune_config(epochs=1, batch_size=8, hidden=8, thinning=(1, 1, 1))
    net, _, embedder = ft.finetune_out_of_fold(
        MiniXception(), rows, tmp_path, grid, 5.0, 3, cfg, seed=0, k=2
    )
    sizes = {r.video_id: 6 + i for i, r in enumerate(rows)}
    total = sum(sizes[f"v{i}"] for i in range(4))
    assert seen[id(net)] == total and sorted(embedder) == ["v0", "v1", "v2", "v3"]
    folds = ft.video_folds(list(embedder), 2, 0)
    for vid, model in embedder.items():
        held_out = sum(s for v, s in sizes.items() if v in folds and folds[v] == folds[vid])
        assert seen[id(model)] == total - held_out  # trained on the other fold only
