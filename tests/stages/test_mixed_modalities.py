"""A dataset mixing modalities runs end to end: rows without a face or an audio stream get no
windows for that feature (no error), while a video whose embeddings are missing still stops.

Two chains through the real stage entry points in tmp_path:

- media -> build_manifest -> detect_faces / extract_audio -> embed_faces / embed_audio ->
  resample_labels -> window_stats, on tiny real files (one audio-only WAV, one MP4 without
  audio);
- synthetic embeddings (written by the contract the embedding stages follow) ->
  window_stats -> fit (kelm) and fit_fusion_net (conv_lstm, on both embedding files) -> fuse
  -> evaluate, with an audio-only dev video and a video-only test video.
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.data.manifest import ManifestRow, write_manifest
from pipeline.embed.finetune import load_finetuned
from pipeline.errors import PipelineError
from pipeline.io.h5 import (
    SKIPPED,
    iter_groups,
    open_writer,
    read_attrs,
    read_group_attrs,
    skipped_group,
)
from pipeline.scores import read_scores
from stages import (
    build_manifest,
    detect_faces,
    embed_audio,
    embed_faces,
    evaluate,
    extract_audio,
    finetune_faces,
    fit,
    fit_feature_fusion,
    fit_fusion_net,
    fit_raw_audio,
    fuse,
    resample_labels,
    window_stats,
)
from tests.h5_checks import assert_small_datasets_fit_their_rows

ROOT = Path(__file__).resolve().parents[2]
NO_VIDEO = "no video stream (modality audio)"
NO_AUDIO = "no audio track (modality video)"


def _params(tmp_path: Path, **sections) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["base"]["n_jobs"] = 1
    for name, values in sections.items():
        data[name].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_media_chain_skips_the_missing_modality(tmp_path, make_video, pretrained_dir):
    ds = tmp_path / "ds"
    for name in ("a", "b", "c"):
        make_video(ds / f"{name}.mp4", n_frames=25, fps=25.0)
    make_video(ds / "silent.mp4", n_frames=25, fps=25.0, audio=False)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(ds / "speech.wav", tone, 16000)
    (ds / "table.csv").write_text(
        "media,split,label\na.mp4,train,anger\nb.mp4,dev,fear\nc.mp4,test,fear\n"
        "silent.mp4,train,sadness\nspeech.wav,dev,anger\n"
    )
    params = _params(
        tmp_path,
        detect_faces={"detector": "dlib"},
        embed_audio={"source": "audio"},
        build_manifest={"adapter": "csv", "root": str(ds), "csv_file": "table.csv"},
    )
    p = ["--params", str(params)]
    it, feats = tmp_path / "interim", tmp_path / "features"
    manifest = it / "manifest.csv"
    build_manifest.main(
        ["--src", str(ds), "--dst", str(manifest), "--report", str(it / "manifest.json"), *p]
    )
    with open(manifest, newline="") as fh:
        modality = {r["video_id"]: r["modality"] for r in csv.DictReader(fh)}
    assert modality == {
        "a": "audio_video",
        "b": "audio_video",
        "c": "audio_video",
        "silent": "video",
        "speech": "audio",
    }

    detect_faces.main(
        [
            "--manifest",
            str(manifest),
            "--dst",
            str(it / "faces"),
            "--report",
            str(it / "faces.json"),
            *p,
        ]
    )
    faces = json.loads((it / "faces.json").read_text())["videos"]
    assert faces["speech"] == {"status": "skipped", "reason": NO_VIDEO}
    assert faces["silent"]["status"] == "done" and not (it / "faces" / "speech.h5").exists()
    assert_small_datasets_fit_their_rows(it / "faces" / "a.h5", "a")  # the stage sizes chunks
    extract_audio.main(
        [
            "--manifest",
            str(manifest),
            "--dst",
            str(it / "audio"),
            "--report",
            str(it / "audio.json"),
            *p,
        ]
    )
    audio = json.loads((it / "audio.json").read_text())["videos"]
    assert audio["silent"] == {"status": "skipped", "reason": NO_AUDIO}
    assert audio["speech"]["status"] == "done"

    embed_faces.main(
        [
            "--backbone",
            "fer_xception",
            "--manifest",
            str(manifest),
            "--faces",
            str(it / "faces"),
            "--pretrained",
            str(pretrained_dir),
            "--dst",
            str(feats / "fer.h5"),
            *p,
        ]
    )
    embed_audio.main(
        [
            "--backbone",
            "logmel",
            "--manifest",
            str(manifest),
            "--audio",
            str(it / "audio"),
            "--pretrained",
            str(pretrained_dir),
            "--dst",
            str(feats / "logmel.h5"),
            *p,
        ]
    )
    assert read_group_attrs(feats / "fer.h5", "speech")[SKIPPED] == NO_VIDEO
    assert read_group_attrs(feats / "logmel.h5", "silent")[SKIPPED] == NO_AUDIO

    resample_labels.main(["--manifest", str(manifest), "--dst", str(it / "labels.h5"), *p])
    for feature, lacking in (("fer", "speech"), ("logmel", "silent")):
        dst = feats / "windows" / f"{feature}.h5"
        window_stats.main(
            [
                "--embeddings",
                str(feats / f"{feature}.h5"),
                "--labels",
                str(it / "labels.h5"),
                "--dst",
                str(dst),
                *p,
            ]
        )
        windows = dict(iter_groups(dst))
        assert len(windows[lacking]["x"]) == 0 and SKIPPED in read_group_attrs(dst, lacking)
        assert all(len(g["x"]) > 0 for v, g in windows.items() if v != lacking)


SMALL_NET = {
    "channels": 8,
    "kernels": [1, 3, 5],
    "pool": 3,
    "lstm_hidden": 16,
    "lstm_layers": 1,
    "dropout": 0.0,
}
CLASSES = ["neutral", "anger", "disgust", "fear", "happiness", "sadness"]
# id -> (split, clip label, modality); 20 s each: 9 windows of 4 s at 50 % overlap
VIDEOS = {
    "tr_anger": ("train", "anger", "audio_video"),
    "tr_fear": ("train", "fear", "audio_video"),
    "tr_sad": ("train", "sadness", "audio_video"),
    "tr_speech": ("train", "anger", "audio"),
    "dev_fear": ("dev", "fear", "audio_video"),
    "dev_speech": ("dev", "sadness", "audio"),
    "te_anger": ("test", "anger", "audio_video"),
    "te_silent": ("test", "fear", "video"),
}


def _synthetic(
    tmp_path: Path, videos: dict = VIDEOS, **sections
) -> tuple[Path, Path, dict[str, Path]]:
    """Manifest, 5 Hz labels (real stage) and two embedding files following the contract;
    ``sections`` replace the params sections of the mixed-modality chain."""
    rows = []
    for vid, (split, label, modality) in sorted(videos.items()):
        v, a = modality != "audio", modality != "video"
        rows.append(
            ManifestRow(
                vid,
                f"{vid}.mp4",
                split,
                vid,
                "",
                label,
                20.0,
                v,
                25.0 * v,
                500 * v,
                64 * v,
                48 * v,
                a,
                16000 * a,
                modality,
                0,
            )
        )
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, rows)
    sections = {
        "fit": {"models": ["kelm"], "features": ["fer", "logmel"]},
        "fit_fusion_net": {"seq_len": 9, "hop": 3, "epochs": 3, "nets": {"conv_lstm": SMALL_NET}},
        "fuse": {"models": ["kelm_fer", "kelm_logmel", "conv_lstm"], "n_draws": 20},
        "fit_raw_audio": {"nets": {"cnn_lstm_raw": {"pretrained": False, "filterbank": "gabor"}}},
        **sections,
    }
    params = _params(tmp_path, **sections)
    labels = tmp_path / "labels_5hz.h5"
    resample_labels.main(
        ["--manifest", str(manifest), "--dst", str(labels), "--params", str(params)]
    )
    rng = np.random.default_rng(0)
    files = {}
    for feature, needs, dim in (("fer", "video", 6), ("logmel", "audio", 4)):
        files[feature] = tmp_path / "features" / f"{feature}.h5"
        files[feature].parent.mkdir(exist_ok=True)
        with open_writer(
            files[feature], stage="synthetic", dim=dim, model=feature, rate_hz=5.0
        ) as w:
            for r in rows:
                if not (r.has_video if needs == "video" else r.has_audio):
                    arrays, attrs = skipped_group(dim, f"no {needs} (modality {r.modality})")
                    w.add(r.video_id, attrs=attrs, **arrays)
                    continue
                centre = np.eye(dim, dtype=np.float32)[CLASSES.index(r.clip_label) % dim]
                x = rng.normal(0, 0.3, (100, dim)).astype(np.float32) + centre
                w.add(r.video_id, t=np.arange(100) / 5 + 0.1, x=x, valid=np.ones(100, bool))
    return labels, params, files


def test_windows_fit_fuse_evaluate_with_mixed_modalities(tmp_path):
    labels, params, files = _synthetic(tmp_path)
    p = ["--params", str(params)]
    win = {f: tmp_path / "windows" / f"{f}.h5" for f in files}
    for feature, src in files.items():
        window_stats.main(
            ["--embeddings", str(src), "--labels", str(labels), "--dst", str(win[feature]), *p]
        )
    fer = dict(iter_groups(win["fer"]))
    assert [v for v, g in fer.items() if len(g["x"]) == 0] == ["dev_speech", "tr_speech"]
    assert fer["dev_fear"]["x"].shape == (9, 12) and fer["dev_speech"]["x"].shape == (0, 12)
    assert read_group_attrs(win["fer"], "dev_speech")[SKIPPED] == "no video (modality audio)"
    logmel = dict(iter_groups(win["logmel"]))
    assert [v for v, g in logmel.items() if len(g["x"]) == 0] == ["te_silent"]

    fitted = tmp_path / "fit"
    for feature in files:
        fit.main(
            [
                "--model",
                "kelm",
                "--feature",
                feature,
                "--windows",
                str(win[feature]),
                "--dst",
                str(fitted / f"kelm_{feature}"),
                *p,
            ]
        )
    scores = read_scores(fitted / "kelm_fer" / "scores.h5")
    assert not scores["dev_speech"]["covered"].any() and scores["dev_fear"]["covered"].all()
    prior = scores["dev_speech"]["p"][0]  # the training prior: anger, fear, sadness windows
    assert np.allclose(scores["dev_speech"]["p"], prior)
    assert prior[[1, 3, 5]].sum() == pytest.approx(1.0)
    assert not read_scores(fitted / "kelm_logmel" / "scores.h5")["te_silent"]["covered"].any()

    fit_fusion_net.main(
        [
            "--net",
            "conv_lstm",
            "--faces",
            str(files["fer"]),
            "--audio",
            str(files["logmel"]),
            "--labels",
            str(labels),
            "--dst",
            str(fitted / "conv_lstm"),
            *p,
        ]
    )
    net = read_scores(fitted / "conv_lstm" / "scores.h5")
    assert sorted(net) == ["dev_fear", "dev_speech", "te_anger", "te_silent"]
    for vid in net:  # one modality is enough for the fusion net: every bin covered
        assert net[vid]["covered"].all() and net[vid]["p"].shape == (100, 6)
    report = json.loads((fitted / "conv_lstm" / "report.json").read_text())
    assert report["videos_without_face"] == ["dev_speech", "tr_speech"]
    assert report["videos_without_audio"] == ["te_silent"]
    assert (fitted / "conv_lstm" / "model.pt").is_file()
    curve = (fitted / "conv_lstm" / "history.csv").read_text().splitlines()  # for dvc plots
    assert curve[0] == "epoch,lr,train_loss,val_loss" and len(curve) == 1 + len(report["history"])

    shutil.copytree(fitted / "kelm_logmel", fitted / "cnn_lstm_raw")  # evaluate reads model 4
    shutil.copytree(fitted / "kelm_logmel", fitted / "feature_fusion")  # and seed 003's net
    fuse.main(
        ["--scores", str(fitted), "--labels", str(labels), "--dst", str(tmp_path / "fuse"), *p]
    )
    rep = tmp_path / "reports"
    evaluate.main(
        [
            "--scores",
            str(fitted),
            "--fused",
            str(tmp_path / "fuse"),
            "--labels",
            str(labels),
            "--manifest",
            str(tmp_path / "manifest.csv"),
            "--metrics",
            str(rep / "metrics.json"),
            "--summary",
            str(rep / "summary.md"),
            "--plots",
            str(rep / "plots"),
            "--figures",
            str(rep / "figures"),
            *p,
        ]
    )
    metrics = json.loads((rep / "metrics.json").read_text())
    assert {"kelm_fer", "kelm_logmel", "conv_lstm", "fusion_swf"} <= set(metrics["test"])
    weights = json.loads((tmp_path / "fuse" / "swf" / "weights.json").read_text())
    assert "conv_lstm" in json.dumps(weights)


def test_window_stats_still_stops_for_a_video_without_embeddings(tmp_path):
    labels, params, files = _synthetic(tmp_path)
    partial = tmp_path / "partial.h5"
    with open_writer(partial, stage="synthetic", dim=6, model="fer", rate_hz=5.0) as w:
        for vid, g in iter_groups(files["fer"]):
            if vid != "dev_fear":  # lost, not "no such modality": re-running the stage helps
                w.add(vid, attrs=read_group_attrs(files["fer"], vid), **g)
    args = [
        "--embeddings",
        str(partial),
        "--labels",
        str(labels),
        "--dst",
        str(tmp_path / "w.h5"),
        "--params",
        str(params),
    ]
    with pytest.raises(SystemExit) as exc:
        window_stats.main(args)
    assert exc.value.code == 1
    with pytest.raises(PipelineError, match="no embeddings for video 'dev_fear'; re-run its"):
        window_stats.main.__wrapped__(partial, labels, tmp_path / "w.h5", params)


AUDIO_ONLY = {  # an audio-only corpus (EmoDB-like): no row has a video stream
    "tr_anger": ("train", "anger", "audio"),
    "tr_fear": ("train", "fear", "audio"),
    "tr_sad": ("train", "sadness", "audio"),
    "dev_fear": ("dev", "fear", "audio"),
    "dev_anger": ("dev", "anger", "audio"),
    "te_anger": ("test", "anger", "audio"),
}


def _run_stage(stage, **args) -> None:
    """A stage's command line; every keyword is a ``--flag value`` pair."""
    stage.main([item for k, v in args.items() for item in (f"--{k.replace('_', '-')}", str(v))])


