"""The Zarr layout: create, grow, write one participant, open, query — and the checks that keep it whole.

Time is implicit: window ``w`` of participant ``p`` starts at ``day0[p] + w × 10 s``. Every chunk
and shard of the per-window arrays belongs to one participant, so a worker that writes a
participant's whole row never shares a shard with another writer. Only the holder of the writer
lease (:mod:`accelstore.store.lease`), through :class:`MetadataWriter`, touches the participant table,
the day summary, the attributes and array shapes.

Crash safety. Each object write is atomic (a temporary file renamed into place; a PUT on object
stores), so what needs care is a change that spans several objects:

- **Shapes.** The store's extent is the *committed shape* in the root attributes. Growing resizes
  every array, writes the new table rows and day-summary cells, and only then commits the new
  shape in one write. Readers use the committed shape, so a half-done growth is invisible to
  them; the next writer completes it (:meth:`MetadataWriter.repair`).
- **Creation.** A store is usable once its shape is committed; a creation killed before that is
  redone by the next ``ingest``.
- **Rows.** A participant's row is marked complete last, after its data and table fields.

Damage. Every chunk carries a CRC32C checksum, and every table and day-summary array has a fill
value that no row ever holds, because the writer writes each row's empty values explicitly; so a
flipped byte fails its checksum and a lost chunk reads as the fill value, and either raises
:class:`~accelstore.errors.StoreDamageError` instead of returning numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from accelstore.errors import InputError, StoreDamageError, StoreError
from accelstore.grid import (
    ACC_FILL,
    AXES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    WINDOWS_PER_DAY,
)
from accelstore.store.lease import WriterLease, command_line

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
WINDOWS_PER_CHUNK = 360  # one hour
TABLE_CHUNK = 4096
DAY_SUMMARY_CHUNK = (1024, 32)
DEFAULT_MAX_DAYS = 14

MAX_WINDOW_INDEX = 2**31 - 1  # windows are int32 in the table


class Status:
    """Participant row states; only COMPLETE rows are visible to readers."""

    EMPTY, WRITING, COMPLETE, FAILED, DAMAGED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Column:
    """A participant-table column: dtype, the value of a row nothing is known about, meaning.

    The array's fill value is ``absent``, which no row ever holds (rows are written with ``empty``):
    reading it means the chunk was lost.
    """

    dtype: Any
    empty: Any
    meaning: str

    @property
    def absent(self) -> Any:
        return _absent_value(self.dtype)


ABSENT_TEXT = "/absent/"
"""The fill of text columns: no id, file name, device or hash holds it (no source is a folder)."""


def _absent_value(dtype: Any) -> Any:
    if dtype is str:
        return ABSENT_TEXT
    kind = np.dtype(dtype).kind
    return -np.inf if kind == "f" else -1


TABLE_COLUMNS: dict[str, Column] = {
    "id": Column(str, "", "participant id ('' = unused row)"),
    "status": Column("int8", Status.EMPTY, "0 empty, 1 being written, 2 complete, 3 failed, 4 damaged (found by verify)"),
    "day0": Column("int64", 0, "local midnight of the first recorded day, seconds since 1970 (device clock, naive)"),
    "first_window": Column("int32", 0, "first window holding data"),
    "n_windows": Column("int32", 0, "windows from day0 to the end of the recording"),
    "device": Column(str, "", "device make"),
    "device_id": Column(str, "", "device serial"),
    "source": Column(str, "", "source file (absolute path)"),
    "source_size": Column("int64", 0, "source file size, bytes"),
    "source_hash": Column(str, "", "SHA-256 of the source file, first 128 bits"),
    "utc_offset": Column(str, "", "UTC offset the source's times carried (CSV), e.g. '+01:00'; '' if none"),
    "device_rate": Column("float32", np.nan, "device sample rate, Hz"),
    "calibrated": Column("int8", 0, "1 if gravity calibration succeeded"),
    "calib_error_mg": Column("float32", np.nan, "calibration error after calibration, milli-g"),
    "read_errors": Column("int32", 0, "unreadable blocks or seconds reported by the reader"),
    "non_finite_samples": Column("int32", 0, "samples dropped as absent because they were not finite"),
    "out_of_range_samples": Column("int32", 0, "samples beyond ±32.767 g; their windows are invalid"),
    "wear_days": Column("float32", np.nan, "wear time, days"),
    "valid_windows": Column("int32", 0, "windows fully recorded and worn"),
}

DAY_ARRAYS: dict[str, Column] = {
    "day_valid_windows": Column("int32", 0, "valid windows per day"),
    "day_std_sum": Column("float32", 0.0, "summed std of valid windows per day, g"),
}


@dataclass(frozen=True)
class WindowArray:
    """A per-window array: name, dtype, fill value, meaning."""

    name: str
    dtype: str
    fill: Any
    meaning: str


WINDOW_ARRAYS = (
    WindowArray("valid", "bool", False, "window fully recorded and worn"),
    WindowArray("std", "float32", np.nan, "mean over axes of per-axis standard deviation, g"),
    WindowArray("enmo", "float32", np.nan, "mean of max(|a| - 1 g, 0), g"),
)
LABEL_ARRAY = WindowArray("label", "int16", -1, "class code of the annotation covering >= 50 % of the window (attrs 'classes'); -1 none")


def window_arrays_of(group: zarr.Group) -> tuple[WindowArray, ...]:
    """The per-window arrays this store has: ``label`` only in labelled stores."""
    return WINDOW_ARRAYS + ((LABEL_ARRAY,) if LABEL_ARRAY.name in group else ())


def acc_compressors() -> tuple[BloscCodec, Crc32cCodec]:
    """Blosc zstd-3 with bit-shuffle (the measured choice: bench/store.py), then a CRC32C checksum."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle", typesize=2), Crc32cCodec()


