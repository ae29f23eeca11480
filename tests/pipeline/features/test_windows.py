"""Tests for pipeline.features.windows on tiny hand-checked and random arrays."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features.windows import (
    window_bounds,
    window_centres,
    window_labels,
    window_stats,
    window_va,
    windows_to_grid,
)


# --------------------------------------------------------------------------- bounds
def test_bounds_exact_fit():
    # 0.8 s at 5 Hz = 4 frames, hop 2; last window [6, 10) ends exactly at T.
    s, e = window_bounds(10, 5.0, 0.8, 0.5)
    np.testing.assert_array_equal(s, [0, 2, 4, 6])
    np.testing.assert_array_equal(e, [4, 6, 8, 10])


def test_bounds_tail_window_aligned_to_end():
    # Regular starts 0, 2, 4, 6 stop at frame 10 < 11: one more window [7, 11).
    s, e = window_bounds(11, 5.0, 0.8, 0.5)
    np.testing.assert_array_equal(s, [0, 2, 4, 6, 7])
    np.testing.assert_array_equal(e, [4, 6, 8, 10, 11])


@pytest.mark.parametrize("n_frames", [1, 3, 20])
def test_bounds_video_shorter_than_window(n_frames):
    s, e = window_bounds(n_frames, 5.0, 4.0, 0.5)  # window = 20 frames
    np.testing.assert_array_equal(s, [0])
    np.testing.assert_array_equal(e, [n_frames])


def test_bounds_empty_video_and_bad_args():
    s, e = window_bounds(0, 5.0, 4.0, 0.5)
    assert s.size == 0 and e.size == 0
    with pytest.raises(ValueError):
        window_bounds(10, 5.0, 4.0, 1.0)
    with pytest.raises(ValueError):
        window_bounds(-1, 5.0, 4.0, 0.5)


def test_bounds_hop_at_least_one_frame():
    # window 4 frames, overlap 0.9 -> hop round(0.4) = 0 -> clamped to 1.
    s, _ = window_bounds(10, 5.0, 0.8, 0.9)
    np.testing.assert_array_equal(s, np.arange(7))


@pytest.mark.parametrize("n_frames", [1, 19, 20, 21, 39, 40, 41, 57, 1000])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_bounds_cover_every_frame(n_frames, overlap):
    s, e = window_bounds(n_frames, 5.0, 4.0, overlap)
    assert s[0] == 0 and e[-1] == n_frames
    assert np.all(np.diff(s) > 0)
    assert np.all(e - s == min(20, n_frames))
    covered = np.zeros(n_frames, dtype=int)
    for a, b in zip(s, e):
        covered[a:b] += 1
    assert covered.min() >= 1


# --------------------------------------------------------------------------- stats
def test_stats_hand_computed():
    # Column 0: frames 1, 2, 4 valid and a NaN invalid frame; column 1 = 10 x column 0.
    # Window [0, 3): mean 7/3; var ((1-7/3)^2 + (2-7/3)^2 + (4-7/3)^2)/3 = (42/9)/3 = 14/9.
    # Window [1, 4): frames 2, 4 -> mean 3, std 1.   Window [3, 4): no valid frame.
    x = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [np.nan, np.nan]], dtype=np.float32)
    valid = np.array([True, True, True, False])
    starts, ends = np.array([0, 1, 3]), np.array([3, 4, 4])
    feats, n_valid = window_stats(x, valid, starts, ends)
    assert feats.dtype == np.float32 and feats.shape == (3, 4)
    np.testing.assert_array_equal(n_valid, [3, 2, 0])
    sd = np.sqrt(14.0) / 3.0
    np.testing.assert_allclose(feats[0], [7 / 3, 70 / 3, sd, 10 * sd], rtol=1e-6)
    np.testing.assert_allclose(feats[1], [3.0, 30.0, 1.0, 10.0], rtol=1e-6)
    assert np.isnan(feats[2]).all()


def _random_case(rng, n_frames, dim, p_invalid, offset):
    x = (offset + rng.standard_normal((n_frames, dim))).astype(np.float32)
    valid = rng.random(n_frames) > p_invalid
    x[~valid] = np.nan  # invalid frames must never leak into a statistic
    return x, valid


def _masked_reference(x, valid, starts, ends):
    """Window statistics through numpy masked arrays (an independent computation)."""
    feats, counts = [], []
    for s, e in zip(starts, ends):
        m = np.ma.masked_array(
            x[s:e].astype(np.float64), mask=np.repeat(~valid[s:e, None], x.shape[1], axis=1)
        )
        counts.append(int(valid[s:e].sum()))
        row = np.ma.concatenate([m.mean(axis=0), m.std(axis=0)]) if counts[-1] else None
        feats.append(np.full(2 * x.shape[1], np.nan) if row is None else row.filled(np.nan))
    return np.array(feats).reshape(len(starts), 2 * x.shape[1]), np.array(counts)


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.95])
def test_stats_match_loop_on_random_data(overlap):
    rng = np.random.default_rng(0)
    x, valid = _random_case(rng, 503, 6, 0.3, offset=50.0)
    s, e = window_bounds(503, 5.0, 2.0, overlap)
    f_vec, n_vec = window_stats(x, valid, s, e)
    f_ref, n_ref = _masked_reference(x, valid, s, e)
    np.testing.assert_array_equal(n_vec, n_ref)
    np.testing.assert_array_equal(np.isnan(f_vec), np.isnan(f_ref))
    np.testing.assert_allclose(f_vec, f_ref, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_stats_arbitrary_unsorted_and_empty_windows():
    rng = np.random.default_rng(1)
    x, valid = _random_case(rng, 200, 5, 0.5, offset=0.0)
    starts = rng.integers(0, 200, size=60)
    ends = np.minimum(200, starts + rng.integers(0, 30, size=60))  # some empty
    f_vec, n_vec = window_stats(x, valid, starts, ends)
    f_ref, n_ref = _masked_reference(x, valid, starts, ends)
    assert (n_ref == 0).any()
    np.testing.assert_array_equal(n_vec, n_ref)
    np.testing.assert_allclose(f_vec, f_ref, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_stats_no_catastrophic_cancellation():
    # float64 input with a huge mean and tiny spread: E[x^2] - E[x]^2 on raw data
    # would lose every digit (1e12 magnitudes, variance 1e-6).
    rng = np.random.default_rng(2)
    x = 1e6 + 1e-3 * rng.standard_normal((300, 3))
    valid = np.ones(300, dtype=bool)
    s, e = window_bounds(300, 5.0, 4.0, 0.5)
    feats, _ = window_stats(x, valid, s, e)
    ref_std = np.array([x[a:b].std(axis=0) for a, b in zip(s, e)])
    np.testing.assert_allclose(feats[:, 3:], ref_std, rtol=1e-4)


def test_stats_video_shorter_than_window():
    rng = np.random.default_rng(3)
    x, valid = _random_case(rng, 7, 4, 0.3, offset=0.0)
    valid[0] = True
    s, e = window_bounds(7, 5.0, 4.0, 0.5)
    feats, n_valid = window_stats(x, valid, s, e)
    assert feats.shape == (1, 8)
    assert n_valid[0] == valid.sum()
    np.testing.assert_allclose(feats[0, :4], x[valid].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(feats[0, 4:], x[valid].astype(np.float64).std(0), rtol=1e-5)


def test_stats_all_invalid():
    x = np.ones((30, 3), dtype=np.float32)
    feats, n_valid = window_stats(x, np.zeros(30, dtype=bool), *window_bounds(30, 5.0, 2.0, 0.5))
    assert np.isnan(feats).all()
    assert (n_valid == 0).all()


def test_stats_single_frame():
    x = np.array([[3.0, -1.0]], dtype=np.float32)
    feats, n_valid = window_stats(x, np.array([True]), *window_bounds(1, 5.0, 4.0, 0.5))
    np.testing.assert_array_equal(feats, [[3.0, -1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(n_valid, [1])


def test_labels_hand_computed_and_ties():
    y = np.array([0, 1, 1, 0, -1, 2, 2, -1])
    starts, ends = np.array([0, 4, 4, 1]), np.array([4, 8, 5, 3])
    # [0,4): two 0s, two 1s -> tie -> 0;  [4,8): 2;  [4,5): only -1 -> -1;  [1,3): 1.
    np.testing.assert_array_equal(window_labels(y, starts, ends, 3), [0, 2, -1, 1])
    # Masking frame 0 leaves one 0 and two 1s in [0,4).
    valid = np.ones(8, dtype=bool)
    valid[0] = False
    np.testing.assert_array_equal(window_labels(y, starts, ends, 3, valid=valid), [1, 2, -1, 1])


def test_labels_match_loop_and_reject_bad_values():
    rng = np.random.default_rng(4)
    y = rng.integers(-1, 7, size=400)
    s, e = window_bounds(400, 5.0, 1.0, 0.6)
    ref = []
    for a, b in zip(s, e):
        yy = y[a:b][y[a:b] >= 0]
        ref.append(np.bincount(yy, minlength=7).argmax() if yy.size else -1)
    np.testing.assert_array_equal(window_labels(y, s, e, 7), ref)
    with pytest.raises(ValueError):
        window_labels(np.array([0, 7]), np.array([0]), np.array([2]), 7)


def test_va_means_only_fully_annotated_rows():
    va = np.array([[0.5, -0.5], [-5.0, -5.0], [1.0, 0.2], [0.3, 2.0]])
    out = window_va(va, np.array([0, 1, 3]), np.array([4, 2, 4]))
    # [0,4): rows 0 and 2 -> ((0.5+1)/2, (-0.5+0.2)/2) = (0.75, -0.15); others none.
    np.testing.assert_allclose(out[0], [0.75, -0.15])
    assert np.isnan(out[1:]).all()


def test_centres_do_not_assume_zero_origin():
    t = 10.0 + 0.2 * np.arange(11)
    s, e = window_bounds(11, 5.0, 0.8, 0.5)
    # [0,4): (10.0 + 10.6)/2; last window [7, 11): (11.4 + 12.0)/2.
    np.testing.assert_allclose(window_centres(t, s, e), [10.3, 10.7, 11.1, 11.5, 11.7])


# --------------------------------------------------------------------------- grid
def test_grid_hand_computed_with_gap_and_nan_window():
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan]])
    out = windows_to_grid(scores, np.array([0, 2, 4]), np.array([3, 4, 5]), 6)
    # Frames 0-1: window 0; frame 2: both -> mean; frame 3: window 1;
    # frame 4: only a NaN (skipped) window; frame 5: no window.
    np.testing.assert_allclose(out[:4], [[1, 0], [1, 0], [0.5, 0.5], [0, 1]])
    assert np.isnan(out[4:]).all()


def test_grid_constant_scores_round_trip():
    s, e = window_bounds(203, 5.0, 4.0, 0.5)
    c = np.array([0.1, 0.7, 0.2])
    out = windows_to_grid(np.tile(c, (s.size, 1)), s, e, 203)
    np.testing.assert_allclose(out, np.tile(c, (203, 1)), rtol=1e-12)


def test_grid_matches_loop():
    rng = np.random.default_rng(5)
    s, e = window_bounds(97, 5.0, 2.0, 0.7)
    scores = rng.random((s.size, 4))
    total, count = np.zeros((97, 4)), np.zeros(97)
    for i, (a, b) in enumerate(zip(s, e)):
        total[a:b] += scores[i]
        count[a:b] += 1
    ref = total / count[:, None]
    np.testing.assert_allclose(windows_to_grid(scores, s, e, 97), ref, rtol=1e-10)