def test_models_whose_modality_the_data_lacks_write_skip_records(tmp_path, pretrained_dir, capfd):
    """An audio-only corpus through fine-tuning, the fit matrix, the fusion net, the raw-audio
    model, fusion and evaluation: the face models write skip records and nothing stops."""
    labels, params, files = _synthetic(
        tmp_path,
        AUDIO_ONLY,
        fuse={"models": ["all"], "n_draws": 20},
        fit_raw_audio={
            "epochs": 1,
            "window_s": 4.0,
            "source": "audio",
            # spec_attention has its own tests
            "nets": {"cnn_lstm_raw": {"pretrained": False, "filterbank": "gabor"}},
        },
    )
    rows_csv = tmp_path / "manifest.csv"
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(1)
    for vid in AUDIO_ONLY:  # 20 s of noise each: what extract_audio writes
        with open_writer(audio / f"{vid}.h5", stage="synthetic", rate_hz=16000) as w:
            w.add(vid, wave=rng.normal(0, 0.1, 20 * 16000).astype(np.float32))
    fitted, p = tmp_path / "fit", {"params": params}

    finetuned = tmp_path / "features" / "finetuned.h5"
    model_pt = tmp_path / "finetune" / "model.pt"
    _run_stage(
        finetune_faces,
        manifest=rows_csv,
        faces=tmp_path / "no_faces",
        labels=labels,
        pretrained=pretrained_dir,
        model=model_pt,
        history=tmp_path / "finetune" / "history.csv",
        dst=finetuned,
        **p,
    )
    with pytest.raises(PipelineError, match=r"skipped \(finetune_faces: no labelled faces in"):
        load_finetuned(model_pt)
    assert (tmp_path / "finetune" / "history.csv").read_text() == "epoch,train_loss,dev_loss\n"
    assert sorted(v for v, _ in iter_groups(finetuned)) == sorted(AUDIO_ONLY)
    assert read_group_attrs(finetuned, "tr_anger")[SKIPPED] == NO_VIDEO

    win = {f: tmp_path / "windows" / f"{f}.h5" for f in files}
    for feature, src in files.items():
        _run_stage(window_stats, embeddings=src, labels=labels, dst=win[feature], **p)
        _run_stage(
            fit, model="kelm", feature=feature, windows=win[feature],
            dst=fitted / f"kelm_{feature}", **p,
        )  # fmt: skip
    # the face feature's warning names the first skipped video and why it was skipped
    assert (
        "no video has this feature's modality (6 skipped, e.g. dev_anger: no video (modality "
        "audio))" in capfd.readouterr().err
    )
    # no window anywhere (file attribute n_windows = 0): skipped before any group is read
    assert read_attrs(win["fer"])["n_windows"] == 0
    assert read_attrs(win["logmel"])["n_windows"] == 54  # 6 clips x 9 windows of 4 s, 50 %
    skip = json.loads((fitted / "kelm_fer" / "report.json").read_text())
    assert skip == {
        "model": "kelm_fer",
        "skipped": f"no video has this feature's modality ({win['fer']} holds no windows)",
    }
    assert not (fitted / "kelm_fer" / "scores.h5").exists()
    assert (fitted / "kelm_logmel" / "scores.h5").is_file()
    _run_stage(
        fit_fusion_net, net="conv_lstm", faces=files["fer"], audio=files["logmel"],
        labels=labels, dst=fitted / "conv_lstm", **p,
    )  # fmt: skip
    assert json.loads((fitted / "conv_lstm" / "report.json").read_text())["skipped"] == (
        "fit_fusion_net conv_lstm: no train video has a face to fuse"
    )
    _run_stage(
        fit_raw_audio, net="cnn_lstm_raw", audio=audio, labels=labels,
        dst=fitted / "cnn_lstm_raw", **p,
    )  # fmt: skip
    assert (fitted / "cnn_lstm_raw" / "scores.h5").is_file()
    _run_stage(
        fit_feature_fusion, faces=tmp_path / "no_faces", audio=audio, labels=labels,
        face_model=tmp_path / "none.pt", audio_model=tmp_path / "none.pt",
        dst=fitted / "feature_fusion", **p,
    )  # fmt: skip
    assert json.loads((fitted / "feature_fusion" / "report.json").read_text())["skipped"] == (
        "fit_feature_fusion: no train video has a face to fuse"
    )

    _run_stage(fuse, scores=fitted, labels=labels, dst=tmp_path / "fuse", **p)
    weights = json.loads((tmp_path / "fuse" / "swf" / "weights.json").read_text())
    assert sorted(weights["models"]) == ["cnn_lstm_raw", "kelm_logmel"]
    rep = tmp_path / "reports"
    _run_stage(
        evaluate, scores=fitted, fused=tmp_path / "fuse", labels=labels, manifest=rows_csv,
        metrics=rep / "metrics.json", summary=rep / "summary.md", plots=rep / "plots",
        figures=rep / "figures", **p,
    )  # fmt: skip
    metrics = json.loads((rep / "metrics.json").read_text())
    assert {"kelm_logmel", "cnn_lstm_raw", "fusion_chosen"} <= set(metrics["dev"])
    assert not {"kelm_fer", "conv_lstm"} & set(metrics["dev"])
    summary = (rep / "summary.md").read_text()
    assert "- `conv_lstm`: fit_fusion_net conv_lstm: no train video has a face" in summary
    assert "- `kelm_fer`: no video has this feature's modality" in summary
    assert "- `feature_fusion`: fit_feature_fusion: no train video has a face" in summary


