"""The window axis in days: a day's windows, the days a recording spans, the day summary of a row.

Shards of ``acc`` and chunks of the per-window arrays are whole days, so readers and writers
address data by day; the day summary (valid windows and summed std per day) is what planners read
instead of the windows themselves.
"""

from __future__ import annotations

import numpy as np

from accelstore.grid import WINDOWS_PER_DAY


def day_span(day: int) -> slice:
    """The windows of day ``day``, counted from a participant's day 0."""
    return slice(day * WINDOWS_PER_DAY, (day + 1) * WINDOWS_PER_DAY)


def recorded_days(first_window: int, n_windows: int) -> range:
    """Days holding windows of a recording that spans windows [first_window, n_windows)."""
    return range(first_window // WINDOWS_PER_DAY, (n_windows - 1) // WINDOWS_PER_DAY + 1)


def summarise_days(valid: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid windows (int32) and summed std of the valid windows (float32) of each whole day.

    The std sum runs over each day's valid windows in order, as ingest sums them, so that the
    float32 totals come out bit for bit the same.
    """
    days = valid.size // WINDOWS_PER_DAY
    day_valid = np.zeros(days, dtype=np.int32)
    day_std = np.zeros(days, dtype=np.float32)
    for day in range(days):
        span = day_span(day)
        day_valid[day] = valid[span].sum()
        day_std[day] = std[span][valid[span]].sum()
    return day_valid, day_std
