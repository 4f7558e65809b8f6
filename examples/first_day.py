"""A first look at a store from Python: the participants, one day of one participant, its movement.

    python examples/first_day.py demo/store.zarr
"""

from __future__ import annotations

import sys

import numpy as np

import accelstore


def main(path: str) -> None:
    store = accelstore.open_store(path)
    print(store)
    print(store.participants[["day0", "n_days", "device", "device_id", "valid_windows", "wear_days"]])

    participant = store.participants.index[0]
    first_day = store.participants.at[participant, "day0"] + np.timedelta64(1, "D")
    day = store.windows(participant, first_day, first_day + np.timedelta64(1, "D"))
    valid = day.where(day["valid"], drop=True)
    magnitude = np.sqrt((valid**2).sum("axis"))
    enmo = np.maximum(magnitude - 1, 0).mean("sample")
    print(f"{participant}, {str(first_day)[:10]}: {valid.sizes['window'] / 360:.1f} valid hours of {day.sizes['window'] / 360:.0f}")
    busiest = enmo.idxmax("window")
    print(f"mean ENMO {float(enmo.mean()) * 1000:.1f} milli-g; most active window starts {str(valid['time'].sel(window=busiest).values)[:19]}")

    dataset = store.dataset  # lazy: nothing is read until values are asked for
    print(f"whole store as a lazy xarray.Dataset: acc {dict(dataset['acc'].sizes)}, {dataset['acc'].nbytes / 1e9:.1f} GB if loaded")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo/store.zarr")
