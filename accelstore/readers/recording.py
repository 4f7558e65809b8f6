"""One file's samples as a reader returns them: :class:`Recording`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accelstore.run_lengths import RunLengths

Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Recording:
    """One file's samples on the device clock (naive local time) with what is known about it.

    A reader returns the samples as read: unprocessed, except with the "actipy" engine, where
    actipy's read call of a device file runs its steps itself. The processing layer turns that
    into the processed recording ingest stores (docs/architecture.md, "Ingest").

    ``temperature``: °C per sample, held as runs, where the device records it; calibration fits
    a temperature term per axis with it.
    ``wear_time_deferred``: the reader left out the wear-time keys actipy's quality control
    reports (``WearTime(days)``, ``NumInterrupts``, ``Covers24hOK``), as computing them needs the
    non-wear kernel, which lies above the readers: the processing layer adds them.
    ``processed_on_read``: actipy's read call has run the processing steps already (the "actipy"
    engine's device files): the processing layer leaves the samples as they are.
    """

    path: Path
    time: np.ndarray  # datetime64[ns], increasing
    axes: Axes  # x, y, z: float32 (N,) in g; NaN where non-wear
    sample_rate: float
    device: str
    device_id: str
    info: dict[str, Any] = field(default_factory=dict)
    annotation: np.ndarray | None = None  # labelled CSVs only: one string per sample
    temperature: RunLengths | None = None
    wear_time_deferred: bool = False
    processed_on_read: bool = False

    @property
    def xyz(self) -> np.ndarray:
        """The axes as one (N, 3) array (a copy: the hot path uses ``axes``)."""
        return np.stack(self.axes, axis=1)


def axes_of(data: pd.DataFrame) -> Axes:
    """A frame's own x, y, z column arrays as contiguous float32: no copy when they already are."""
    return tuple(np.ascontiguousarray(data[axis].to_numpy(), dtype=np.float32) for axis in ("x", "y", "z"))
