"""Non-wear kernels: long stationary runs and the wear-time summary, as actipy defines them.

actipy (``find_nonwear_segments``, ``flag_nonwear``) calls a 10-s window stationary when every
axis's sample standard deviation, over values with NaN forward-filled, is below 15 milli-g;
windows are counted from the first sample, and empty or one-sample windows are not stationary.
A run of ``n`` stationary windows "lasts" ``(n − 1) × 10 s``; runs lasting more than 90 minutes
are non-wear.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from accelstore.kernels.calibration import window_moments

NS_PER_HOUR = 3_600_000_000_000


@njit(cache=True, nogil=True)
def stationary_runs(time_ns, x, y, z, width_ns, std_tol):
    """Runs of consecutive stationary windows: (first window, number of windows), int64 each."""
    n_windows = (time_ns[-1] - time_ns[0]) // width_ns + 1
    still = np.ones(n_windows, dtype=np.bool_)
    for values in (x, y, z):
        _, std = window_moments(time_ns, values, width_ns, n_windows, True)
        for w in range(n_windows):
            if not std[w] < std_tol:  # NaN (too few samples) is not stationary
                still[w] = False
    firsts = np.empty(n_windows, dtype=np.int64)
    counts = np.empty(n_windows, dtype=np.int64)
    n_runs = 0
    w = 0
    while w < n_windows:
        if still[w]:
            first = w
            while w < n_windows and still[w]:
                w += 1
            firsts[n_runs] = first
            counts[n_runs] = w - first
            n_runs += 1
        w += 1
    return firsts[:n_runs], counts[:n_runs]


@njit(cache=True, nogil=True)
def wear_summary(time_ns, x, y, z, max_step_ns):
    """actipy's validity summary over samples whose three axes are all present (not NaN).

    Returns the summed steps shorter than ``max_step_ns`` between consecutive present samples
    (ns), the number of steps longer than it (interruptions; a step of exactly ``max_step_ns`` is
    neither), and per hour of the (naive device) clock the number of samples and of samples with
    any axis present. ``time_ns`` is increasing.
    """
    worn_ns = 0
    interruptions = 0
    hour_samples = np.zeros(24, dtype=np.int64)
    hour_present = np.zeros(24, dtype=np.int64)
    previous = np.int64(0)
    seen = False
    # The current hour's counts live in registers and are added in when a sample passes its end.
    hour, hour_end = 0, time_ns[0]  # divide only when a sample passes the hour's end
    samples, present_samples = 0, 0
    for i in range(time_ns.shape[0]):
        t = time_ns[i]
        if t >= hour_end:
            hour_samples[hour] += samples
            hour_present[hour] += present_samples
            samples, present_samples = 0, 0
            hour = (t // NS_PER_HOUR) % 24
            hour_end = (t // NS_PER_HOUR + 1) * NS_PER_HOUR
        samples += 1
        present = (not np.isnan(x[i])) + (not np.isnan(y[i])) + (not np.isnan(z[i]))
        present_samples += present > 0
        if present < 3:
            continue
        if seen:
            step = t - previous
            if step < max_step_ns:
                worn_ns += step
            elif step > max_step_ns:
                interruptions += 1
        previous = t
        seen = True
    hour_samples[hour] += samples
    hour_present[hour] += present_samples
    return worn_ns, interruptions, hour_samples, hour_present


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel here once, on tiny inputs."""
    time_ns = np.arange(0, 30_000_000_000, 10_000_000, dtype=np.int64)
    x, y, z = (np.zeros(time_ns.size, dtype=np.float32) for _ in range(3))
    stationary_runs(time_ns, x, y, z, 10_000_000_000, 0.015)
    wear_summary(time_ns, x, y, z, 1_000_000_000)
