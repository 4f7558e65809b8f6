"""Self-supervised pretext transforms of ssl-wearables (Yuan et al. 2024) as Numba kernels.

Every kernel takes a whole batch ``(B, 3, T)`` of float32 windows and an integer seed. Window
``b`` draws its randomness from its own counter-based splitmix64 stream, keyed by
``(seed, window_ids[b], stream)``, rather than from Numba's ``np.random``: that generator keeps
one state per thread, advanced by every earlier window of the batch, so a window's result would
depend on its batch position and on which thread ran it, whereas a keyed stream shares no state
between nogil threads and gives a window the same result in any batch that gives it the same id.

Where this differs from the ssl-wearables code: the speed curve is a natural cubic spline
(SciPy's default there is not-a-knot) integrated by the trapezoidal rule from 0, so the warp maps
the first sample to itself exactly; segment cuts are drawn directly rather than by rejection; a
permuted window is never left in its original order; see ``augment.py`` for the augmentation.
"""

from collections.abc import Sequence
from math import factorial
from operator import index

import numpy as np
from numba import njit

from accelstore.pretext_tasks import TASKS, checked_tasks

AOT, SCALE, PERMUTE, TIME_WARP = range(len(TASKS))

LABEL_STREAM = 0
"""Stream whose draw ``k`` decides whether task ``k`` is applied to a window."""
TASK_STREAM_BASE = 1
"""Task ``k`` draws its parameters from stream ``TASK_STREAM_BASE + k``."""
AUGMENT_STREAM = TASK_STREAM_BASE + len(TASKS)
"""Stream of the augmentation in ``augment.py``."""

SCALE_MIN_CHANGE = 0.15
SCALE_MAX_CHANGE = 0.5
N_SEGMENTS = 4
N_SEGMENT_ORDERS = factorial(N_SEGMENTS)
MIN_SEGMENT_LENGTH = 11
"""Each permuted segment is longer than 10 samples, so permutation needs T >= 44."""
N_KNOTS = 6
KNOT_SIGMA = 0.2
MIN_SPEED = 1e-3
"""Floor of the warp's speed curve: the warp stays strictly monotone even if the spline dips
below zero (a knot about five standard deviations below its mean)."""
MIN_LENGTH = {"permute": N_SEGMENTS * MIN_SEGMENT_LENGTH, "time_warp": 2}

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


# --- counter-based random numbers -------------------------------------------------------------


