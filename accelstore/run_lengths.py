"""A per-sample series held as its runs of equal values: a device's temperature.

An AX3 records one temperature per 512-byte block of 80–120 samples. Held per sample it would be
as large as an axis (0.24 GB for a week at 100 Hz); as runs it is a few MB. The kernels that use
it (:mod:`accelstore.kernels.calibration`) walk the runs, value for value as over the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunLengths:
    """``values[r]`` on samples ``starts[r]`` up to ``starts[r + 1]`` (the last run up to ``n_samples``)."""

    starts: np.ndarray  # int64 (R,), increasing, starts[0] == 0 when R > 0
    values: np.ndarray  # float32 (R,)
    n_samples: int

    @classmethod
    def of(cls, samples: np.ndarray) -> RunLengths:
        """The runs of a per-sample array (NaN never equals a neighbour: each NaN is its own run)."""
        samples = np.asarray(samples, dtype=np.float32)
        starts = np.flatnonzero(np.concatenate([[True], samples[1:] != samples[:-1]])) if len(samples) else np.zeros(0, np.int64)
        return cls(starts.astype(np.int64), samples[starts], len(samples))

    def expand(self) -> np.ndarray:
        """The series per sample, float32 (n_samples,)."""
        return np.repeat(self.values, np.diff(np.append(self.starts, self.n_samples)))
