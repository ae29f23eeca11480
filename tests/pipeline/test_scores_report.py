"""Scores alignment and evaluation reports: hand-checked metrics, tables and figures."""

import numpy as np
import pytest

from pipeline import report
from pipeline.errors import PipelineError
from pipeline.protocol import Units
from pipeline.scores import stack_split

CLASSES = ["neutral", "anger", "happiness"]


def _one_hot(pred, k=3):
    return np.eye(k, dtype=np.float32)[pred]


def _grid_units(P, y):
    """Official units equal to the 5 Hz bins (to check the metric arithmetic alone)."""
    return Units(y, P.argmax(axis=-1), "frames")


def test_stack_split_aligns_models_and_labels():
    labels = {
        "b": {"y": np.array([1, 1, -1]), "split": "dev"},
        "a": {"y": np.array([0, 2]), "split": "dev"},
        "c": {"y": np.array([2]), "split": "test"},
    }
    m1 = {v: {"p": _one_hot(np.maximum(labels[v]["y"], 0))} for v in labels}
    m2 = {v: {"p": _one_hot(np.zeros(len(labels[v]["y"]), int))} for v in labels}
    P, y, index = stack_split({"m1": m1, "m2": m2}, labels, "dev")
    assert (
        P.shape == (2, 5, 3) and y.tolist() == [0, 2, 1, 1, -1] and index == [("a", 2), ("b", 3)]
    )
    del m2["b"]
    with pytest.raises(PipelineError, match="model m2: no scores for dev video 'b'"):
        stack_split({"m1": m1, "m2": m2}, labels, "dev")
    m2["b"] = {"p": _one_hot(np.zeros(2, int))}
    with pytest.raises(PipelineError, match="2 score rows for 'b', labels have 3"):
        stack_split({"m1": m1, "m2": m2}, labels, "dev")
    with pytest.raises(PipelineError, match="split 'train' has no videos"):
        stack_split({"m1": m1}, labels, "train")


def test_evaluate_split_hand_computed():
    # y: 0 0 1 1 2 2 (-1 masked); predictions: 0 1 1 1 2 0
    y = np.array([0, 0, 1, 1, 2, 2, -1])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    P = _one_hot(pred)[None]
    out = report.evaluate_split(P, y, _grid_units(P, y), ["m"], CLASSES)["m"]
    # class 0: precision 1/2, recall 1/2; class 1: P 2/3, R 1; class 2: P 1, R 1/2
    f1 = [2 * (1 / 2) * (1 / 2) / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * (1 / 2) / 1.5]
    assert out["per_class_f1"] == pytest.approx(dict(zip(CLASSES, f1)), abs=1e-6)
    assert out["accuracy"] == pytest.approx(4 / 6) and out["n_scored"] == 6
    assert out["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-6)
    assert out["cpm"] == pytest.approx(0.67 * np.mean(f1) + 0.33 * 4 / 6, abs=1e-6)
    assert out["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert out["grid_5hz"]["cpm"] == out["cpm"]


def test_markdown_table_sorted_by_dev_cpm_and_figures(tmp_path):
    metrics = {
        s: {
            "a": {"cpm": 0.4, "accuracy": 0.5, "macro_f1": 0.3, "uar": 0.35},
            "b": {"cpm": 0.6, "accuracy": 0.7, "macro_f1": 0.5, "uar": 0.55},
        }
        for s in ("dev", "test")
    }
    table = report.markdown_table(metrics).splitlines()
    assert table[2].startswith("| b | 0.600") and table[3].startswith("| a | 0.400")
    P, y = _one_hot(np.array([0, 1, 2]))[None], np.array([0, 1, 1])
    full = report.evaluate_split(P, y, _grid_units(P, y), ["m"], CLASSES)
    report.plot_confusion(tmp_path / "cm.png", full["m"]["confusion"], CLASSES, "m")
    report.plot_per_class_f1(tmp_path / "f1.png", full, CLASSES, "f1")
    report.plot_timeline(
        tmp_path / "tl.png",
        np.arange(3) * 0.2 + 0.1,
        np.array([0, 1, -1]),
        {"m": _one_hot(np.array([0, 1, 2]))},
        CLASSES,
        "v",
    )
    for name in ("cm.png", "f1.png", "tl.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report.confusion_records(np.array([0, -1, 2]), np.array([1, 1, 2]), CLASSES)
    assert rows == [
        {"actual": "neutral", "predicted": "anger"},
        {"actual": "happiness", "predicted": "happiness"},
    ]


def test_only_the_pipelines_models_are_read_not_stale_folders(tmp_path):
    from pipeline.scores import find_scores, pipeline_models

    for name in (
        "svm_fer",
        "kelm_fer",
        "cnn_lstm_raw",
        "feature_fusion",
        "svm_dlib",
    ):  # svm_dlib: left from an old run
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.h5").write_bytes(b"")
    names = pipeline_models(("svm", "kelm"), ("fer",))
    assert names == ["kelm_fer", "svm_fer", "cnn_lstm_raw", "feature_fusion"]
    assert list(find_scores(tmp_path, names)) == names
    assert "svm_dlib" in find_scores(tmp_path)  # a bare glob would have picked it up
    with pytest.raises(PipelineError, match=r"no scores for \['lstm_fer'\]"):
        find_scores(tmp_path, ["lstm_fer"])


def test_skipped_models_are_left_out_and_named_in_the_summary(tmp_path):
    from pipeline.scores import find_scores, skip_reason, skipped_models, write_skipped

    for name in ("kelm_mfcc", "cnn_lstm_raw"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.h5").write_bytes(b"")
    write_skipped(tmp_path / "kelm_fer", "kelm_fer", "no valid labelled windows in 'train'")
    assert sorted(p.name for p in (tmp_path / "kelm_fer").iterdir()) == ["report.json"]
    assert skip_reason(tmp_path / "kelm_mfcc") is None
    names = ["kelm_fer", "kelm_mfcc", "cnn_lstm_raw"]
    assert list(find_scores(tmp_path, names)) == ["kelm_mfcc", "cnn_lstm_raw"]
    assert skipped_models(tmp_path, names) == {"kelm_fer": "no valid labelled windows in 'train'"}
    with pytest.raises(PipelineError, match="every model was skipped"):
        find_scores(tmp_path, ["kelm_fer"])
    with pytest.raises(PipelineError, match=r"no scores for \['svm_fer'\]"):
        find_scores(tmp_path, ["kelm_fer", "svm_fer"])  # a skip record is not a missing model

    ev = report.Evaluation({"dev": {}}, {}, [], "cpm", "kelm_mfcc", "| table |\n", "per clip")
    text = report.summary_markdown(ev, skipped_models(tmp_path, names))
    assert "## Not fitted" in text and "- `kelm_fer`: no valid labelled windows" in text
    assert "Not fitted" not in report.summary_markdown(ev)
