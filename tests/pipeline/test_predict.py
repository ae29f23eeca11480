"""`python -m pipeline.predict`: emotions of new videos from a trained model set.

The slow tests share one small model set that the real stages train in the test session
(tests/small_model_set.py: the six CREMA-D clips, every classifier on every feature kind,
the raw-audio CNN, fusion), and predict on a real CREMA-D clip, on a video without a face,
on one without audio and on one with neither. The others check the error paths and the
helpers on synthetic inputs.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import predict
from pipeline.data.media import iter_video_frames, probe
from pipeline.errors import DataError, PipelineError
from pipeline.fusion import restrict_weights
from pipeline.io.h5 import iter_groups
from pipeline.models.fusion_net import NETS

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(autouse=True)
def _keep_caplog(monkeypatch):
    """main()'s logging.basicConfig(force=True) would drop caplog's handler; keep it."""
    monkeypatch.setattr("pipeline.cli.setup_logging", lambda: None)


def _run(videos, out: Path, params: Path, models: Path) -> None:
    predict.main(
        [*map(str, videos), "--out", str(out), "--params", str(params)]
        + [
            "--models",
            str(models),
        ]
    )


@pytest.fixture(scope="session")
def model_set(tmp_path_factory, crema_videos, pretrained_dir) -> tuple[Path, Path]:
    """(params.yaml, models/) of the small model set the stages train on the CREMA-D clips."""
    from tests.small_model_set import build_model_set

    root = tmp_path_factory.mktemp("trained")
    params = build_model_set(root, crema_videos, pretrained_dir)
    return params, root / "models"


def _check_outputs(out: Path, stem: str, n_frames: int, classes: list[str]) -> dict:
    """The four files of one video are there and consistent; returns the JSON summary."""
    frames = _rows(out / f"{stem}_frames.csv")
    grid = _rows(out / f"{stem}_5hz.csv")
    assert len(frames) == n_frames
    assert [int(r["frame"]) for r in frames] == list(range(n_frames))
    for rows in (frames, grid):
        p = np.array([[float(r[c]) for c in classes] for r in rows])
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        assert [r["label"] for r in rows] == [classes[k] for k in p.argmax(axis=1)]
    assert (out / f"{stem}_timeline.png").read_bytes()[:8] == PNG_MAGIC
    return json.loads((out / f"{stem}.json").read_text())


@pytest.mark.slow
def test_a_real_clip_gets_every_output_and_the_scores_fuse_wrote(
    model_set, crema_videos, tmp_path
):
    params, models = model_set
    clip = next(v for v in crema_videos if "_NEU_" in v.name)  # its copy b_* is a test video
    out = tmp_path / "out"
    _run([clip], out, params, models)
    choice = json.loads((models / "fuse" / "choice.json").read_text())
    classes = choice["classes"]
    summary = _check_outputs(out, clip.stem, probe(clip).n_frames, classes)
    assert summary["n_frames"] == probe(clip).n_frames
    assert summary["fusion"]["method"] == choice["method"]
    assert summary["fusion"]["models"] == choice["models"]
    assert summary["models_used"] and set(summary["models_used"]) <= set(choice["models"])
    assert {"kelm_fer", "svm_finetuned", "lstm_mfcc"} <= set(summary["models_used"])
    # every model of the choice is scored (weight 0 or not): both raw-audio networks ran
    assert {"cnn_lstm_raw", "spec_attention"} <= set(choice["models"])
    assert set(NETS) <= set(choice["models"])  # the fusion networks are scored like the others
    assert "feature_fusion" in choice["models"]  # seed 003's network: crops + raw audio
    assert summary["modalities"]["face"]["usable"] and summary["modalities"]["audio"]["usable"]
    assert summary["models_left_out"] == {}
    assert summary["dominant_emotion"] in classes
    assert sum(summary["class_means"].values()) == pytest.approx(1, abs=1e-3)
    assert {"probe", "faces", "audio", "windows", "models", "write", "total"} <= set(
        summary["seconds"]
    )
    assert all(r["face"] == "1" for r in _rows(out / f"{clip.stem}_frames.csv"))

    # the same code as the stages: every model's 5 Hz scores and the fused ones are those
    # that fit and fuse wrote for the test-split copy of this clip
    prm = predict.load_predict_params(params)
    ms = predict.ModelSet(models, prm)
    pred = predict.predict_video(clip, ms, tmp_path / "work")
    vid = f"b_{clip.stem}"
    for name in choice["models"]:
        stored = dict(iter_groups(models / "fit" / name / "scores.h5"))[vid]
        np.testing.assert_allclose(pred.scores[name]["p"], stored["p"], atol=1e-5, err_msg=name)
        assert (pred.scores[name]["covered"] == stored["covered"]).all(), name
    fused = dict(iter_groups(models / "fuse" / "chosen" / "scores.h5"))[vid]["p"]
    np.testing.assert_allclose(pred.values, fused, atol=1e-5)  # choice.json rounds weights


def _crema_frames(clip: Path) -> list[np.ndarray]:
    return [rgb for _, _, rgb in iter_video_frames(clip)]


@pytest.mark.slow
def test_missing_modalities_use_what_the_video_has(
    model_set, crema_videos, make_video, tmp_path, caplog
):
    params, models = model_set
    clip = next(v for v in crema_videos if "_HAP_" in v.name)
    videos = {
        "no_face": make_video(tmp_path / "no_face.mp4", n_frames=50, fps=25.0),
        "no_audio": make_video(tmp_path / "no_audio.mp4", frames=_crema_frames(clip), audio=False),
        "neither": make_video(tmp_path / "neither.mp4", n_frames=25, fps=25.0, audio=False),
    }
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="pipeline.predict"):
        _run(list(videos.values()), out, params, models)
    classes = json.loads((models / "fuse" / "choice.json").read_text())["classes"]
    s = {k: _check_outputs(out, k, probe(v).n_frames, classes) for k, v in videos.items()}

    face, audio = s["no_face"]["modalities"], s["no_audio"]["modalities"]
    assert not face["face"]["usable"] and face["audio"]["usable"]
    assert "no face found" in face["face"]["why"]
    assert s["no_face"]["models_used"] and all(
        m.endswith("_mfcc") or m in ("cnn_lstm_raw", "spec_attention", *NETS)
        for m in s["no_face"]["models_used"]
    )
    assert "kelm_fer" in s["no_face"]["models_left_out"]
    # the fusion networks read both and score with the modality the video has
    for net in NETS:
        assert net not in s["no_face"]["models_left_out"]
        assert net not in s["no_audio"]["models_left_out"]
        assert net in s["neither"]["models_left_out"]
    assert all(r["face"] == "0" for r in _rows(out / "no_face_frames.csv"))

    assert audio["face"]["usable"] and not audio["audio"]["usable"]
    assert audio["audio"]["why"] == "no audio track (modality video)"
    assert s["no_audio"]["models_used"] and all(
        m.endswith(("_fer", "_finetuned")) or m in NETS for m in s["no_audio"]["models_used"]
    )
    assert s["no_audio"]["fusion"]["renormalised"]
    assert s["no_audio"]["dominant_emotion"] == "happiness"  # the clip's own emotion

    both = s["neither"]["modalities"]
    assert not both["face"]["usable"] and not both["audio"]["usable"]
    assert s["neither"]["models_used"] == []
    assert "no usable face" in caplog.text and "no usable audio" in caplog.text


@pytest.mark.slow
def test_a_stale_or_corrupt_input_is_one_line_naming_what_to_do(
    model_set, tmp_path, caplog, crema_videos
):
    params, models = model_set
    stale = tmp_path / "params.yaml"
    stale.write_text(params.read_text().replace("C: 10.0", "C: 0.5", 1))
    assert stale.read_text() != params.read_text()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_:
        _run([crema_videos[0]], tmp_path / "out", stale, models)
    assert exit_.value.code == 1
    assert "stale model set" in caplog.text and "dvc repro" in caplog.text
    assert "fit.kelm" in caplog.text

    # a corrupt file: the message build_manifest gives for it (pipeline.data.media.probe)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DataError) as err:
        probe(bad)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        _run([bad], tmp_path / "out", params, models)
    assert f"pipeline.predict failed: {err.value}" in caplog.text
    assert not (tmp_path / "out" / "bad.json").exists()


def test_a_missing_model_set_names_what_to_run(tmp_path, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_:
        _run(["any.mp4"], tmp_path / "out", ROOT / "params.yaml", tmp_path / "models")
    assert exit_.value.code == 1
    line = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(line) == 1 and "\n" not in line[0]
    assert "no trained model set" in line[0]
    assert "make demo" in line[0] and "dvc repro" in line[0]


def test_an_incomplete_model_set_names_the_missing_file(tmp_path):
    (tmp_path / "models" / "fuse").mkdir(parents=True)
    (tmp_path / "models" / "fuse" / "choice.json").write_text(
        json.dumps({"models": ["kelm_fer", "cnn_lstm_raw"], "weights": [0.5, 0.5]})
    )
    prm = predict.load_predict_params(ROOT / "params.yaml")
    with pytest.raises(PipelineError, match=r"incomplete model set \(.*scores.h5 not found\)"):
        predict.check_model_set(tmp_path / "models", prm)


def test_a_backbone_from_a_pretrain_stage_needs_its_checkpoint(tmp_path):
    """vggish_seq (and vgg_fer) with `weights: null` read <models>/<pretrain stage>/model.pt,
    as the embed stages do; a model set without it is incomplete, naming the file."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["embed_audio"]["backbones"]["vggish_seq"] = {"weights": None}
    params["window_stats"]["features"]["vggseq"] = "audio/vggish_seq"
    params["fit"]["features"] = [*params["fit"]["features"], "vggseq"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    models = tmp_path / "models"
    (models / "fuse" / "chosen").mkdir(parents=True)
    (models / "fuse" / "choice.json").write_text(
        json.dumps({"models": ["kelm_vggseq", "cnn_lstm_raw"], "weights": [0.5, 0.5]})
    )
    for f in (
        "fuse/chosen/scores.h5",
        "fit/kelm_vggseq/model.joblib",
        "fit/cnn_lstm_raw/model.joblib",
    ):
        (models / f).parent.mkdir(parents=True, exist_ok=True)
        (models / f).touch()
    for m in ("kelm_vggseq", "cnn_lstm_raw"):
        (models / "fit" / m / "report.json").touch()
        (models / "fit" / m / "scores.h5").touch()
    prm = predict.load_predict_params(tmp_path / "params.yaml")
    with pytest.raises(PipelineError, match=r"pretrain_vggish/model.pt not found"):
        predict.check_model_set(models, prm)
    ms = object.__new__(predict.ModelSet)  # the loader's paths without loading anything
    ms.root, ms.prm = models, prm
    entry = prm.embed_audio.backbones["vggish_seq"]
    assert ms._weights("vggish_seq", entry) == str(models / "pretrain_vggish" / "model.pt")
    assert ms._weights("vgg_fer", None) == str(models / "pretrain_faces" / "model.pt")
    assert ms._weights("distilled_fer", None) == str(models / "distil_faces" / "model.pt")
    assert ms._weights("logmel", prm.embed_audio.backbones["logmel"]) is None


def test_dvc_lock_params_that_differ_make_the_set_stale(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  finetune_faces: {cmd: x}\n"
        "  window_stats: {foreach: '${window_stats.features}', do: {cmd: x}}\n"
        "  fit: {matrix: {model: '${fit.models}', feature: [fer]}, cmd: x}\n"
        "  evaluate: {cmd: x}\n"
    )
    entry = "    params:\n      params.yaml:\n        {}: {}\n"
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n"
        + "  finetune_faces:\n"
        + entry.format("finetune_faces.weight_decay", "1e-05")  # DVC's float, a str to PyYAML
        + "".join(
            f"  window_stats@{f}:\n" + entry.format("window_stats.window_s", "4.0")
            for f in ("fer", "finetuned", "logmel", "mfcc", "ge2e")
        )
        + "".join(
            f"  fit@{m}-fer:\n" + entry.format(f"fit.{m}.C", "3.0" if m == "svm" else "10.0")
            for m in ("svm", "kelm")
        )
        + "  window_stats@gone:\n"  # a stage no longer defined: DVC keeps its entry
        + entry.format("window_stats.window_s", "8.0")
        + "  evaluate:\n"  # evaluate makes no model
        + entry.format("evaluate.timeline_videos", "99")
    )
    assert "no entry for stage fit@lstm-fer" in predict.lock_mismatch(lock, params)  # not run
    lock.write_text(lock.read_text() + "  fit@lstm-fer:\n" + entry.format("fit.lstm.lr", 0.003))
    assert predict.lock_mismatch(lock, params) == ""
    params.write_text(params.read_text().replace("window_s: 4.0", "window_s: 2.0", 1))
    problem = predict.lock_mismatch(lock, params)
    assert "window_stats.window_s = 4.0 (stage window_stats@fer)" in problem
    assert f"{params} has 2.0" in problem


