"""The check every format's samples get once read: a span too long to be a real recording is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accelstore.readers.clock import clock_text, duration_text
from accelstore.readers.errors import SpanTooLongError

NS_PER_DAY = 86_400 * 1_000_000_000


def check_span(path: Path, time_ns: np.ndarray, max_days: float) -> None:
    """Refuse a recording longer than ``max_days`` (times are increasing), saying where its largest gap is.

    Run on the samples as read, before the expensive processing steps.
    """
    if len(time_ns) < 2:
        return
    span_ns = int(time_ns[-1]) - int(time_ns[0])
    if span_ns <= max_days * NS_PER_DAY:
        return
    gaps = np.diff(time_ns)
    k = int(np.argmax(gaps))
    raise SpanTooLongError(
        path,
        f"spans {span_ns / NS_PER_DAY:.1f} days (limit {max_days:g}, --max-span-days); "
        f"largest gap {duration_text(int(gaps[k]))} after {clock_text(time_ns[k])}",
    )
