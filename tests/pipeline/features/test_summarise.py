"""Window summaries of one video: grid binning, short videos, frames without faces."""

import numpy as np

from pipeline.features.summarise import summarise_video, to_grid
from pipeline.labels.resample import grid_times


def _labels(n, y=None):
    return {"t": grid_times(n, 5.0), "y": np.asarray(y if y is not None else np.zeros(n), np.int8)}


def test_to_grid_averages_frames_per_bin_and_flags_empty_bins():
    t = np.array([0.05, 0.15, 0.45, 0.9])  # bins 0, 0, 2, 4
    x = np.array([[1.0], [3.0], [5.0], [7.0]], np.float32)
    valid = np.array([True, True, True, False])
    xg, vg = to_grid(t, x, valid, 5, 5.0)
    assert vg.tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(xg[:, 0], [2.0, 0, 5.0, 0, 0])


def test_windows_match_a_direct_computation():
    rng = np.random.default_rng(0)
    n = 60  # 12 s at 5 Hz
    emb = {
        "t": grid_times(n, 5.0),
        "x": rng.standard_normal((n, 3)).astype(np.float32),
        "valid": np.ones(n, bool),
    }
    emb["valid"][10:15] = False
    y = np.repeat([1, 2, 3], 20)
    out = summarise_video(
        emb, _labels(n, y), 5.0, window_s=4.0, overlap=0.5, min_valid_frac=0.5, n_classes=4
    )
    assert out["start"].tolist()[:3] == [0, 10, 20] and (out["end"] - out["start"] == 20).all()
    s, e = out["start"][0], out["end"][0]
    sel = emb["x"][s:e][emb["valid"][s:e]]
    np.testing.assert_allclose(
        out["x"][0], np.concatenate([sel.mean(0), sel.std(0)]), rtol=1e-5, atol=1e-6
    )
    # window 1 covers bins 10-29: ten labelled 1 and ten labelled 2, a tie -> the smaller class
    assert out["n_valid"][0] == 15 and out["y"][0] == 1 and out["y"][1] == 1 and out["y"][2] == 2
    np.testing.assert_allclose(out["t"][0], 2.0, atol=0.11)


def test_video_shorter_than_a_window_gives_one_window():
    n = 7  # 1.4 s
    emb = {"t": grid_times(n, 5.0), "x": np.ones((n, 2), np.float32), "valid": np.ones(n, bool)}
    out = summarise_video(
        emb, _labels(n, [4] * n), 5.0, window_s=4.0, overlap=0.5, min_valid_frac=0.5, n_classes=6
    )
    assert len(out["t"]) == 1 and out["start"][0] == 0 and out["end"][0] == n
    assert out["valid"][0] and out["y"][0] == 4


def test_all_frames_invalid_gives_invalid_windows_with_finite_features():
    n = 40
    emb = {"t": grid_times(n, 5.0), "x": np.ones((n, 2), np.float32), "valid": np.zeros(n, bool)}
    out = summarise_video(
        emb, _labels(n), 5.0, window_s=4.0, overlap=0.5, min_valid_frac=0.5, n_classes=6
    )
    assert not out["valid"].any() and (out["n_valid"] == 0).all() and np.isfinite(out["x"]).all()
