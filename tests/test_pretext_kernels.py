"""Pretext transforms and augmentation kernels: geometry, labels, seeding, frequencies."""

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise, permutations

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from accelstore.kernels.augment import augment
from accelstore.kernels.pretext_transforms import (
    TASKS,
    apply_pretext,
    natural_cubic_spline,
    seed_key,
    transform_windows,
)

WINDOW_LENGTHS = (150, 300, 900)
# the specification (docs/architecture.md, "Pretext tasks and augmentation"), written out rather than imported from the code under test
N_SEGMENTS = 4
SHORTEST_SEGMENT = 11  # "each longer than 10 samples"
SHORTEST_PERMUTABLE = N_SEGMENTS * SHORTEST_SEGMENT
SCALE_MIN_CHANGE, SCALE_MAX_CHANGE = 0.15, 0.5


def noise(n_windows, n_samples=300, seed=0):
    return np.random.default_rng(seed).normal(size=(n_windows, 3, n_samples)).astype(np.float32)


def ramps(n_windows, n_samples):
    """The ramp 0, 1, ..., n_samples - 1 on every axis of every window."""
    ramp = np.arange(n_samples, dtype=np.float32)
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
    n_four_pieces = 0
    for window in out:  # the ramp: each output sample holds its original index
        for axis in window[1:]:
            np.testing.assert_array_equal(axis, window[0])  # one reordering for all axes
        # maximal runs of consecutive source indices: whole segments, or neighbours kept in order
        pieces = np.split(window[0], np.flatnonzero(np.diff(window[0]) != 1) + 1)
        assert 2 <= len(pieces) <= N_SEGMENTS  # reordered, by no more than four cuts
        assert min(len(piece) for piece in pieces) >= SHORTEST_SEGMENT
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
    assert np.all(np.any(out[:, 0] != out[:, 1], axis=1))  # each axis its own curve


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
    assert factors.min() < 1.0 - SCALE_MAX_CHANGE + 0.02
    assert factors.max() > 1.0 + SCALE_MAX_CHANGE - 0.02
    assert np.any((factors > 1.0 - SCALE_MIN_CHANGE - 0.02) & (factors < 1.0))
    assert np.any((factors < 1.0 + SCALE_MIN_CHANGE + 0.02) & (factors > 1.0))


def linear_maps(x, out):
    """Per window, the 3 x 3 matrix M with out[b] = M @ x[b] (least squares)."""
    maps = [np.linalg.lstsq(before.T, after.T, rcond=None)[0].T for before, after in zip(x, out)]
    return np.array(maps, dtype=np.float64)


@pytest.mark.parametrize("axis_order", [False, True])
def test_rotation_preserves_every_sample_norm(axis_order):
    x = noise(64)
    out = augment(x, seed=5, axis_order=axis_order, rotation=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    maps = linear_maps(x.astype(np.float64), out.astype(np.float64))
    identities = np.broadcast_to(np.eye(3), maps.shape)
    np.testing.assert_allclose(maps @ maps.transpose(0, 2, 1), identities, atol=1e-5)
    assert not np.any(np.all(np.abs(maps - identities) < 1e-3, axis=(1, 2)))


def test_rotation_alone_is_proper():
    x = noise(64)
    out = augment(x, seed=6, axis_order=False, rotation=True)
    maps = linear_maps(x.astype(np.float64), out.astype(np.float64))
    np.testing.assert_allclose(np.linalg.det(maps), 1.0, atol=1e-5)


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


# --- labels and order -------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_labels_say_which_windows_the_task_changed(task):
    x = noise(256)
    out, labels = apply_pretext(x, [task], seed=3)
    assert list(labels) == [task]
    assert labels[task].dtype == np.int64 and labels[task].shape == (256,)
    np.testing.assert_array_equal(labels[task], changed(out, x).astype(np.int64))
    assert 0 < labels[task].sum() < 256


def test_labels_of_a_task_do_not_depend_on_the_other_tasks_requested():
    x = noise(256)
    out, labels = apply_pretext(x, TASKS, seed=4)
    for task in TASKS:
        np.testing.assert_array_equal(labels[task], apply_pretext(x, [task], seed=4)[1][task])
    any_applied = np.any([labels[task] for task in TASKS], axis=0)
    np.testing.assert_array_equal(changed(out, x), any_applied)


def test_tasks_are_applied_in_the_fixed_order_whatever_order_they_are_named_in():
    x = noise(32)
    named_forward = apply_pretext(x, list(TASKS), seed=8)
    named_backward = apply_pretext(x, list(reversed(TASKS)), seed=8)
    np.testing.assert_array_equal(named_forward[0], named_backward[0])
    one_after_another = x
    for task in TASKS:
        one_after_another = forced(one_after_another, [task], seed=8)
    np.testing.assert_array_equal(forced(x, TASKS, seed=8), one_after_another)
    reverse_last = forced(forced(x, ["permute"], seed=8), ["aot"], seed=8)
    assert np.all(changed(forced(x, ["aot", "permute"], seed=8), reverse_last))


def test_unknown_task_names_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="jitter") as error:
        apply_pretext(noise(2), ["aot", "jitter"], seed=0)
    assert all(task in str(error.value) for task in TASKS)


