"""Pretext transforms and augmentation kernels: geometry, labels, seeding, frequencies."""

from concurrent.futures import ThreadPoolExecutor
from itertools import permutations

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from accelstore.kernels.augment import augment
from accelstore.kernels.pretext import (
    MIN_SEGMENT_LENGTH,
    N_SEGMENTS,
    SCALE_MAX_CHANGE,
    SCALE_MIN_CHANGE,
    TASKS,
    apply_pretext,
    natural_cubic_spline,
    seed_key,
    transform_windows,
)

WINDOW_LENGTHS = (150, 300, 900)
AXIS_OFFSET = 1000.0


def noise(n_windows, n_samples=300, seed=0):
    return np.random.default_rng(seed).normal(size=(n_windows, 3, n_samples)).astype(np.float32)


def ramps(n_windows, n_samples):
    """Strictly increasing integer ramps; axis c is offset by c * AXIS_OFFSET."""
    ramp = np.arange(n_samples, dtype=np.float32) + AXIS_OFFSET * np.arange(3, dtype=np.float32)[:, None]
    return np.broadcast_to(ramp, (n_windows, 3, n_samples)).copy()


def forced(x, tasks, seed=0):
    """Apply ``tasks`` to every window (labels set by hand), window ids = batch positions."""
    labels = np.zeros((x.shape[0], len(TASKS)), np.int64)
    labels[:, [TASKS.index(name) for name in tasks]] = 1
    out = np.empty_like(x)
    transform_windows(x, out, labels, seed_key(seed), np.arange(x.shape[0], dtype=np.int64))
    return out


def changed(out, x):
    return np.any(out != x, axis=(1, 2))


def binomial_bound(n, p, n_sd=4.0):
    return n_sd * np.sqrt(n * p * (1.0 - p))


# --- geometry of each transform ---------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [150, 301])
def test_reversing_in_time_twice_is_the_identity(n_samples):
    x = noise(16, n_samples)
    once = forced(x, ["aot"])
    np.testing.assert_array_equal(once, x[:, :, ::-1])
    np.testing.assert_array_equal(forced(once, ["aot"]), x)


@pytest.mark.parametrize("n_samples", [44, *WINDOW_LENGTHS])
def test_permutation_reorders_four_contiguous_segments_longer_than_ten(n_samples):
    x = ramps(64, n_samples)
    out = forced(x, ["permute"], seed=n_samples)
    source = out - x[:, :, :1]  # the original index of every output sample
    n_four_pieces = 0
    for window in source:
        for axis in window[1:]:
            np.testing.assert_array_equal(axis, window[0])  # one reordering for all axes
        # maximal runs of consecutive source indices: whole segments, or neighbours kept in order
        pieces = np.split(window[0], np.flatnonzero(np.diff(window[0]) != 1) + 1)
        assert 2 <= len(pieces) <= N_SEGMENTS  # reordered, by no more than four cuts
        assert min(len(piece) for piece in pieces) >= MIN_SEGMENT_LENGTH
        np.testing.assert_array_equal(np.sort(window[0]), np.arange(n_samples))
        n_four_pieces += len(pieces) == N_SEGMENTS
    # 11 of the 23 non-identity orders of 4 keep no two neighbours in order: every cut shows
    assert n_four_pieces >= 64 * 11 / 23 - binomial_bound(64, 11 / 23)


@pytest.mark.parametrize("n_samples", WINDOW_LENGTHS)
def test_time_warp_keeps_both_ends_and_is_monotone(n_samples):
    x = ramps(32, n_samples)
    out = forced(x, ["time_warp"], seed=n_samples)
    assert np.all(np.diff(out, axis=2) >= 0)
    np.testing.assert_array_equal(out[:, :, 0], x[:, :, 0])
    np.testing.assert_array_equal(out[:, :, -1], x[:, :, -1])
    assert np.all(changed(out, x))
    shapes = out - x[:, :, :1]
    assert np.all(np.any(shapes[:, 0] != shapes[:, 1], axis=1))  # each axis its own curve


@pytest.mark.parametrize("n_samples", [44, *WINDOW_LENGTHS])
def test_speed_curve_is_the_natural_cubic_spline_through_the_knots(n_samples):
    knot_values = np.random.default_rng(n_samples).normal(1.0, 0.2, size=6)
    knot_times = np.linspace(0, n_samples - 1, knot_values.size)
    speed = np.empty(n_samples)
    natural_cubic_spline(knot_values, knot_times[1], speed, np.empty((2, knot_values.size)))
    expected = CubicSpline(knot_times, knot_values, bc_type="natural")(np.arange(n_samples))
    np.testing.assert_allclose(speed, expected, rtol=0, atol=1e-12)


def test_scale_factors_lie_in_the_allowed_ranges():
    out = forced(np.ones((500, 3, 150), np.float32), ["scale"])
    factors = out[:, :, 0]
    assert np.all(out == factors[:, :, None])  # one factor per axis, the whole window
    change = np.abs(factors.astype(np.float64) - 1.0)
    assert change.min() >= SCALE_MIN_CHANGE - 1e-6
    assert change.max() <= SCALE_MAX_CHANGE + 1e-6
    assert factors.min() < 1.0 - SCALE_MAX_CHANGE + 0.02 and factors.max() > 1.0 + SCALE_MAX_CHANGE - 0.02
    assert np.any((factors > 1.0 - SCALE_MIN_CHANGE - 0.02) & (factors < 1.0))
    assert np.any((factors < 1.0 + SCALE_MIN_CHANGE + 0.02) & (factors > 1.0))


@pytest.mark.parametrize("axis_order", [False, True])
def test_rotation_preserves_every_sample_norm_and_is_proper(axis_order):
    x = noise(64)
    out = augment(x, seed=5, axis_order=axis_order, rotation=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    for before, after in zip(x.astype(np.float64), out.astype(np.float64)):
        transposed, *_ = np.linalg.lstsq(before.T, after.T, rcond=None)  # after = M @ before
        np.testing.assert_allclose(transposed @ transposed.T, np.eye(3), atol=1e-5)
        assert abs(np.linalg.det(transposed) - (1.0 if not axis_order else abs(np.linalg.det(transposed)))) < 1e-5
        assert not np.allclose(transposed, np.eye(3), atol=1e-3)


def test_rotation_alone_has_determinant_one():
    x = noise(64)
    out = augment(x, seed=6, axis_order=False, rotation=True)
    for before, after in zip(x.astype(np.float64), out.astype(np.float64)):
        transposed, *_ = np.linalg.lstsq(before.T, after.T, rcond=None)
        assert np.linalg.det(transposed) == pytest.approx(1.0, abs=1e-5)


def test_axis_order_permutes_the_channels_uniformly():
    n_windows = 600
    x = noise(n_windows)
    out = augment(x, seed=9, axis_order=True, rotation=False)
    counts = dict.fromkeys(permutations(range(3)), 0)
    for before, after in zip(x, out):
        matches = [order for order in counts if np.array_equal(after, before[list(order)])]
        assert len(matches) == 1
        counts[matches[0]] += 1
    for count in counts.values():
        assert abs(count - n_windows / 6) <= binomial_bound(n_windows, 1 / 6)