def test_restrict_weights_renormalises_over_the_usable_models():
    w = np.array([0.5, 0.3, 0.2])
    np.testing.assert_array_equal(restrict_weights(w, np.ones(3, bool)), w)  # unchanged
    np.testing.assert_allclose(
        restrict_weights(w, np.array([True, False, True])), [5 / 7, 0, 2 / 7]
    )
    single = np.array([0.0, 1.0, 0.0])  # the chosen single model is not usable: uniform
    np.testing.assert_allclose(restrict_weights(single, np.array([1, 0, 1], bool)), [0.5, 0, 0.5])
    W = np.array([[0.6, 0.0], [0.4, 0.5], [0.0, 0.5]])  # MCWF: columns sum to 1
    got = restrict_weights(W, np.array([True, False, True]))
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(got.sum(axis=0), 1.0)


def test_face_flags_hold_the_last_sampled_frame_and_spans_cover_no_face_runs():
    track = {
        "t": np.array([0.0, 0.4, 0.8]),
        "frame_index": np.array([0, 10, 20]),
        "valid": np.array([True, False, True]),
    }
    frame_t = np.arange(25) / 25.0
    flags = predict._hold_flags(track, frame_t, 25.0)
    assert flags[:10].all() and not flags[10:20].any() and flags[20:].all()
    assert predict._hold_flags(None, frame_t, 25.0).sum() == 0
    assert predict.no_face_spans(frame_t, flags, 0.04) == [(0.4, 0.8)]
    assert predict.no_face_spans(frame_t[:3], np.zeros(3, bool), 0.04) == [(0.0, 0.12)]