def test_permutation_needs_windows_of_44_samples():
    apply_pretext(noise(2, SHORTEST_PERMUTABLE), ["permute"], seed=0, p=1.0)
    with pytest.raises(ValueError, match="permute"):
        apply_pretext(noise(2, SHORTEST_PERMUTABLE - 1), ["permute"], seed=0)


def test_only_float32_batches_of_three_axes_are_accepted():
    with pytest.raises(TypeError, match="float32"):
        apply_pretext(noise(2).astype(np.float64), ["aot"], seed=0)
    with pytest.raises(ValueError, match="B, 3, T"):
        augment(noise(2)[:, :2], seed=0)


def test_the_input_is_untouched_unless_it_is_the_output():
    x = noise(8)
    before = x.copy()
    out, _ = apply_pretext(x, TASKS, seed=1, p=1.0)
    augmented = augment(x, seed=1)
    np.testing.assert_array_equal(x, before)
    in_place = x.copy()
    assert apply_pretext(in_place, TASKS, seed=1, p=1.0, out=in_place)[0] is in_place
    np.testing.assert_array_equal(in_place, out)
    in_place = x.copy()
    assert augment(in_place, seed=1, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, augmented)


# --- seeding ----------------------------------------------------------------------------------


def test_the_same_seed_repeats_the_result_and_another_seed_changes_it():
    x = noise(64)
    first, first_labels = apply_pretext(x, TASKS, seed=7)
    again, again_labels = apply_pretext(x, TASKS, seed=7)
    other, other_labels = apply_pretext(x, TASKS, seed=8)
    np.testing.assert_array_equal(first, again)
    for task in TASKS:
        np.testing.assert_array_equal(first_labels[task], again_labels[task])
    assert any(np.any(first_labels[task] != other_labels[task]) for task in TASKS)
    assert np.any(first != other)
    np.testing.assert_array_equal(augment(x, seed=7), augment(x, seed=7))
    assert np.all(changed(augment(x, seed=7), augment(x, seed=8)))


def test_a_window_gets_the_same_result_in_any_batch_with_the_same_id():
    x = noise(40)
    ids = 10**12 + np.arange(40) * 7
    whole, whole_labels = apply_pretext(x, TASKS, seed=11, window_ids=ids)
    pick = [39, 3, 17]
    part, part_labels = apply_pretext(x[pick], TASKS, seed=11, window_ids=ids[pick])
    np.testing.assert_array_equal(part, whole[pick])
    for task in TASKS:
        np.testing.assert_array_equal(part_labels[task], whole_labels[task][pick])
    augmented = augment(x, seed=11, window_ids=ids)
    np.testing.assert_array_equal(augment(x[pick], seed=11, window_ids=ids[pick]), augmented[pick])
    # by default the id is the position in the batch: a prefix batch agrees
    prefix, _ = apply_pretext(x[:10], TASKS, seed=11)
    np.testing.assert_array_equal(prefix, apply_pretext(x, TASKS, seed=11)[0][:10])


def test_threads_running_the_kernels_at_once_get_the_sequential_result():
    x = noise(256)
    ids = np.arange(256)
    chunks = [slice(start, start + 32) for start in range(0, 256, 32)]

    def pretext_then_augment(chunk):
        out, _ = apply_pretext(x[chunk], TASKS, seed=12, window_ids=ids[chunk])
        return augment(out, seed=13, window_ids=ids[chunk])

    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = np.concatenate(list(pool.map(pretext_then_augment, chunks)))
    np.testing.assert_array_equal(threaded, pretext_then_augment(slice(None)))


# --- frequencies ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_each_task_is_applied_to_a_fraction_p_of_windows_independently(p):
    n_windows = 4000
    x = np.zeros((n_windows, 3, SHORTEST_PERMUTABLE), np.float32)
    _, labels = apply_pretext(x, TASKS, seed=2024, p=p)
    for task in TASKS:
        assert abs(labels[task].sum() - n_windows * p) <= binomial_bound(n_windows, p)
    for first, second in pairwise(TASKS):
        both = np.sum(labels[first] & labels[second])
        assert abs(both - n_windows * p * p) <= binomial_bound(n_windows, p * p)