def _fer_faces(tmp_path: Path, faces: np.ndarray, **sections) -> tuple[Path, Path]:
    """A FER-2013 table of ``faces`` (48x48 grey; Training, Training, PublicTest...) through
    build_manifest and detect_faces; returns the interim folder and the params file."""
    ds = tmp_path / "fer"
    ds.mkdir()
    usages = ["Training", "Training"] + ["PublicTest"] * (len(faces) - 2)
    rows = [
        f"{k},{' '.join(map(str, f.reshape(-1)))},{u}" for k, f, u in zip((3, 0, 6), faces, usages)
    ]
    (ds / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    params = _params(tmp_path, build_manifest={"adapter": "fer2013", "root": str(ds)}, **sections)
    it = tmp_path / "interim"
    _run_stage(
        build_manifest, src=ds, dst=it / "manifest.csv", report=it / "manifest.json",
        images=it / "images", params=params,
    )  # fmt: skip
    _run_stage(
        detect_faces, manifest=it / "manifest.csv", dst=it / "faces",
        report=it / "faces.json", params=params,
    )  # fmt: skip
    return it, params


def test_image_rows_are_taken_as_aligned_faces(tmp_path):
    """FER-2013 rows (48x48 grey, already aligned) through build_manifest and detect_faces:
    with detect_faces.images aligned, every image is one valid face, resized, no detector."""
    import cv2

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 48, 48)).astype(np.uint8)
    it, _ = _fer_faces(tmp_path, faces, detect_faces={"detector": "dlib", "size_px": 96})
    problems = [w["problem"] for w in json.loads((it / "manifest.json").read_text())["warnings"]]
    assert not [p for p in problems if "still image" in p]  # no audio anywhere: no news
    report = json.loads((it / "faces.json").read_text())["videos"]
    assert {v: r["status"] for v, r in report.items()} == dict.fromkeys(
        ["fer2013_00001", "fer2013_00002", "fer2013_00003"], "done"
    )
    for k, face in enumerate(faces):
        vid = f"fer2013_{k + 1:05d}"
        g = dict(iter_groups(it / "faces" / f"{vid}.h5"))[vid]
        assert g["valid"].tolist() == [True] and g["t"].tolist() == [0.0]
        rgb = np.repeat(face[:, :, None], 3, axis=2)
        want = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_CUBIC)
        assert np.abs(g["faces"][0].astype(int) - want).max() <= 1
        assert g["boxes"][0].tolist() == [0, 0, 48, 48]
        # no 1 MiB chunk per dataset as streamed video tracks have (6 MB per image)
        assert (it / "faces" / f"{vid}.h5").stat().st_size < 96 * 96 * 3 + 20_000


