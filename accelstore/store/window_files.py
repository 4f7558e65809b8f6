"""Saving query results: CSV (one row per sample), NumPy, NetCDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from accelstore.grid import SAMPLE_RATE

FORMATS = (".csv", ".npy", ".nc")


def save_windows(windows: xr.DataArray, path: str | Path) -> None:
    """Save the result of ``Store.windows`` in the format named by ``path``'s suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, windows.values)
    elif suffix == ".csv":
        samples_frame(windows).to_csv(path, index=False, float_format="%.3f")
    elif suffix == ".nc":
        # NetCDF-3 (scipy) has no boolean type
        out = windows.assign_coords(valid=windows["valid"].astype("int8"))
        out.to_netcdf(path, engine="scipy")
    else:
        raise ValueError(f"{path}: unknown output format '{suffix}'; use one of {', '.join(FORMATS)}")


def samples_frame(windows: xr.DataArray) -> pd.DataFrame:
    """One row per sample: time, window, valid, x, y, z (g)."""
    n_samples = windows.shape[-1]
    offsets = (np.arange(n_samples) * (1e9 / SAMPLE_RATE)).astype("timedelta64[ns]")
    times = (windows["time"].values[:, None] + offsets[None, :]).ravel()
    values = windows.transpose("window", "sample", "axis").values.reshape(-1, 3)
    return pd.DataFrame(
        {
            "time": times,
            "window": np.repeat(windows["window"].values, n_samples),
            "valid": np.repeat(windows["valid"].values, n_samples),
            "x": values[:, 0],
            "y": values[:, 1],
            "z": values[:, 2],
        }
    )
