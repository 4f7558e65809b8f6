"""The resample kernel and per-window statistics, against NumPy on hand-made signals."""

from __future__ import annotations

import numpy as np
import pytest

from accelstore.grid import ACC_FILL, WINDOW_SAMPLES
from accelstore.kernels import resample
from accelstore.kernels.resample import window_stats


def resample_windows(seconds: np.ndarray, xyz: np.ndarray, first_window: int, n_windows: int):
    """The kernel, fed seconds from day 0 and an (N, 3) array as these tests build them."""
    time_ns = np.round(seconds * 1e9).astype(np.int64)
    axes = [np.ascontiguousarray(xyz[:, axis], dtype=np.float32) for axis in range(3)]
    return resample.resample_windows(time_ns, np.int64(0), *axes, first_window, n_windows)


def _grid(first_window: int, n_windows: int) -> np.ndarray:
    return (np.arange(first_window, first_window + n_windows)[:, None] * 10.0 + np.arange(WINDOW_SAMPLES)[None, :] / 30.0)


def test_linear_interpolation_matches_numpy_on_jittered_samples():
    rng = np.random.default_rng(3)
    time = np.cumsum(rng.uniform(0.009, 0.011, 20_000)) + 3.3  # ~100 Hz with jitter, starting mid-window
    xyz = np.stack([np.sin(time), np.cos(0.7 * time), 0.2 * time % 1.5], axis=1).astype(np.float32)
    acc, valid = resample_windows(time, xyz, 0, 25)
    grid = _grid(0, 25)
    inside = (grid[:, 0] >= time[0]) & (grid[:, -1] <= time[-1])
    np.testing.assert_array_equal(valid, inside)
    for axis in range(3):
        expected = np.round(np.interp(grid[valid], time, xyz[:, axis].astype(np.float64)) * 1000)
        assert np.abs(acc[valid, axis, :] - expected).max() <= 1  # rounding at .5 may differ by 1
    assert np.all(acc[~valid] == ACC_FILL)


def test_gap_longer_than_one_second_invalidates_only_the_windows_it_touches():
    time = np.arange(0.0, 60.0, 0.01)
    time = np.concatenate([time[time < 23.0], time[time >= 24.5]])  # 1.5-s hole inside window 2
    xyz = np.ones((time.size, 3), dtype=np.float32)
    _, valid = resample_windows(time, xyz, 0, 7)
    assert valid.tolist() == [True, True, False, True, True, True, False]  # window 6 lies past the data


def test_gap_of_under_a_second_is_interpolated_across():
    time = np.arange(0.0, 30.0, 0.01)
    time = np.concatenate([time[time < 12.0], time[time >= 12.8]])
    xyz = np.repeat(time[:, None], 3, axis=1).astype(np.float32) / 100
    acc, valid = resample_windows(time, xyz, 0, 2)
    assert valid.tolist() == [True, True]
    np.testing.assert_allclose(acc[1, 0] / 1000, _grid(1, 1)[0] / 100, atol=1e-3)


def test_nan_samples_make_their_window_invalid():
    time = np.arange(0.0, 40.0, 0.01)
    xyz = np.zeros((time.size, 3), dtype=np.float32)
    xyz[(time > 15) & (time < 15.5), 1] = np.nan
    _, valid = resample_windows(time, xyz, 0, 3)
    assert valid.tolist() == [True, False, True]


def test_windows_are_addressed_from_day0_not_from_the_first_sample():
    time = np.arange(100.0, 140.0, 0.01)
    xyz = np.repeat(time[:, None], 3, axis=1).astype(np.float32) / 1000
    acc, valid = resample_windows(time, xyz, 10, 3)
    assert valid.tolist() == [True, True, True]
    assert acc[0, 0, 0] == 100 and acc[2, 2, 0] == 120  # window 10 starts at 100 s, window 12 at 120 s


def test_values_beyond_the_int16_range_invalidate_their_window_instead_of_saturating():
    time = np.arange(0.0, 31.0, 0.01)
    xyz = np.full((time.size, 3), 32.767, dtype=np.float32)  # the largest value stored
    xyz[:, 1] = -32.767
    xyz[(time > 14.0) & (time < 14.2), 0] = 40.0  # beyond it, inside window 1 only
    xyz[(time > 24.0) & (time < 24.2), 1] = -32.768
    acc, valid = resample_windows(time, xyz, 0, 3)
    assert valid.tolist() == [True, False, False]
    assert acc[0, 0, 0] == 32767 and acc[0, 1, 0] == -32767
    assert np.all(acc[1:] == ACC_FILL)


def test_window_stats_match_numpy():
    rng = np.random.default_rng(5)
    acc = rng.integers(-2500, 2500, (7, 3, WINDOW_SAMPLES)).astype(np.int16)
    valid = np.array([True, True, False, True, True, True, False])
    std, enmo = window_stats(acc, valid)
    g = acc.astype(np.float64) / 1000
    expected_std = g.std(axis=2).mean(axis=1)
    expected_enmo = np.maximum(np.linalg.norm(g, axis=1) - 1, 0).mean(axis=1)
    np.testing.assert_allclose(std[valid], expected_std[valid], rtol=1e-5)
    np.testing.assert_allclose(enmo[valid], expected_enmo[valid], rtol=1e-5)
    assert np.isnan(std[~valid]).all() and np.isnan(enmo[~valid]).all()


def test_still_window_at_one_g_has_zero_std_and_enmo():
    acc = np.zeros((1, 3, WINDOW_SAMPLES), dtype=np.int16)
    acc[0, 2] = 1000
    std, enmo = window_stats(acc, np.array([True]))
    assert std[0] == pytest.approx(0.0) and enmo[0] == pytest.approx(0.0)


def test_the_out_of_range_count_follows_the_kernels_rule():
    values = np.array([32.767, -32.767, 32.7674, 32.7675, -32.7675, 40.0, np.inf, np.nan, 0.0], dtype=np.float32)
    beyond = np.array([False, False, False, True, True, True, True, False, False])
    zeros = np.zeros_like(values)
    assert resample.out_of_range_samples(values, zeros, zeros) == beyond.sum() == 4
    assert resample.out_of_range_samples(zeros, zeros, values) == 4
    for value, expected in zip(values[:6], beyond[:6]):  # the kernel invalidates exactly those windows
        time = np.arange(0.0, 11.0, 0.01)
        xyz = np.zeros((time.size, 3), dtype=np.float32)
        xyz[:, 2] = value
        assert resample_windows(time, xyz, 0, 1)[1][0] == (not expected)
