"""Device-clock times and durations in ns, as one-line messages give them."""

from __future__ import annotations

import numpy as np


def clock_text(ns: int | np.integer) -> str:
    """A device-clock time in ns as 'YYYY-MM-DD hh:mm:ss' (to the second, as a message wants)."""
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


def duration_text(ns: int) -> str:
    """A duration in ns in the largest of days, hours and seconds that it reaches."""
    seconds = ns / 1e9
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds:.3g} s"
