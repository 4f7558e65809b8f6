"""Small CSV recordings with a known signal, for tests that need exact times and gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def signal(seconds: np.ndarray) -> np.ndarray:
    """x, y, z in g: slow sines around a 1 g z-axis, so interpolation error stays far below 1 milli-g."""
    return np.stack(
        [0.3 * np.sin(2 * np.pi * 0.05 * seconds), 0.2 * np.cos(2 * np.pi * 0.03 * seconds), 1 + 0.1 * np.sin(2 * np.pi * 0.02 * seconds)],
        axis=1,
    )


def write_csv(path: Path, start: str, end: str, rate: float = 50.0, gaps: tuple[tuple[str, str], ...] = ()) -> pd.DatetimeIndex:
    """Write samples from ``start`` to ``end`` at ``rate`` Hz, leaving out each [gap start, gap end)."""
    time = pd.date_range(start, end, freq=pd.Timedelta(seconds=1 / rate), inclusive="left").as_unit("ns")
    keep = np.ones(len(time), dtype=bool)
    for gap_start, gap_end in gaps:
        keep &= ~((time >= pd.Timestamp(gap_start)) & (time < pd.Timestamp(gap_end)))
    time = time[keep]
    seconds = (time - time[0].normalize()).total_seconds().to_numpy()
    xyz = signal(seconds)
    frame = pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M:%S.%f"), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    frame.to_csv(path, index=False, float_format="%.6f")
    return time