def test_image_rows_share_forward_passes_in_embed_faces(tmp_path, monkeypatch):
    """embed_faces embeds image rows batch_size at a time (three images, batch 2: two calls)
    and each image gets the group it would get alone."""
    import torch

    from pipeline.embed import face_backbones
    from pipeline.models import checkpoint as ck
    from pipeline.models.vgg_faces import VGGFaceNet

    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    it, params = _fer_faces(
        tmp_path, faces, detect_faces={"size_px": 64}, embed_faces={"batch_size": 2}
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "vgg.pt"
    ck.save_checkpoint(ckpt, VGGFaceNet(7, channels=(4, 8)), list("abcdefg"), "FER-2013")
    calls = []
    real = face_backbones.embed_image_files
    monkeypatch.setattr(
        face_backbones,
        "embed_image_files",
        lambda bb, files, bs: calls.append(len(files)) or real(bb, files, bs),
    )
    out = tmp_path / "vgg_fer.h5"
    _run_stage(
        embed_faces, backbone="vgg_fer", manifest=it / "manifest.csv", faces=it / "faces",
        pretrained=tmp_path, vgg_fer=ckpt, dst=out, params=params,
    )  # fmt: skip
    assert calls == [2, 1]
    bb = face_backbones.load_face_backbone(
        "vgg_fer", pretrained_dir=tmp_path, weights=str(ckpt), device="cpu", batch_size=2
    )
    groups = dict(iter_groups(out))
    assert sorted(groups) == ["fer2013_00001", "fer2013_00002", "fer2013_00003"]
    for vid, g in groups.items():
        alone = face_backbones.embed_faces_file(bb, it / "faces" / f"{vid}.h5", vid, 2)
        np.testing.assert_allclose(g["x"], alone["x"], atol=1e-5)
        np.testing.assert_allclose(g["p"], alone["p"], atol=1e-5)