@njit(cache=True, nogil=True)
def _mix64(z):
    """The splitmix64 finaliser: a bijective avalanche of a 64-bit word."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def stream_key(seed, window_id, stream):
    """The key of the random stream ``stream`` of one window under ``seed``."""
    key = _mix64(np.uint64(seed) + _GAMMA)
    key = _mix64((key ^ np.uint64(window_id)) + _GAMMA)
    return _mix64((key ^ np.uint64(stream)) + _GAMMA)


@njit(cache=True, nogil=True)
def uniform(key, counter):
    """Draw ``counter`` of stream ``key``: a float64 in [0, 1) with 53 random bits."""
    bits = _mix64(key + _GAMMA * np.uint64(counter + 1))
    return (bits >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, nogil=True)
def _normal(key, counter):
    """A standard normal from draws ``counter`` and ``counter + 1`` (Box-Muller)."""
    radius = np.sqrt(-2.0 * np.log(1.0 - uniform(key, counter)))
    return radius * np.cos(2.0 * np.pi * uniform(key, counter + 1))


@njit(cache=True, nogil=True)
def decode_permutation(rank, perm):
    """Fill ``perm`` with the permutation of ``range(perm.size)`` of lexicographic ``rank``.

    Rank 0 is the identity; ranks 1 to n! - 1 are all the others.
    """
    n = perm.size
    for i in range(n):
        perm[i] = i
    place_value = 1
    for i in range(2, n):
        place_value *= i
    for i in range(n - 1):
        offset = rank // place_value
        rank %= place_value
        chosen = perm[i + offset]
        for j in range(i + offset, i, -1):
            perm[j] = perm[j - 1]
        perm[i] = chosen
        place_value //= n - 1 - i


# --- the transforms, one window at a time ------------------------------------------------------


@njit(cache=True, nogil=True)
def _reverse_time(window):
    n = window.shape[1]
    for c in range(window.shape[0]):
        for t in range(n // 2):
            window[c, t], window[c, n - 1 - t] = window[c, n - 1 - t], window[c, t]


@njit(cache=True, nogil=True)
def _scale_axes(window, key):
    for c in range(window.shape[0]):
        change = SCALE_MIN_CHANGE + (SCALE_MAX_CHANGE - SCALE_MIN_CHANGE) * uniform(key, 2 * c)
        factor = 1.0 + change if uniform(key, 2 * c + 1) < 0.5 else 1.0 - change
        for t in range(window.shape[1]):
            window[c, t] = window[c, t] * factor


@njit(cache=True, nogil=True)
def _permute_segments(window, key, bounds, order, row):
    """Cut into N_SEGMENTS segments of at least MIN_SEGMENT_LENGTH and reorder them.

    The samples beyond the minimum lengths (the slack) are split at three sorted uniform
    points; the order is uniform over the non-identity permutations.
    """
    n = window.shape[1]
    slack = n - N_SEGMENTS * MIN_SEGMENT_LENGTH
    bounds[0] = 0
    for k in range(1, N_SEGMENTS):
        bounds[k] = int(uniform(key, k) * (slack + 1))
    bounds[1:N_SEGMENTS].sort()
    for k in range(1, N_SEGMENTS):
        bounds[k] += k * MIN_SEGMENT_LENGTH
    bounds[N_SEGMENTS] = n
    decode_permutation(1 + int(uniform(key, 0) * (N_SEGMENT_ORDERS - 1)), order)
    for c in range(window.shape[0]):
        filled = 0
        for segment in order:
            length = bounds[segment + 1] - bounds[segment]
            row[filled : filled + length] = window[c, bounds[segment] : bounds[segment + 1]]
            filled += length
        window[c, :] = row


@njit(cache=True, nogil=True)
def natural_cubic_spline(knot_values, spacing, out, work):
    """Evaluate at t = 0, 1, ..., out.size - 1 the natural cubic spline through knots placed
    every ``spacing`` samples from t = 0; ``work`` is float64 scratch (2, knots).

    Solves the tridiagonal system of the interior second derivatives (Thomas algorithm), then
    evaluates each interval's cubic in Horner form.
    """
    m = knot_values.size
    second, sub = work[0], work[1]
    second[0] = second[m - 1] = sub[0] = 0.0
    for i in range(1, m - 1):
        rhs = 6.0 * (knot_values[i + 1] - 2.0 * knot_values[i] + knot_values[i - 1])
        pivot = 4.0 - sub[i - 1]
        sub[i] = 1.0 / pivot
        second[i] = (rhs / (spacing * spacing) - second[i - 1]) / pivot
    for i in range(m - 3, 0, -1):
        second[i] -= sub[i] * second[i + 1]
    per_sample = 1.0 / spacing
    curvature_scale = spacing * spacing / 6.0
    stop = 0
    for i in range(m - 1):
        start = stop
        stop = out.size if i == m - 2 else int(np.ceil((i + 1) * spacing))
        linear = knot_values[i + 1] - knot_values[i]
        linear -= curvature_scale * (2.0 * second[i] + second[i + 1])
        quadratic = 3.0 * curvature_scale * second[i]
        cubic = curvature_scale * (second[i + 1] - second[i])
        for t in range(start, stop):
            u = t * per_sample - i
            out[t] = knot_values[i] + u * (linear + u * (quadratic + u * cubic))


@njit(cache=True, nogil=True)
def _warp_times(key, counter, knots, work, speed, times):
    """Fill ``times`` with the warped time of each sample: the integral (trapezoidal) of a
    random speed curve, from 0 at the first sample to T - 1 at the last."""
    n = times.size
    for k in range(knots.size):
        knots[k] = 1.0 + KNOT_SIGMA * _normal(key, counter + 2 * k)
    natural_cubic_spline(knots, (n - 1) / (knots.size - 1), speed, work)
    times[0] = 0.0
    for t in range(1, n):
        step = max(speed[t - 1], MIN_SPEED) + max(speed[t], MIN_SPEED)
        times[t] = times[t - 1] + 0.5 * step
    stretch = (n - 1) / times[n - 1]
    for t in range(1, n - 1):
        times[t] *= stretch
    times[n - 1] = n - 1


@njit(cache=True, nogil=True)
def _time_warp(window, key, knots, work, speed, times, row):
    """Resample each axis, along its own warp, at the original sample times (linear)."""
    n = window.shape[1]
    for c in range(window.shape[0]):
        _warp_times(key, 2 * knots.size * c, knots, work, speed, times)
        row[:] = window[c]
        j = 0
        for i in range(n - 1):
            while times[j + 1] <= i:
                j += 1
            fraction = (i - times[j]) / (times[j + 1] - times[j])
            window[c, i] = row[j] + fraction * (row[j + 1] - row[j])
        window[c, n - 1] = row[n - 1]


# --- batch kernels ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def draw_labels(seed, window_ids, probabilities):
    """Labels (B, len(TASKS)): 1 where task k is to be applied, with probability
    ``probabilities[k]``, independently per window and task."""
    labels = np.zeros((window_ids.size, len(TASKS)), np.int64)
    for b in range(window_ids.size):
        key = stream_key(seed, window_ids[b], LABEL_STREAM)
        for k in range(len(TASKS)):
            labels[b, k] = uniform(key, k) < probabilities[k]
    return labels


@njit(cache=True, nogil=True)
def transform_windows(x, out, labels, seed, window_ids):
    """Write to ``out[b]`` window ``x[b]`` with every task k where ``labels[b, k]`` is 1
    applied, in TASKS order, each with parameters from its stream (seed, window_ids[b], k).

    ``out`` may be ``x``. Setting labels by hand forces a transform.
    """
    n = x.shape[2]
    row = np.empty(n)
    bounds = np.empty(N_SEGMENTS + 1, np.int64)
    order = np.empty(N_SEGMENTS, np.int64)
    knots = np.empty(N_KNOTS)
    spline_work = np.empty((2, N_KNOTS))
    speed = np.empty(n)
    times = np.empty(n)
    for b in range(x.shape[0]):
        window = out[b]
        window[:] = x[b]
        window_id = window_ids[b]
        if labels[b, AOT]:
            _reverse_time(window)
        if labels[b, SCALE]:
            _scale_axes(window, stream_key(seed, window_id, TASK_STREAM_BASE + SCALE))
        if labels[b, PERMUTE]:
            key = stream_key(seed, window_id, TASK_STREAM_BASE + PERMUTE)
            _permute_segments(window, key, bounds, order, row)
        if labels[b, TIME_WARP]:
            key = stream_key(seed, window_id, TASK_STREAM_BASE + TIME_WARP)
            _time_warp(window, key, knots, spline_work, speed, times, row)


# --- Python API ------------------------------------------------------------------------------


def check_batch(x: np.ndarray) -> None:
    """Raise unless ``x`` is a float32 batch of tri-axial windows (B, 3, T)."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[1] != 3:
        raise ValueError(f"expected an array (B, 3, T), got {getattr(x, 'shape', type(x))}")
    if x.dtype != np.float32:
        raise TypeError(f"expected float32 windows, got {x.dtype}")