def test_normalised_rows_sum_to_one():
    p = predict.normalise(np.array([[0.2, 0.2, 0.1], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p, [[0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.slow
def test_valence_arousal_models_give_valence_arousal_per_frame(
    tmp_path_factory, crema_videos, pretrained_dir, tmp_path
):
    from tests.small_model_set import build_model_set

    root = tmp_path_factory.mktemp("trained_va")
    params = build_model_set(root, crema_videos, pretrained_dir, task="va")
    models = root / "models"
    clip = next(v for v in crema_videos if "_DIS_" in v.name)  # b_* copy: a test video
    out = tmp_path / "out"
    _run([clip], out, params, models)
    frames = _rows(out / f"{clip.stem}_frames.csv")
    assert len(frames) == probe(clip).n_frames
    assert list(frames[0]) == ["frame", "time_s", "face", "valence", "arousal"]
    va = np.array([[float(r["valence"]), float(r["arousal"])] for r in frames])
    assert (np.abs(va) <= 1).all()
    summary = json.loads((out / f"{clip.stem}.json").read_text())
    assert set(summary["means"]) == {"valence", "arousal"} and "dominant_emotion" not in summary
    assert {"svm_fer", "kelm_mfcc"} <= set(summary["fusion"]["models"])
    assert (out / f"{clip.stem}_timeline.png").read_bytes()[:8] == PNG_MAGIC
    # the evaluate stage on valence/arousal: CCC of every model and fusion
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    for name in ("svm_fer", "kelm_mfcc", "cnn_lstm_raw", "conv_lstm", "fusion_swf"):
        m = metrics["test"][name]
        assert -1 <= m["ccc_valence"] <= 1 and m["ccc_mean"] == pytest.approx(
            (m["ccc_valence"] + m["ccc_arousal"]) / 2, abs=1e-5
        )
    assert "CCC" in (root / "reports" / "summary.md").read_text()

    prm = predict.load_predict_params(params)
    pred = predict.predict_video(clip, predict.ModelSet(models, prm), tmp_path / "work")
    vid = f"b_{clip.stem}"
    for name in summary["fusion"]["models"]:
        stored = dict(iter_groups(models / "fit" / name / "scores.h5"))[vid]
        np.testing.assert_allclose(pred.scores[name]["va"], stored["va"], atol=1e-5, err_msg=name)
    fused = dict(iter_groups(models / "fuse" / "chosen" / "scores.h5"))[vid]["va"]
    np.testing.assert_allclose(pred.values, fused, atol=1e-5)
