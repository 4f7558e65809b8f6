"""Times of a query → window indices of one recording (store times are the device's naive clock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from accelstore.errors import InputError
from accelstore.grid import WINDOW_SECONDS

MAX_WINDOW_INDEX = 2**31 - 1  # windows are int32 in the table


def window_range(first: int, last: int, day0: np.datetime64, start: Any, end: Any) -> tuple[int, int]:
    """[w0, w1) of a recording's windows [first, last) that overlap [start, end), clipped to it.

    ``start``/``end``: anything :class:`pandas.Timestamp` reads, or None for the recording's own
    first and last window; ``start`` must come before ``end`` (InputError otherwise).
    """
    w0 = first if start is None else window_index_at(day0, start, np.floor, "start")
    w1 = last if end is None else window_index_at(day0, end, np.ceil, "end")
    if start is not None and end is not None and pd.Timestamp(start) >= pd.Timestamp(end):
        raise InputError(f"--start {start} is not before --end {end}")
    w0, w1 = min(max(w0, first), last), max(min(w1, last), first)
    return w0, max(w0, w1)


def window_index_at(day0: np.datetime64, when: Any, rounding: Callable[[float], float], name: str) -> int:
    """The window a time falls in (rounded down or up); InputError for unreadable or far-off times.

    ``name``: the option the time came from (``start``/``end``), for the message.
    """
    try:
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError, OverflowError) as error:
        raise InputError(f"--{name} {when!r} is not a time ({error})") from None
    if stamp is pd.NaT:
        raise InputError(f"--{name} {when!r} is not a time")
    if stamp.tzinfo is not None:
        raise InputError(f"--{name} {when!r} has a time zone; store times are the device's naive local clock")
    seconds = (stamp.to_datetime64().astype("datetime64[s]").astype(np.int64) - day0.astype("datetime64[s]").astype(np.int64))
    window = rounding(seconds / WINDOW_SECONDS)
    if not -MAX_WINDOW_INDEX <= window <= MAX_WINDOW_INDEX:
        raise InputError(f"--{name} {when!r} is too far from the recording (day 0 is {day0.astype('datetime64[D]')})")
    return int(window)
