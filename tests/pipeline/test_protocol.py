"""The official protocol: expressions per frame at the video's own rate, clips once each."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline import report
from pipeline.protocol import split_units, video_units

CLASSES = ("neutral", "anger", "happiness")


def _row(tmp_path, labels=None, clip="", fps=25.0):
    label_file = ""
    if labels is not None:
        label_file = tmp_path / "labels.txt"
        label_file.write_text("Neutral,Anger,Happiness\n" + "\n".join(map(str, labels)) + "\n")
    n = len(labels) if labels is not None else 50
    return SimpleNamespace(
        label_file=str(label_file) if label_file else "",
        clip_label=clip,
        fps=fps,
        n_frames=n,
        has_video=True,
        duration_s=n / fps,
    )


def test_per_frame_units_map_each_frame_to_its_bin(tmp_path):
    # 1 s at 25 fps: frames 0-4 fall in bin 0, 5-9 in bin 1, ... (bin k = [k/5, (k+1)/5) s)
    labels = [0] * 5 + [1] * 5 + [2] * 5 + [-1] * 5 + [1] * 5
    P = np.eye(3, dtype=np.float32)[[0, 1, 0, 0, 1]][None]  # bin 2 wrong, bin 3 unlabelled
    y, pred, kind = video_units(
        _row(tmp_path, labels), P, task="expr", classes=CLASSES, rate_hz=5.0
    )
    assert kind == "frames" and y.tolist() == labels
    assert pred.shape == (1, 25) and pred[0].tolist() == [0] * 5 + [1] * 5 + [0] * 10 + [1] * 5


def test_per_frame_metrics_differ_from_5hz_where_labels_change_inside_a_bin(tmp_path):
    # bin 0 holds 3 frames of class 0 and 2 of class 1: its 5 Hz label is 0 (the mode), so a
    # prediction of 0 is perfect at 5 Hz but wrong on 2 of 5 frames.
    labels = [0, 0, 0, 1, 1]
    P = np.eye(3, dtype=np.float32)[[0]][None]
    row = _row(tmp_path, labels)
    units = split_units({"v": row}, P, [("v", 1)], task="expr", classes=CLASSES, rate_hz=5.0)
    out = report.evaluate_split(P, np.array([0]), units, ["m"], list(CLASSES))["m"]
    assert out["accuracy"] == pytest.approx(3 / 5) and out["n_scored"] == 5
    assert out["grid_5hz"]["accuracy"] == 1.0 and out["grid_5hz"]["n_scored"] == 1


def test_clip_labels_give_one_unit_per_clip_from_the_mean_score(tmp_path):
    P = np.array([[[0.6, 0.4, 0], [0.1, 0.9, 0], [0.4, 0.6, 0]]], np.float32)  # mean: anger
    y, pred, kind = video_units(
        _row(tmp_path, clip="anger"), P, task="expr", classes=CLASSES, rate_hz=5.0
    )
    assert kind == "clips" and y.tolist() == [1] and pred.tolist() == [[1]]


def test_valence_arousal_per_frame_interpolates_between_bin_centres(tmp_path):
    path = tmp_path / "va.txt"
    path.write_text("valence,arousal\n" + "0.5,0.5\n" * 10)
    row = SimpleNamespace(
        label_file=str(path), clip_label="", fps=10.0, n_frames=10, has_video=True, duration_s=1.0
    )
    P = np.array([[[0.0, 0.0], [1.0, 1.0]] + [[1.0, 1.0]] * 3], np.float32)  # centres 0.1, 0.3 s
    y, pred, kind = video_units(row, P, task="va", classes=CLASSES, rate_hz=5.0)
    assert y.shape == (10, 2) and pred.shape == (1, 10, 2)
    assert pred[0, 2, 0] == pytest.approx(0.5)  # frame 2 at 0.2 s: half way between centres
    assert pred[0, 0, 0] == 0.0  # before the first centre: held