def checked_compressors() -> tuple[ZstdCodec, Crc32cCodec]:
    """Every other array: Zarr's default compression (zstd), then a CRC32C checksum."""
    return ZstdCodec(level=0), Crc32cCodec()


def committed_shape(group: zarr.Group) -> tuple[int, int] | None:
    """(participants, windows) of the store, or None while its creation is unfinished."""
    shape = group.attrs.get("accelstore", {}).get("shape")
    return (int(shape[0]), int(shape[1])) if shape is not None else None


def open_arrays(group: zarr.Group, where: str) -> dict[str, zarr.Array]:
    """The store's arrays by name, each opened once; one that is missing or whose metadata does
    not parse is a StoreDamageError naming it."""
    names = ["acc", *(spec.name for spec in window_arrays_of(group)), *TABLE_COLUMNS, *DAY_ARRAYS]
    arrays = {}
    for name in names:
        try:
            arrays[name] = group[name]
        except KeyError:
            raise StoreDamageError(f"{where}: the array '{name}' is missing") from None
        except (ValueError, TypeError) as error:
            raise StoreDamageError(f"{where}: the metadata of array '{name}' is unreadable ({' '.join(str(error).split())})") from None
    return arrays


# ---------------------------------------------------------------- creating and opening


def create_store(path: str, max_days: int = DEFAULT_MAX_DAYS, participants: int = 0) -> zarr.Group:
    """Create an empty store sized for ``participants`` rows and ``max_days`` days per row.

    Also finishes a creation that was killed: the store is usable only once this returns.
    """
    attributes = {
        "accelstore": {
            "format": FORMAT_VERSION,
            "sample_rate": SAMPLE_RATE,
            "window_seconds": WINDOW_SECONDS,
            "window_samples": WINDOW_SAMPLES,
            "windows_per_day": WINDOWS_PER_DAY,
            "axes": list(AXES),
        },
        "failures": {},
    }
    group = zarr.open_group(path, mode="a", zarr_format=3, attributes=attributes)  # attributes: only if new
    if committed_shape(group) is not None:
        raise StoreError(f"{path}: a store already exists here")
    if group.attrs.asdict() != attributes:
        group.attrs.put(attributes)
    n_windows = max_days * WINDOWS_PER_DAY
    group.create_array(
        "acc",
        shape=(participants, n_windows, 3, WINDOW_SAMPLES),
        chunks=(1, WINDOWS_PER_CHUNK, 3, WINDOW_SAMPLES),
        shards=(1, WINDOWS_PER_DAY, 3, WINDOW_SAMPLES),
        dtype="int16",
        fill_value=ACC_FILL,
        compressors=acc_compressors(),
        dimension_names=("participant", "window", "axis", "sample"),
        attributes={"units": "milli-g", "meaning": "acceleration, axis order x,y,z; fill = absent"},
        overwrite=True,
    )
    for spec in WINDOW_ARRAYS:
        _create_window_array(group, spec, participants, n_windows)
    for name, column in TABLE_COLUMNS.items():
        group.create_array(
            name,
            shape=(participants,),
            chunks=(TABLE_CHUNK,),
            dtype=column.dtype,
            fill_value=column.absent,
            compressors=checked_compressors(),
            dimension_names=("participant",),
            attributes={"meaning": column.meaning},
            overwrite=True,
        )
    for name, column in DAY_ARRAYS.items():
        group.create_array(
            name,
            shape=(participants, max_days),
            chunks=DAY_SUMMARY_CHUNK,
            dtype=column.dtype,
            fill_value=column.absent,
            compressors=checked_compressors(),
            dimension_names=("participant", "day"),
            attributes={"meaning": column.meaning},
            overwrite=True,
        )
    _initialise(group, (0, 0), (participants, n_windows))
    _commit_shape(group, participants, n_windows)
    return group


