"""Resampling onto the store's grid and per-window movement statistics.

The grid is fixed: 30 Hz samples in 10-s windows, window ``w`` starting ``w × 10 s`` after the
participant's ``day0``. Input times are int64 nanoseconds on the device clock and the three axes
are separate float32 arrays in g (NaN in non-wear) — the reader's own column arrays, so nothing
the size of the recording is copied. Output acceleration is int16 milli-g with ``ACC_FILL`` in
every window that is not fully covered, or that holds a value int16 milli-g cannot (beyond
±32.767 g): such a value is never clipped into a window that still reads as valid.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from accelstore.grid import (
    ACC_FILL,
    MAX_MILLI_G,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
)

MAX_GAP_SECONDS = 1.0


@njit(cache=True, nogil=True)
def _first_at_or_after(time_ns, t_ns):
    """Index of the first ``time_ns`` element >= t_ns (binary search; ``time_ns`` is increasing)."""
    lo, hi = 0, time_ns.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if time_ns[mid] < t_ns:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def resample_windows(time_ns, day0_ns, x, y, z, first_window, n_windows, max_gap=MAX_GAP_SECONDS):
    """Linearly interpolate the axes at the grid points of windows ``first_window …`` after ``day0_ns``.

    Returns ``acc`` int16 milli-g ``(n_windows, 3, 300)`` and ``valid`` bool ``(n_windows,)``.
    A window is valid when every one of its 300 grid points lies between two finite samples at
    most ``max_gap`` seconds apart (or on a finite sample) and every interpolated value rounds to
    within ±32767 milli-g; otherwise it holds ``ACC_FILL``.
    """
    acc = np.empty((n_windows, 3, WINDOW_SAMPLES), dtype=np.int16)
    valid = np.zeros(n_windows, dtype=np.bool_)
    n = time_ns.shape[0]
    if n == 0:
        acc[:] = ACC_FILL
        return acc, valid
    axes = (x, y, z)
    step = 1.0 / SAMPLE_RATE
    first = (time_ns[0] - day0_ns) * 1e-9
    last = (time_ns[n - 1] - day0_ns) * 1e-9
    j = max(_first_at_or_after(time_ns, day0_ns + np.int64(first_window) * WINDOW_SECONDS * 1_000_000_000) - 1, 0)
    for w in range(n_windows):
        window_start = (first_window + w) * WINDOW_SECONDS
        ok = True
        for k in range(WINDOW_SAMPLES):
            t = window_start + k * step
            if t < first or t > last:
                ok = False
                break
            while j + 1 < n and (time_ns[j + 1] - day0_ns) * 1e-9 <= t:
                j += 1
            t_j = (time_ns[j] - day0_ns) * 1e-9
            if t_j == t:
                for c in range(3):
                    m = np.rint(axes[c][j] * 1000.0)
                    ok = ok and _storable(m)
                    acc[w, c, k] = np.int16(m) if ok else 0
            else:
                dt = (time_ns[j + 1] - time_ns[j]) * 1e-9
                if dt > max_gap:
                    ok = False
                    break
                frac = (t - t_j) / dt
                for c in range(3):
                    m = np.rint((axes[c][j] + frac * (axes[c][j + 1] - axes[c][j])) * 1000.0)
                    ok = ok and _storable(m)
                    acc[w, c, k] = np.int16(m) if ok else 0
            if not ok:
                break
        valid[w] = ok
        if not ok:
            acc[w] = ACC_FILL
    return acc, valid


@njit(cache=True, nogil=True)
def _storable(m):
    """Whether rounded milli-g ``m`` fits the store (False for NaN and ±inf too: comparisons fail)."""
    return -MAX_MILLI_G <= m <= MAX_MILLI_G


@njit(cache=True, nogil=True)
def out_of_range_samples(x, y, z):
    """Samples with any axis beyond what int16 milli-g holds: those :func:`resample_windows` invalidates.

    The kernel's rule: a value × 1000 rounds beyond ±32767 exactly when its magnitude reaches
    32767.5 (ties round to even: 32768); NaN is absent, not beyond. One pass, nothing allocated.
    """
    count = 0
    for i in range(x.shape[0]):
        if abs(x[i] * 1000.0) >= MAX_MILLI_G + 0.5 or abs(y[i] * 1000.0) >= MAX_MILLI_G + 0.5 or abs(z[i] * 1000.0) >= MAX_MILLI_G + 0.5:
            count += 1
    return count


@njit(cache=True, nogil=True)
def window_stats(acc, valid):
    """Per-window movement statistics from int16 milli-g windows ``(W, 3, L)``.

    ``std``: mean over axes of each axis's standard deviation (g); ``enmo``: mean of
    max(‖a‖ − 1 g, 0) (g). Both are NaN where ``valid`` is False.
    """
    n_windows, n_axes, length = acc.shape
    std = np.full(n_windows, np.nan, dtype=np.float32)
    enmo = np.full(n_windows, np.nan, dtype=np.float32)
    for w in range(n_windows):
        if not valid[w]:
            continue
        std_sum = 0.0
        for c in range(n_axes):
            total = 0.0
            for k in range(length):
                total += acc[w, c, k]
            mean = total / length
            squares = 0.0
            for k in range(length):
                d = acc[w, c, k] - mean
                squares += d * d
            std_sum += np.sqrt(squares / length)
        std[w] = std_sum / n_axes / 1000.0
        excess = 0.0
        for k in range(length):
            norm_sq = 0.0
            for c in range(n_axes):
                g = acc[w, c, k] / 1000.0
                norm_sq += g * g
            e = np.sqrt(norm_sq) - 1.0
            if e > 0.0:
                excess += e
        enmo[w] = excess / length
    return std, enmo


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel here once, on tiny inputs.

    Times come writeable or read-only (the .cwa reader's are read-only), which Numba compiles
    for apart: both are loaded here, not in a worker's first task.
    """
    time_ns = np.arange(0, 25_000_000_000, 10_000_000, dtype=np.int64)
    axis = np.zeros(time_ns.size, dtype=np.float32)
    for writeable in (True, False):
        time_ns.flags.writeable = writeable
        acc, valid = resample_windows(time_ns, np.int64(0), axis, axis, axis, 0, 2)
        screened = axis.copy()  # the readers' axes come both ways too: the .cwa reader's writeable, pandas' not
        screened.flags.writeable = writeable
        out_of_range_samples(screened, screened, screened)
    window_stats(acc, valid)
