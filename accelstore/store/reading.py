"""Reading a store: :class:`Store` (open one with :func:`open_store`).

Every read goes through the checks of :mod:`accelstore.store.checked_reads`: data that fails one
raises :class:`~accelstore.errors.StoreDamageError` instead of coming back as numbers. Readers see
the complete participants only, within the committed shape, so a write or growth in progress is
invisible to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.core.sync import sync

from accelstore.grid import AXES, SAMPLE_RATE, WINDOW_SECONDS, WINDOWS_PER_DAY
from accelstore.store.checked_reads import check_days, check_present, read_checked, read_day_summary, read_table
from accelstore.store.failures import read_failures
from accelstore.store.layout import LABEL_ARRAY, Status, acc_to_g, committed_shape, window_arrays_of
from accelstore.store.lazy_dataset import participants_dataset
from accelstore.store.query_times import window_range
from accelstore.store.root_group import open_arrays, open_group, reaching


class Store:
    """A read-only view of an accelstore store.

    ``participants`` lists the complete participants and ``select`` some of them; ``windows``
    reads one participant's windows straight from Zarr; ``window_values``, ``days_of`` and
    ``day_summary`` read single arrays; ``dataset`` is the whole store as a lazy
    ``xarray.Dataset`` (no Dask). Data that fails a check raises
    :class:`~accelstore.errors.StoreDamageError`.
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path = str(path)
        self.storage_options = storage_options
        with reaching(self.path):
            self.group = open_group(self.path, "r", storage_options)
            self.shape = committed_shape(self.group)
            self.arrays = open_arrays(self.group, self.path)
        self._table: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"<accelstore.Store {self.path!r}: {len(self.participants)} participants>"

    # ---------------------------------------------------------------- who is in it

    @property
    def participants(self) -> pd.DataFrame:
        """Complete participants, indexed by id: row, start of day 0, windows, device, source …"""
        if self._table is None:
            table = read_table(self.arrays, self.shape[0], self.path)
            table = table[table["status"] == Status.COMPLETE].drop(columns="status")
            table.insert(0, "row", table.index.to_numpy())
            table["day0"] = pd.to_datetime(table["day0"].to_numpy(), unit="s")
            table["n_days"] = -(-table["n_windows"] // WINDOWS_PER_DAY)
            self._table = table.set_index("id")
        return self._table

    def select(self, participants: str | Sequence[str] | None = None) -> pd.DataFrame:
        """The table rows (as :attr:`participants`) of ``participants``, each once in the order
        given, or of every complete participant when None.

        A KeyError names every id that is not a complete participant of this store (unknown,
        failed, damaged or still being written).
        """
        table = self.participants
        if participants is None:
            return table
        ids = list(dict.fromkeys(str(pid) for pid in ([participants] if isinstance(participants, str) else participants)))
        missing = [pid for pid in ids if pid not in table.index]
        if missing:
            named = ", ".join(map(repr, missing))
            verb = f"participant {named} is" if len(missing) == 1 else f"participants {named} are"
            raise KeyError(f"{verb} not in {self.path} (or not completely ingested)")
        return table.loc[ids]

    def participant(self, participant: str) -> pd.Series:
        """The table row of one complete participant; KeyError naming the store otherwise."""
        return self.select([participant]).iloc[0]

    @property
    def classes(self) -> list[str]:
        """Class names of a labelled store (``label`` codes index this list); empty otherwise."""
        return list(self.group.attrs.get("classes", []))

    @property
    def labelled(self) -> bool:
        """Whether the store holds per-window labels (ingested with ``--labels``)."""
        return LABEL_ARRAY.name in self.arrays and "classes" in self.group.attrs

    @property
    def failures(self) -> pd.DataFrame:
        """Files that could not be ingested, and participants ``verify`` found damaged, with the
        reason: indexed by source, columns ``id``, ``error``, ``message``."""
        return read_failures(self.group, self.path)

    # ---------------------------------------------------------------- reading data

    def windows(self, participant: str, start: Any = None, end: Any = None) -> xr.DataArray:
        """Windows of ``participant`` overlapping [start, end) as float32 g (NaN where absent).

        Dims ``window`` (index from day 0), ``axis`` (x, y, z), ``sample`` (300 at 30 Hz); coordinates
        ``time`` (start of each window, device clock), ``valid`` and, in a labelled store, ``label``.
        ``start``/``end`` default to the recording's first and last window; ``start`` must come
        before ``end`` (:class:`~accelstore.errors.InputError` otherwise).
        """
        info = self.participant(participant)
        row = int(info["row"])
        day0 = np.datetime64(info["day0"], "ns")
        w0, w1 = window_range(int(info["first_window"]), int(info["n_windows"]), day0, start, end)
        where = f"{self.path}: participant {participant!r}"
        first_day, last_day = w0 // WINDOWS_PER_DAY, -(-w1 // WINDOWS_PER_DAY)
        raw = self.window_values(row, "acc", slice(w0, w1), where)
        valid_days = self._checked_valid(row, first_day, last_day, where)
        valid = valid_days[w0 - first_day * WINDOWS_PER_DAY : w1 - first_day * WINDOWS_PER_DAY]
        check_present(where, valid, raw, w0)
        index = np.arange(w0, w1)
        coords = {
            "window": index,
            "time": ("window", day0 + index * np.timedelta64(WINDOW_SECONDS, "s")),
            "axis": list(AXES),
            "valid": ("window", valid),
        }
        if self.labelled:
            coords["label"] = ("window", self.window_values(row, LABEL_ARRAY.name, slice(w0, w1), where))
        return xr.DataArray(
            acc_to_g(raw),
            dims=("window", "axis", "sample"),
            coords=coords,
            name="acc",
            attrs={"participant": str(participant), "units": "g", "sample_rate": SAMPLE_RATE},
        )

    def days_of(self, participant: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Per-window arrays ``names`` of ``participant`` over its recorded days, each
        (days, 8640): whole days from the first recorded one to the last. ``valid``, when asked
        for, is checked against the day summary."""
        info = self.participant(participant)
        row, first_day, last_day = int(info["row"]), int(info["first_window"]) // WINDOWS_PER_DAY, int(info["n_days"])
        where = f"{self.path}: participant {participant!r}"
        span = slice(first_day * WINDOWS_PER_DAY, last_day * WINDOWS_PER_DAY)
        values = {
            name: self._checked_valid(row, first_day, last_day, where) if name == "valid" else self.window_values(row, name, span, where)
            for name in names
        }
        return {name: array.reshape(-1, WINDOWS_PER_DAY) for name, array in values.items()}

    def window_values(self, row: int, name: str, windows: slice | np.ndarray, where: str | None = None) -> np.ndarray:
        """Per-window array ``name`` (``valid``, ``std``, ``enmo``, ``label``) or ``acc`` (int16
        milli-g) of store row ``row`` at ``windows`` (a slice, or ascending window indices).

        A chunk that fails its checksum is a StoreDamageError naming ``where`` (default: the
        store and row) and the array.
        """
        return read_checked(self.arrays[name], (row, windows), where or f"{self.path}: row {row}")

    def day_summary(self, name: str, rows: int | slice | np.ndarray = slice(None), where: str | None = None) -> np.ndarray:
        """Day-summary array ``name`` (``day_valid_windows``, ``day_std_sum``) of store ``rows``
        over the store's days; a lost chunk is a StoreDamageError naming ``where``."""
        return read_day_summary(self.arrays, name, rows, self.shape, where or self.path)

    def _checked_valid(self, row: int, first_day: int, last_day: int, where: str) -> np.ndarray:
        """``valid`` of days [first_day, last_day) of a row, checked against the day summary."""
        valid = self.window_values(row, "valid", slice(first_day * WINDOWS_PER_DAY, last_day * WINDOWS_PER_DAY), where)
        check_days(where, valid, self.day_summary("day_valid_windows", row, where)[first_day:last_day], first_day)
        return valid

    @property
    def dataset(self) -> xr.Dataset:
        """The complete participants as a lazy xarray.Dataset, indexed by participant id
        (xarray's lazy indexing, no Dask); see :func:`accelstore.store.lazy_dataset.participants_dataset`."""
        return self.to_dataset()

    def to_dataset(self, dask: bool = False) -> xr.Dataset:
        """:attr:`dataset`; ``dask=True`` gives Dask arrays with one chunk per participant-day."""
        return participants_dataset(self.arrays, self.shape, self.participants, {"accelstore": self.group.attrs["accelstore"]}, dask)

    # ---------------------------------------------------------------- summary

    def info(self) -> dict[str, Any]:
        """Counts for ``accelstore info``: participants, person-days, valid hours, bytes, failures."""
        table = self.participants
        rows = table["row"].to_numpy()
        valid_windows = int(table["valid_windows"].sum())
        recorded = int((table["n_windows"] - table["first_window"]).sum())
        return {
            "path": self.path,
            "participants": len(table),
            "rows": self.shape[0],
            "person_days": recorded / WINDOWS_PER_DAY,
            "valid_hours": valid_windows * WINDOW_SECONDS / 3600,
            "days_capacity": self.shape[1] // WINDOWS_PER_DAY,
            "bytes_stored": int(table["stored_bytes"].sum()) + self.table_bytes(),
            "failures": len(self.failures),
            "devices": table["device"].value_counts().to_dict() if len(rows) else {},
        }

    def table_bytes(self) -> int:
        """Bytes of everything but the participants' shards: the participant table, day
        summaries, failure log, validation set, and every array's metadata. With the
        ``stored_bytes`` of the complete rows, the size of the store without listing its
        per-participant objects (a million at UK Biobank size); what it leaves out is the shards
        of rows that are not complete."""
        per_participant = {"acc", *(spec.name for spec in window_arrays_of(self.arrays))}
        total = 0
        for path, node in self.group.members(max_depth=None):  # lists groups, never inside an array
            if not isinstance(node, zarr.Array):
                continue
            if path in per_participant:  # zarr's stores are asynchronous: sync() runs on zarr's own event loop
                total += sync(node.store.getsize(f"{node.path}/zarr.json"))
            else:
                total += node.nbytes_stored()
        return total


def open_store(path_or_url: str, storage_options: dict | None = None) -> Store:
    """Open a store for reading: a local path or an fsspec URL (``s3://…``, ``memory://…``)."""
    return Store(str(path_or_url), storage_options)