def _create_window_array(group: zarr.Group, spec: WindowArray, participants: int, n_windows: int) -> zarr.Array:
    """A (participant, window) array whose shards each hold one participant's whole row."""
    return group.create_array(
        spec.name,
        shape=(participants, n_windows),
        chunks=(1, WINDOWS_PER_DAY),
        shards=(1, n_windows),
        dtype=spec.dtype,
        fill_value=spec.fill,
        compressors=checked_compressors(),
        dimension_names=("participant", "window"),
        attributes={"meaning": spec.meaning},
        overwrite=True,
    )


def _initialise(arrays: Mapping[str, zarr.Array], old: tuple[int, int], new: tuple[int, int]) -> None:
    """Write the empty values of the table rows and day-summary cells that growing adds.

    ``arrays``: the store's arrays by name (its group, or the writer's open arrays).
    """
    (p0, w0), (p1, w1) = old, new
    if p1 > p0:
        for name, column in TABLE_COLUMNS.items():
            arrays[name][p0:p1] = np.full(p1 - p0, column.empty, dtype=object if column.dtype is str else column.dtype)
    d0, d1 = w0 // WINDOWS_PER_DAY, w1 // WINDOWS_PER_DAY
    for name, column in DAY_ARRAYS.items():
        if p1 > p0 and d1:
            arrays[name][p0:p1, :d1] = column.empty
        if d1 > d0 and p0:
            arrays[name][:p0, d0:d1] = column.empty


def _commit_shape(group: zarr.Group, participants: int, windows: int) -> None:
    meta = dict(group.attrs["accelstore"])
    meta["shape"] = [participants, windows]
    group.attrs["accelstore"] = meta


