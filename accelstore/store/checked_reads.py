"""Reading with the damage checks: nothing damaged is ever returned as numbers.

A chunk that fails its CRC32C checksum or does not decode, a table or day-summary cell that reads
as its fill value (a lost chunk), a day whose ``valid`` windows disagree with the day summary (a
lost or damaged ``valid`` chunk), a valid window without acceleration (a lost ``acc`` shard): each
raises :class:`~accelstore.errors.StoreDamageError` naming the array and, where known, the
participant and day.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import zarr

from accelstore.errors import StoreDamageError
from accelstore.grid import ACC_FILL, WINDOWS_PER_DAY
from accelstore.store.layout import DAY_ARRAYS, TABLE_COLUMNS, Status


def read_checked(array: zarr.Array, selection: Any, what: str) -> np.ndarray:
    """``array[selection]``, with a chunk that fails its checksum or does not decode a StoreDamageError."""
    try:
        return array[selection]
    except (ValueError, RuntimeError) as error:
        raise StoreDamageError(f"{what}: a chunk of '{array.name.lstrip('/')}' is damaged ({' '.join(str(error).split())[:120]})") from None


def read_column(arrays: Mapping[str, zarr.Array], name: str, participants: int, where: str) -> np.ndarray:
    """One table column's first ``participants`` rows; a lost chunk is a StoreDamageError.

    ``arrays``: the store's group, or its arrays by name.
    """
    column = TABLE_COLUMNS[name]
    values = read_checked(arrays[name], slice(0, participants), f"{where}: table column '{name}'")
    lost = np.isneginf(values) if np.dtype(values.dtype).kind == "f" else values == column.absent
    if lost.any():
        rows = np.flatnonzero(lost)
        raise StoreDamageError(f"{where}: table column '{name}' has lost rows {rows[0]}–{rows[-1]} (a missing chunk)")
    return values


def read_table(arrays: Mapping[str, zarr.Array], participants: int, where: str) -> pd.DataFrame:
    """The whole participant table, every row, damage checked; ``calibrated`` as bool."""
    table = pd.DataFrame({name: read_column(arrays, name, participants, where) for name in TABLE_COLUMNS})
    table["calibrated"] = table["calibrated"].astype(bool)
    complete = table[table["status"] == Status.COMPLETE]
    bad = complete.index[(complete["id"] == "") | (complete["n_windows"] <= complete["first_window"])]
    if len(bad):
        raise StoreDamageError(f"{where}: complete rows {', '.join(map(str, bad[:5]))} have no id or no windows: the table is damaged")
    if complete["id"].duplicated().any():
        raise StoreDamageError(f"{where}: participant ids {sorted(set(complete['id'][complete['id'].duplicated()]))[:5]} are in more than one complete row")
    return table


def read_day_summary(arrays: Mapping[str, zarr.Array], name: str, rows: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    """``rows`` of a day-summary array over the days of the committed ``shape`` (a slice is kept
    to its rows); a lost chunk is a StoreDamageError. ``arrays``: the store's group or arrays."""
    participants, windows = shape
    if isinstance(rows, slice):
        rows = slice(*rows.indices(participants))
    values = read_checked(arrays[name], (rows, slice(0, windows // WINDOWS_PER_DAY)), f"{where}: '{name}'")
    lost = np.isneginf(values) if values.dtype.kind == "f" else values == DAY_ARRAYS[name].absent
    if lost.any():
        raise StoreDamageError(f"{where}: '{name}' has lost cells (a missing chunk)")
    return values


def check_days(where: str, valid: np.ndarray, day_valid: np.ndarray, first_day: int) -> None:
    """Whole days of ``valid`` (from ``first_day`` on) against the day summary: a lost or damaged
    ``valid`` shard reads all False, and shows up here."""
    counts = valid.reshape(-1, WINDOWS_PER_DAY).sum(axis=1)
    wrong = np.flatnonzero(counts != day_valid)
    if len(wrong):
        day = first_day + int(wrong[0])
        raise StoreDamageError(
            f"{where}, day {day}: {counts[wrong[0]]} valid windows, the day summary says {day_valid[wrong[0]]} (a lost or damaged 'valid' chunk)"
        )


def check_present(where: str, valid: np.ndarray, acc: np.ndarray, first_window: int) -> None:
    """Valid windows must hold acceleration: a lost ``acc`` shard reads as absent."""
    absent = valid & (acc == ACC_FILL).any(axis=(1, 2))
    if absent.any():
        day = (first_window + int(np.flatnonzero(absent)[0])) // WINDOWS_PER_DAY
        raise StoreDamageError(f"{where}, day {day}: valid windows whose acceleration is absent (a lost 'acc' shard)")
