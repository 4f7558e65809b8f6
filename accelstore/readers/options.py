"""How a file is to be read and processed: :class:`ProcessingOptions`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CSV_TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
"""Nanoseconds per unit of a CSV's numeric (epoch) times, by ``--csv-time-unit``."""


@dataclass(frozen=True)
class ProcessingOptions:
    """actipy's processing steps, each switchable (``None`` disables the low-pass), and how to read input.

    ``engine``: "numba" runs the processing layer's own steps on the samples a reader returns;
    "actipy" lets actipy run its own (the reference path).
    ``csv_time_unit``: the unit ("s", "ms", "us", "ns") of a CSV's numeric (epoch) times, which
    are refused without it; they are taken as the device's local clock.
    ``csv_time_format``: a ``strptime`` format for a CSV's text times; without it only ISO-8601
    is read.
    ``max_span_days``: a recording spanning more days than this, first to last sample, is refused
    (:class:`~accelstore.readers.SpanTooLongError`); ``math.inf`` disables the check.
    """

    lowpass_hz: float | None = 20.0
    calibrate: bool = True
    detect_nonwear: bool = True
    engine: str = "numba"
    csv_time_unit: str | None = None
    csv_time_format: str | None = None
    max_span_days: float = 60.0

    def __post_init__(self) -> None:
        if self.csv_time_unit is not None and self.csv_time_unit not in CSV_TIME_UNITS:
            raise ValueError(f"csv_time_unit {self.csv_time_unit!r} is not one of {', '.join(CSV_TIME_UNITS)}")
        if not self.max_span_days > 0:
            raise ValueError(f"max_span_days must be positive, not {self.max_span_days!r}")

    @property
    def actipy_steps(self) -> ProcessingOptions:
        """The steps actipy itself is to run: all of them with the actipy engine, none otherwise."""
        if self.engine == "actipy":
            return self
        return dataclasses.replace(self, lowpass_hz=None, calibrate=False, detect_nonwear=False)
