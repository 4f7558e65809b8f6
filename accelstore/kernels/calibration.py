"""Gravity calibration kernels: actipy's version of van Hees et al. (2014).

A still device measures only gravity, so the means of stationary 10-s windows should lie on the
unit sphere. The fit finds per-axis offset (``intercept``), gain (``slope``) and, where the device
records temperature, a per-axis temperature coefficient (``slope_t``) such that
``intercept + slope * raw + slope_t * temperature`` is as close to the sphere as possible:
iteratively reweighted least squares, as ``actipy.processing.calibrate_gravity`` does it (weights
``max(1 - error / q99.5(error), 0)``, mean absolute error, stop when the relative improvement
falls below 1e-4).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_ITERATIONS = 1000
IMPROVEMENT_TOL = 1e-4
OUTLIER_QUANTILE = 0.995


@njit(cache=True, nogil=True)
def window_moments(time_ns, values, width_ns, n_windows, forward_fill):
    """Per-window mean and sample standard deviation (ddof 1) of one column, in float64.

    Window ``w`` holds the samples with ``(time_ns - time_ns[0]) // width_ns == w`` (``time_ns``
    increasing). NaN samples are skipped, or, with ``forward_fill``, replaced by the last finite
    value before them (what actipy's non-wear detection does). Empty windows have NaN mean,
    windows with fewer than two samples NaN deviation. The variance is ``(Σv² − Σv·mean) / (n − 1)``
    clipped at 0, as actipy computes it.
    """
    counts = np.zeros(n_windows, dtype=np.int64)
    sums = np.zeros(n_windows, dtype=np.float64)
    squares = np.zeros(n_windows, dtype=np.float64)
    origin = time_ns[0]
    # The current window's sums live in registers and are stored when a sample passes its end:
    # the same additions in the same order, without a store-to-load round trip per sample.
    w, window_end = 0, origin + width_ns  # divide only when a sample passes the window's end
    count, total, square = 0, 0.0, 0.0
    last = np.nan
    for i in range(time_ns.shape[0]):
        v = np.float64(values[i])
        if np.isnan(v):
            if not forward_fill or np.isnan(last):
                continue
            v = last
        else:
            last = v
        if time_ns[i] >= window_end:
            counts[w], sums[w], squares[w] = count, total, square
            w, window_end = _window_at(time_ns[i], origin, width_ns)
            count, total, square = 0, 0.0, 0.0
        count += 1
        total += v
        square += v * v
    counts[w], sums[w], squares[w] = count, total, square
    mean = np.full(n_windows, np.nan)
    std = np.full(n_windows, np.nan)
    for w in range(n_windows):
        if counts[w] > 0:
            mean[w] = sums[w] / counts[w]
        if counts[w] > 1:
            numerator = max(squares[w] - sums[w] * mean[w], 0.0)
            std[w] = np.sqrt(numerator / (counts[w] - 1))
    return mean, std


@njit(cache=True, nogil=True, inline="always")
def _window_at(t, origin, width_ns):
    """The window holding time ``t`` (windows of ``width_ns`` from ``origin``) and when the next begins."""
    w = (t - origin) // width_ns
    return w, origin + (w + 1) * width_ns


@njit(cache=True, nogil=True)
def step_window_means(time_ns, starts, values, width_ns, n_windows):
    """Per-window means of a series held as runs (:class:`~accelstore.run_lengths.RunLengths`), as
    :func:`window_moments` computes them over the series per sample: the same sums in the same
    order, NaN samples skipped, NaN for an empty window."""
    counts = np.zeros(n_windows, dtype=np.int64)
    sums = np.zeros(n_windows, dtype=np.float64)
    origin = time_ns[0]
    w, window_end = 0, origin + width_ns
    count, total = 0, 0.0
    for r in range(starts.shape[0]):
        v = np.float64(values[r])
        if np.isnan(v):
            continue
        stop = starts[r + 1] if r + 1 < starts.shape[0] else time_ns.shape[0]
        for i in range(starts[r], stop):
            if time_ns[i] >= window_end:
                counts[w], sums[w] = count, total
                w, window_end = _window_at(time_ns[i], origin, width_ns)
                count, total = 0, 0.0
            count += 1
            total += v
    counts[w], sums[w] = count, total
    mean = np.full(n_windows, np.nan)
    for w in range(n_windows):
        if counts[w] > 0:
            mean[w] = sums[w] / counts[w]
    return mean


@njit(cache=True, nogil=True)
def sphere_errors(points, errors):
    """``errors[i] = | ‖points[i]‖ − 1 |`` (distance to the unit sphere); returns their mean."""
    total = 0.0
    for i in range(points.shape[0]):
        norm = np.sqrt(points[i, 0] ** 2 + points[i, 1] ** 2 + points[i, 2] ** 2)
        errors[i] = abs(norm - 1.0)
        total += errors[i]
    return total / points.shape[0]


@njit(cache=True, nogil=True)
def _weighted_fit(u, v, y, weights, use_v):
    """Weighted least squares ``y ≈ p0 + p1·u (+ p2·v)``; returns (p0, p1, p2).

    Solved on weighted-mean-centred columns, which is the same solution as statsmodels' WLS
    (actipy's solver) but stays well conditioned with temperatures far from 0 °C. A temperature
    that does not vary among the weighted windows is left out (p2 = 0): the calibrated values are
    then the same whatever split of the constant term statsmodels' pseudo-inverse would pick.
    """
    w_sum = u_sum = v_sum = y_sum = 0.0
    for i in range(u.shape[0]):
        w_sum += weights[i]
        u_sum += weights[i] * u[i]
        v_sum += weights[i] * v[i]
        y_sum += weights[i] * y[i]
    u_mean, v_mean, y_mean = u_sum / w_sum, v_sum / w_sum, y_sum / w_sum
    suu = suv = svv = suy = svy = 0.0
    for i in range(u.shape[0]):
        du, dv, dy = u[i] - u_mean, v[i] - v_mean, y[i] - y_mean
        suu += weights[i] * du * du
        suv += weights[i] * du * dv
        svv += weights[i] * dv * dv
        suy += weights[i] * du * dy
        svy += weights[i] * dv * dy
    det = suu * svv - suv * suv
    if use_v and det > 1e-12 * suu * svv:
        p1 = (svv * suy - suv * svy) / det
        p2 = (suu * svy - suv * suy) / det
    else:
        p1 = suy / suu
        p2 = 0.0
    return y_mean - p1 * u_mean - p2 * v_mean, p1, p2


@njit(cache=True, nogil=True)
def fit_gravity(means, temperature, use_temperature):
    """Fit the calibration to stationary-window means (M, 3) float64 (and their temperatures).

    ``temperature`` (M,) float64 is ignored (pass zeros) without ``use_temperature``. Returns ``intercept``,
    ``slope``, ``slope_t`` (3,) of the best iteration, its mean error (g) and the number of
    iterations run.
    """
    n = means.shape[0]
    intercept = np.zeros(3)
    slope = np.ones(3)
    slope_t = np.zeros(3)
    best = (intercept.copy(), slope.copy(), slope_t.copy())
    best_error = 1e16
    current = means.copy()
    target = np.empty(n)
    errors = np.empty(n)
    sphere_errors(current, errors)
    iterations = 0
    for iteration in range(MAX_ITERATIONS):
        iterations = iteration + 1
        weights = np.maximum(1.0 - errors / np.quantile(errors, OUTLIER_QUANTILE), 0.0)
        for k in range(3):
            for i in range(n):
                norm = np.sqrt(current[i, 0] ** 2 + current[i, 1] ** 2 + current[i, 2] ** 2)
                target[i] = current[i, k] / norm
            p0, p1, p2 = _weighted_fit(current[:, k], temperature, target, weights, use_temperature)
            intercept[k] = p0 + intercept[k] * p1
            slope[k] = p1 * slope[k]
            slope_t[k] = p2 + slope_t[k] * p1
        for i in range(n):
            for k in range(3):
                current[i, k] = intercept[k] + means[i, k] * slope[k]
                if use_temperature:
                    current[i, k] += temperature[i] * slope_t[k]
        error = sphere_errors(current, errors)
        improvement = (best_error - error) / best_error
        if error < best_error:
            best = (intercept.copy(), slope.copy(), slope_t.copy())
            best_error = error
        if improvement < IMPROVEMENT_TOL:
            break
    return best[0], best[1], best[2], best_error, iterations


@njit(cache=True, nogil=True)
def apply_calibration(x, y, z, intercept, slope, starts, temperature, slope_t, use_temperature):
    """In place: ``axis = axis * slope + intercept (+ temperature * slope_t)``, in float32 as actipy.

    The temperature is held as runs (:class:`~accelstore.run_lengths.RunLengths`: ``starts``, ``temperature``).
    """
    axes = (x, y, z)
    for k in range(3):
        values = axes[k]
        if not use_temperature:
            for i in range(values.shape[0]):
                values[i] = values[i] * slope[k] + intercept[k]
            continue
        for r in range(starts.shape[0]):
            stop = starts[r + 1] if r + 1 < starts.shape[0] else values.shape[0]
            for i in range(starts[r], stop):
                values[i] = values[i] * slope[k] + intercept[k] + temperature[r] * slope_t[k]


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel here once, on tiny inputs."""
    time_ns = np.arange(0, 30_000_000_000, 10_000_000, dtype=np.int64)
    x, y, z = (np.zeros(time_ns.size, dtype=np.float32) for _ in range(3))
    for forward_fill in (False, True):
        window_moments(time_ns, x, 10_000_000_000, 3, forward_fill)
    starts, temperature = np.arange(0, time_ns.size, 120, dtype=np.int64), np.zeros(25, dtype=np.float32)
    step_window_means(time_ns, starts, temperature, 10_000_000_000, 3)
    means = np.concatenate([np.diag([1.1, 0.9, 1.05]), np.diag([-0.95, -1.1, -0.9])])
    fit_gravity(means, np.arange(6.0), True)
    coefficients = np.zeros(3, dtype=np.float32)
    apply_calibration(x, y, z, coefficients, coefficients, starts, temperature, coefficients, True)