def open_group(path: str, mode: str = "r", storage_options: dict | None = None) -> zarr.Group:
    """Open a store's root group, checking that it is a whole accelstore store; StoreError if not."""
    if "://" not in path and os.path.isfile(path):
        raise StoreError(f"{path}: is a file, not a store (a store is a folder)")
    try:
        group = zarr.open_group(path, mode=mode, storage_options=storage_options, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise StoreError(f"{path}: no accelstore store here") from None
    except (ValueError, KeyError) as error:
        raise StoreDamageError(f"{path}: the store's root metadata is unreadable ({error})") from None
    meta = group.attrs.get("accelstore")
    if not isinstance(meta, dict):
        raise StoreError(f"{path}: a Zarr group, but not an accelstore store")
    if meta.get("format") != FORMAT_VERSION:
        raise StoreError(f"{path}: accelstore store format {meta.get('format')}, this version reads format {FORMAT_VERSION}: re-ingest")
    if committed_shape(group) is None:
        raise StoreError(f"{path}: the store's creation did not finish; run ingest again to finish it")
    return group


# ---------------------------------------------------------------- driver-side (metadata) writes


class MetadataWriter:
    """The one writer of shapes, the participant table, day summaries and attributes.

    Opening repairs what a killed writer left half-done. With a ``lease``, every write first checks
    that the lease is still this writer's, so a writer whose lease was broken stops at once.
    """

    def __init__(self, group: zarr.Group, lease: WriterLease | None = None):
        self.group = group
        self.lease = lease
        self.arrays = open_arrays(group, str(group.store))  # opened once: each open is a read
        self.repair()

    @property
    def n_participants(self) -> int:
        return committed_shape(self.group)[0]

    @property
    def n_windows(self) -> int:
        return committed_shape(self.group)[1]

    def check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def repair(self) -> None:
        """Finish a growth that was killed between its first resize and its commit."""
        participants, windows = committed_shape(self.group)
        for array in self._shaped_arrays():
            participants = max(participants, array.shape[0])
            if "window" in array.metadata.dimension_names:
                windows = max(windows, array.shape[1])
            elif "day" in array.metadata.dimension_names:
                windows = max(windows, array.shape[1] * WINDOWS_PER_DAY)
        if (participants, windows) != committed_shape(self.group):  # arrays only ever grow before the commit
            log.warning("%s: finishing a growth to %d rows × %d windows that was interrupted", self.group.store, participants, windows)
            self._grow(participants, windows)

    def table(self) -> pd.DataFrame:
        """Every row, whatever its status, indexed by row number (damage checked)."""
        return read_table(self.arrays, self.n_participants, str(self.group.store))

    def allocate_rows(self, ids: list[str]) -> np.ndarray:
        """Give each new id a row: unused reserved rows first, then new ones. Status stays EMPTY."""
        ids_now = read_column(self.arrays, "id", self.n_participants, str(self.group.store))
        unused = np.flatnonzero(ids_now == "")[: len(ids)]
        extra = len(ids) - len(unused)
        start = self.n_participants
        if extra:
            self._grow(start + extra, self.n_windows)
        rows = np.concatenate([unused, np.arange(start, start + extra)]).astype(np.int64)
        if len(rows):
            self.set_rows(rows, id=ids)
        return rows

    def set_rows(self, rows: np.ndarray, **columns: Any) -> None:
        """Write table columns for ``rows`` (one value for all, or one per row)."""
        self.check_lease()
        for name, values in columns.items():
            array = self.arrays[name]
            values = np.broadcast_to(np.asarray(values, dtype=object if array.dtype.kind in "OTU" else array.dtype), rows.shape)
            order = np.argsort(rows)
            rows, values = rows[order], values[order]
            for lo, hi in _runs(rows):
                array[lo:hi] = values[(rows >= lo) & (rows < hi)]

    def write_day_summary(self, row: int, valid_windows: np.ndarray, std_sum: np.ndarray) -> None:
        days = self.n_windows // WINDOWS_PER_DAY
        if len(valid_windows) != days or len(std_sum) != days:
            raise ValueError(f"day summary of row {row} has {len(valid_windows)} days, the store {days}")
        self.check_lease()
        self.arrays["day_valid_windows"][row, :] = valid_windows
        self.arrays["day_std_sum"][row, :] = std_sum

    def ensure_windows(self, n_windows: int) -> None:
        """Grow the window axis (in whole days) so that ``n_windows`` fit."""
        if n_windows > self.n_windows:
            days = -(-n_windows // WINDOWS_PER_DAY)
            self._grow(self.n_participants, days * WINDOWS_PER_DAY)

    def _shaped_arrays(self) -> Iterator[zarr.Array]:
        yield self.arrays["acc"]
        for spec in window_arrays_of(self.group):
            yield self.arrays[spec.name]
        for name in (*TABLE_COLUMNS, *DAY_ARRAYS):
            yield self.arrays[name]

    @staticmethod
    def _target_shape(array: zarr.Array, participants: int, windows: int) -> tuple[int, ...]:
        dims = array.metadata.dimension_names
        if "window" in dims:
            return (participants, windows, *array.shape[2:])
        if "day" in dims:
            return (participants, windows // WINDOWS_PER_DAY)
        return (participants,)

    def _grow(self, participants: int, windows: int) -> None:
        """Resize every array, write the new rows' and days' empty values, then commit the shape."""
        self.check_lease()
        old = committed_shape(self.group)
        for array in self._shaped_arrays():
            target = self._target_shape(array, participants, windows)
            if array.shape != target:
                array.resize(target)
        _initialise(self.arrays, old, (participants, windows))
        _commit_shape(self.group, participants, windows)

    def add_classes(self, classes: list[str]) -> list[str]:
        """Make the store labelled (a ``label`` array) and extend its class list; returns the list.

        Existing classes keep their codes; new ones are appended in the given order.
        """
        self.check_lease()
        if LABEL_ARRAY.name not in self.group:
            self.arrays[LABEL_ARRAY.name] = _create_window_array(self.group, LABEL_ARRAY, self.n_participants, self.n_windows)
        known = list(self.group.attrs.get("classes", []))
        known += [name for name in classes if name not in known]
        self.group.attrs["classes"] = known
        return known

    def failures(self) -> dict[str, dict[str, str]]:
        return dict(self.group.attrs.get("failures", {}))

    def set_failures(self, failures: dict[str, dict[str, str]]) -> None:
        self.set_attrs(failures=failures)

    def set_attrs(self, **attrs: Any) -> None:
        self.check_lease()
        self.group.attrs.update(attrs)


@contextmanager
def store_writer(
    path: str,
    command: str,
    *,
    break_lease: bool = False,
    create: dict[str, int] | None = None,
    storage_options: dict | None = None,
) -> Iterator[MetadataWriter]:
    """Take the writer lease of ``path`` and open it for writing; release the lease at the end.

    ``create`` (``max_days``, ``participants``): make the store if there is none, or finish a
    creation that was killed. Without it a missing store is a :class:`StoreError`.
    """
    if "://" not in path and os.path.isfile(path):
        raise StoreError(f"{path}: is a file, not a store (a store is a folder)")
    if create is None:
        open_group(path, "r", storage_options)  # refuse a non-store before leaving a lease in it
    holder = f"{command}: {command_line()}"
    with WriterLease.acquire(path, holder, break_lease=break_lease, storage_options=storage_options) as lease:
        try:
            group = open_group(path, "r+", storage_options)
        except StoreError:
            if create is None or _holds_another_format(path, storage_options):
                raise
            group = create_store(path, **create)
        yield MetadataWriter(group, lease)


def _holds_another_format(path: str, storage_options: dict | None) -> bool:
    """Whether ``path`` already holds Zarr data that is not an unfinished accelstore store."""
    try:
        group = zarr.open_group(path, mode="r", storage_options=storage_options, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    meta = group.attrs.get("accelstore")
    if meta is None:
        return bool(list(group.keys())) or bool(group.attrs.asdict())
    return meta.get("format") != FORMAT_VERSION or committed_shape(group) is not None


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) runs of sorted, distinct row numbers, so each run is one slice write."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, breaks)]


def recorded_days(first_window: int, n_windows: int) -> range:
    """Days holding windows of a recording that spans windows [first_window, n_windows)."""
    return range(first_window // WINDOWS_PER_DAY, (n_windows - 1) // WINDOWS_PER_DAY + 1)


def day_span(day: int) -> slice:
    return slice(day * WINDOWS_PER_DAY, (day + 1) * WINDOWS_PER_DAY)


def summarise_days(valid: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid windows (int32) and summed std of the valid windows (float32) of each whole day.

    The std sum runs over each day's valid windows in order, as ingest sums them, so that the
    float32 totals come out bit for bit the same.
    """
    days = valid.size // WINDOWS_PER_DAY
    day_valid = np.zeros(days, dtype=np.int32)
    day_std = np.zeros(days, dtype=np.float32)
    for day in range(days):
        span = day_span(day)
        day_valid[day] = valid[span].sum()
        day_std[day] = std[span][valid[span]].sum()
    return day_valid, day_std


# ---------------------------------------------------------------- worker-side (one participant) writes


class ParticipantWriter:
    """Writes one participant's shards: whole days of ``acc`` and whole rows of per-window arrays."""

    def __init__(self, path: str, row: int):
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        self.row = row
        self.acc = group["acc"]
        self.window_arrays = {spec.name: group[spec.name] for spec in window_arrays_of(group)}
        self.n_windows = committed_shape(group)[1]

    def write_day(self, day: int, acc: np.ndarray) -> None:
        """Write (or, when every window is absent, delete) the shard of day ``day``."""
        self.acc[self.row, day_span(day)] = acc

    def clear_day(self, day: int) -> None:
        self.acc[self.row, day_span(day)] = ACC_FILL

    def write_windows(self, **rows: np.ndarray) -> None:
        for name, values in rows.items():
            self.window_arrays[name][self.row, : self.n_windows] = values


# ---------------------------------------------------------------- reading, with the damage checks


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


class _ZarrBackendArray(BackendArray):
    """Lazy, outer-indexed access to one Zarr array, optionally decoded (int16 milli-g → float32 g)."""

    def __init__(self, array: zarr.Array, shape: tuple[int, ...], decode_acc: bool = False):
        self.array = array
        self.decode_acc = decode_acc
        self.shape = shape
        self.dtype = np.dtype("float32") if decode_acc else array.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._getitem)

    def _getitem(self, key: tuple) -> np.ndarray:
        try:
            raw = self.array.oindex[key]
        except (ValueError, RuntimeError) as error:
            raise StoreDamageError(f"a chunk of '{self.array.name.lstrip('/')}' is damaged ({error})") from None
        return acc_to_g(raw) if self.decode_acc else raw


def acc_to_g(raw: np.ndarray) -> np.ndarray:
    """int16 milli-g → float32 g, NaN where absent."""
    out = np.multiply(raw, np.float32(0.001), dtype=np.float32)
    out[raw == ACC_FILL] = np.nan
    return out


class Store:
    """A read-only view of an accelstore store.

    ``participants`` lists the complete participants; ``windows`` reads one participant's windows
    straight from Zarr; ``dataset`` is the whole store as a lazy ``xarray.Dataset`` (no Dask).
    Data that fails a check raises :class:`~accelstore.errors.StoreDamageError`.
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path = str(path)
        self.storage_options = storage_options
        self.group = open_group(self.path, "r", storage_options)
        self.shape = committed_shape(self.group)
        self.arrays = open_arrays(self.group, self.path)
        self._table: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"<accelstore.Store {self.path!r}: {len(self.participants)} participants>"

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

    @property
    def classes(self) -> list[str]:
        """Class names of a labelled store (``label`` codes index this list); empty otherwise."""
        return list(self.group.attrs.get("classes", []))

    @property
    def failures(self) -> pd.DataFrame:
        """Files that could not be ingested, with the reason."""
        failures = self.group.attrs.get("failures", {})
        return pd.DataFrame.from_dict(failures, orient="index", columns=["id", "error", "message"]).rename_axis("source")

    def participant(self, participant: str) -> pd.Series:
        """The table row of one complete participant; KeyError naming the store otherwise."""
        try:
            return self.participants.loc[str(participant)]
        except KeyError:
            raise KeyError(f"participant {participant!r} is not in {self.path} (or not completely ingested)") from None

    def windows(self, participant: str, start: Any = None, end: Any = None) -> xr.DataArray:
        """Windows of ``participant`` overlapping [start, end) as float32 g (NaN where absent).

        Dims ``window`` (index from day 0), ``axis`` (x, y, z), ``sample`` (300 at 30 Hz); coordinates
        ``time`` (start of each window, device clock) and ``valid``. ``start``/``end`` default to the
        recording's first and last window; ``start`` must come before ``end``
        (:class:`~accelstore.errors.InputError` otherwise).
        """
        info = self.participant(participant)
        row = int(info["row"])
        day0 = np.datetime64(info["day0"], "ns")
        w0, w1 = self._window_range(info, day0, start, end)
        where = f"{self.path}: participant {participant!r}"
        first_day, last_day = w0 // WINDOWS_PER_DAY, -(-w1 // WINDOWS_PER_DAY)
        days = slice(first_day * WINDOWS_PER_DAY, last_day * WINDOWS_PER_DAY)
        raw = read_checked(self.arrays["acc"], (row, slice(w0, w1)), where)
        valid_days = read_checked(self.arrays["valid"], (row, days), where)
        day_valid = read_day_summary(self.arrays, "day_valid_windows", row, self.shape, where)[first_day:last_day]
        check_days(where, valid_days, day_valid, first_day)
        valid = valid_days[w0 - days.start : w1 - days.start]
        check_present(where, valid, raw, w0)
        index = np.arange(w0, w1)
        coords = {
            "window": index,
            "time": ("window", day0 + index * np.timedelta64(WINDOW_SECONDS, "s")),
            "axis": list(AXES),
            "valid": ("window", valid),
        }
        if self.classes:
            coords["label"] = ("window", read_checked(self.arrays[LABEL_ARRAY.name], (row, slice(w0, w1)), where))
        return xr.DataArray(
            acc_to_g(raw),
            dims=("window", "axis", "sample"),
            coords=coords,
            name="acc",
            attrs={"participant": str(participant), "units": "g", "sample_rate": SAMPLE_RATE},
        )

    def _window_range(self, info: pd.Series, day0: np.datetime64, start: Any, end: Any) -> tuple[int, int]:
        """[w0, w1) of the recording's windows overlapping [start, end), clipped to the recording."""
        first, last = int(info["first_window"]), int(info["n_windows"])
        w0 = first if start is None else _window_index_at(day0, start, np.floor, "start")
        w1 = last if end is None else _window_index_at(day0, end, np.ceil, "end")
        if start is not None and end is not None and pd.Timestamp(start) >= pd.Timestamp(end):
            raise InputError(f"--start {start} is not before --end {end}")
        w0, w1 = min(max(w0, first), last), max(min(w1, last), first)
        return w0, max(w0, w1)

    @property
    def dataset(self) -> xr.Dataset:
        """The whole store as a lazy xarray.Dataset (xarray's lazy indexing, no Dask)."""
        return self.to_dataset()

    def to_dataset(self, dask: bool = False) -> xr.Dataset:
        """The whole store; ``dask=True`` gives Dask arrays with one chunk per participant-day."""
        variables = {}
        participants, windows = self.shape
        for name, array in self.arrays.items():
            dims = tuple(array.metadata.dimension_names)
            sizes = {"participant": participants, "window": windows, "day": windows // WINDOWS_PER_DAY}
            shape = tuple(sizes.get(dim, length) for dim, length in zip(dims, array.shape))
            data = indexing.LazilyIndexedArray(_ZarrBackendArray(array, shape, decode_acc=(name == "acc")))
            variables[name] = xr.Variable(dims, data, attrs=dict(array.attrs))
        coords = {name: variables.pop(name) for name in list(TABLE_COLUMNS) if name in variables}
        ds = xr.Dataset(variables, coords=coords, attrs={"accelstore": self.group.attrs["accelstore"]})
        ds["acc"].attrs["units"] = "g"
        if dask:
            ds = ds.chunk({"participant": 1, "window": WINDOWS_PER_DAY})
        return ds

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
            "bytes_on_disk": self.bytes_on_disk(),
            "failures": len(self.group.attrs.get("failures", {})),
            "devices": table["device"].value_counts().to_dict() if len(rows) else {},
        }

    def bytes_on_disk(self) -> int:
        fs, root = fsspec.core.url_to_fs(self.path, **(self.storage_options or {}))
        return int(fs.du(root, total=True))


def _window_index_at(day0: np.datetime64, when: Any, rounding, name: str) -> int:
    """The window a time falls in (rounded down or up); InputError for unreadable or far-off times."""
    try:
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError, OverflowError) as error:
        raise InputError(f"--{name} {when!r} is not a time ({error})") from None
    if stamp is pd.NaT:
        raise InputError(f"--{name} {when!r} is not a time")
    if stamp.tzinfo is not None:
        raise InputError(f"--{name} {when!r} has a time zone; store times are the device's naive local clock")
    seconds = (stamp.to_datetime64().astype("datetime64[s]").astype(np.int64) - day0.astype("datetime64[s]").astype(np.int64))
    window = rounding(seconds / WINDOW_SECONDS)
    if not -MAX_WINDOW_INDEX <= window <= MAX_WINDOW_INDEX:
        raise InputError(f"--{name} {when!r} is too far from the recording (day 0 is {day0.astype('datetime64[D]')})")
    return int(window)


def open_store(path_or_url: str, storage_options: dict | None = None) -> Store:
    """Open a store for reading: a local path or an fsspec URL (``s3://…``, ``memory://…``)."""
    return Store(str(path_or_url), storage_options)