def output_for(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A fresh array like ``x``, or ``out`` once checked to fit."""
    if out is None:
        return np.empty_like(x)
    check_batch(out)
    if out.shape != x.shape:
        raise ValueError(f"out has shape {out.shape}, the batch {x.shape}")
    return out


def window_ids_for(window_ids: Sequence[int] | np.ndarray | None, n_windows: int) -> np.ndarray:
    """The windows' ids as int64 (B,): by default their positions in the batch."""
    if window_ids is None:
        return np.arange(n_windows, dtype=np.int64)
    ids = np.asarray(window_ids, dtype=np.int64)
    if ids.shape != (n_windows,):
        raise ValueError(f"window_ids has shape {ids.shape}, expected ({n_windows},)")
    return ids


def seed_key(seed: int) -> np.uint64:
    """Any Python integer as the uint64 the kernels take."""
    return np.uint64(index(seed) % 2**64)


def apply_pretext(
    x: np.ndarray,
    tasks: Sequence[str],
    seed: int,
    p: float = 0.5,
    out: np.ndarray | None = None,
    *,
    window_ids: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Apply each named pretext task to each window independently with probability ``p``.

    Tasks are applied in the order of TASKS whatever order they are named in. Returns the
    transformed batch (``out`` if given; ``x`` is left untouched unless ``out is x``) and one
    int64 label array (B,) per task, 1 where it was applied. A window's labels and result
    depend only on its data, ``seed``, ``p``, the task set and its id (``window_ids``, by
    default its position in the batch); whether a task is applied does not depend on which
    other tasks are requested.
    """
    if isinstance(tasks, str):
        raise TypeError(f"tasks must be a sequence of names, e.g. [{tasks!r}]")
    names = checked_tasks(tasks, allow_empty=True)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    check_batch(x)
    for name in names:
        if x.shape[2] < MIN_LENGTH.get(name, 0):
            raise ValueError(f"{name} needs windows of at least {MIN_LENGTH[name]} samples")
    result = output_for(x, out)
    ids = window_ids_for(window_ids, x.shape[0])
    key = seed_key(seed)
    requested = [name in names for name in TASKS]
    labels = draw_labels(key, ids, np.where(requested, p, 0.0))
    transform_windows(x, result, labels, key, ids)
    return result, {name: labels[:, k].copy() for k, name in enumerate(TASKS) if requested[k]}
