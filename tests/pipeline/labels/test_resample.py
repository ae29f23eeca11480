"""Labels to the 5 Hz grid and back, at many frame rates and with odd label files."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.labels import resample as rs

CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness")


@pytest.mark.parametrize("fps", [7.5, 25.0, 29.97, 30.0, 60.0])
def test_piecewise_constant_labels_survive_any_frame_rate(fps):
    # 10 s video: class 1 for [0, 4) s, unannotated [4, 5) s, class 3 for [5, 10) s
    n_frames = int(round(10 * fps))
    t = np.arange(n_frames) / fps
    labels = np.where(t < 4, 1, np.where(t < 5, -1, 3)).astype(np.int16)
    n = rs.n_bins(n_frames / fps, 5)
    y = rs.frames_to_grid_categorical(labels, t, n, 5.0, 6)
    centres = rs.grid_times(n, 5.0)
    assert n == int(np.ceil(n_frames / fps * 5 - 1e-9))
    np.testing.assert_array_equal(y[centres < 4], 1)
    np.testing.assert_array_equal(y[(centres > 4) & (centres < 5)], -1)
    np.testing.assert_array_equal(y[(centres > 5) & (centres < t[-1])], 3)
    # a last partial bin that starts after the last frame (29.97 fps: 10.01 s) is unannotated
    assert (y[centres - 0.1 > t[-1]] == -1).all()
    # back to frames: every annotated frame gets its own label again
    back = rs.grid_to_frames(y, 5.0, t, "hold")
    np.testing.assert_array_equal(back[labels >= 0], labels[labels >= 0])


def test_mode_with_ties_goes_to_smallest_class_and_ignores_unannotated():
    fps = 30.0  # 6 frames per 0.2 s bin
    labels = np.array([2, 2, 4, 4, -1, -1, 5, 5, 5, 1, 1, -1, -1] * 1, np.int16)
    t = np.arange(len(labels)) / fps
    y = rs.frames_to_grid_categorical(labels, t, 3, 5.0, 6)
    assert y.tolist() == [2, 5, -1]
    assert rs.frames_to_grid_categorical(labels, t, 3, 5.0, 6, min_frames=3).tolist() == [2, 5, -1]
    assert rs.frames_to_grid_categorical(labels, t, 3, 5.0, 6, min_frames=5).tolist() == [
        -1,
        5,
        -1,
    ]


def test_continuous_mean_of_valid_rows():
    va = np.array([[0.1, 0.2], [0.3, np.nan], [0.5, 0.6], [np.nan, np.nan]], np.float32)
    t = np.array([0.0, 0.05, 0.1, 0.3])
    out = rs.frames_to_grid_continuous(va, t, 2, 5.0)
    np.testing.assert_allclose(out[0], [0.3, 0.4])  # rows 0 and 2 (row 1 has a NaN)
    assert np.isnan(out[1]).all()


def test_label_file_shorter_or_longer_than_video():
    short = rs.fit_to_frames(np.array([1, 1, 2], np.int16), 5)
    assert short.tolist() == [1, 1, 2, -1, -1]
    assert rs.fit_to_frames(np.array([1, 1, 2, 3], np.int16), 2).tolist() == [1, 1]
    va = rs.fit_to_frames(np.zeros((1, 2), np.float32), 3)
    assert np.isnan(va[1:]).all()


def test_linear_inverse_mapping_interpolates_between_centres():
    vals = np.array([[0.0], [1.0], [2.0]], np.float32)  # centres 0.1, 0.3, 0.5 s
    t = np.array([0.0, 0.1, 0.2, 0.45, 0.9])
    out = rs.grid_to_frames(vals, 5.0, t, "linear")[:, 0]
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.75, 2.0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown method"):
        rs.grid_to_frames(vals, 5.0, t, "cubic")


def _row(**kw):
    base = dict(
        video_id="v",
        label_file="",
        clip_label="",
        has_video=True,
        fps=25.0,
        n_frames=50,
        duration_s=2.0,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_clip_label_becomes_constant(tmp_path):
    out = rs.video_labels_5hz(_row(clip_label="fear"), task="expr", classes=CLASSES, rate_hz=5.0)
    assert out["y"].tolist() == [3] * 10 and out["valid"].all()
    np.testing.assert_allclose(out["t"][:2], [0.1, 0.3])
    audio_only = rs.video_labels_5hz(
        _row(clip_label="anger", has_video=False, fps=0.0, n_frames=0, duration_s=2.1),
        task="expr",
        classes=CLASSES,
        rate_hz=5.0,
    )
    assert len(audio_only["y"]) == 11


def test_per_frame_file_shorter_than_video_is_unannotated_at_the_end(tmp_path):
    lf = tmp_path / "v.txt"
    lf.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness\n" + "4\n" * 30)  # 30 of 50 frames
    out = rs.video_labels_5hz(_row(label_file=str(lf)), task="expr", classes=CLASSES, rate_hz=5.0)
    assert out["y"].tolist() == [4] * 6 + [-1] * 4
    assert out["valid"].tolist() == [True] * 6 + [False] * 4
    va = tmp_path / "va.txt"
    va.write_text("valence,arousal\n" + "0.5,-0.5\n" * 25 + "-5,-5\n" * 25)
    out = rs.video_labels_5hz(_row(label_file=str(va)), task="va", classes=CLASSES, rate_hz=5.0)
    np.testing.assert_allclose(out["va"][:5], [[0.5, -0.5]] * 5)
    assert np.isnan(out["va"][5:]).all() and out["valid"].sum() == 5
