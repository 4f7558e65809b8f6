"""The Zarr layout (DESIGN §3): create, reserve, write one participant, open, query.

Time is implicit: window ``w`` of participant ``p`` starts at ``day0[p] + w × 10 s``. Every chunk
and shard of the per-window arrays belongs to one participant, so a worker that writes a
participant's whole row never shares a shard with another writer. Only the ingest driver touches
the participant table, the day summary, the attributes and array shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.codecs import BloscCodec

from accelstore.kernels.resample import ACC_FILL, SAMPLE_RATE, WINDOW_SAMPLES, WINDOW_SECONDS, WINDOWS_PER_DAY

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WINDOWS_PER_CHUNK = 360  # one hour
TABLE_CHUNK = 4096
DAY_SUMMARY_CHUNK = (1024, 32)
DEFAULT_MAX_DAYS = 14
AXES = ("x", "y", "z")


class Status:
    """Participant row states; only COMPLETE rows are visible to readers."""

    EMPTY, WRITING, COMPLETE, FAILED = 0, 1, 2, 3


# name: (dtype, fill value, meaning)
TABLE_COLUMNS: dict[str, tuple[Any, Any, str]] = {
    "id": (str, "", "participant id"),
    "status": ("int8", Status.EMPTY, "0 empty, 1 being written, 2 complete, 3 failed"),
    "day0": ("int64", 0, "local midnight of the first recorded day, seconds since 1970 (device clock, naive)"),
    "first_window": ("int32", 0, "first window holding data"),
    "n_windows": ("int32", 0, "windows from day0 to the end of the recording"),
    "device": (str, "", "device make"),
    "device_id": (str, "", "device serial"),
    "source": (str, "", "source file (absolute path)"),
    "source_size": ("int64", 0, "source file size, bytes"),
    "source_hash": (str, "", "SHA-256 of the source file, first 128 bits"),
    "device_rate": ("float32", np.nan, "device sample rate, Hz"),
    "calibrated": ("bool", False, "gravity calibration succeeded"),
    "calib_error_mg": ("float32", np.nan, "calibration error after calibration, milli-g"),
    "read_errors": ("int32", 0, "unreadable blocks or seconds reported by the reader"),
    "wear_days": ("float32", np.nan, "wear time, days"),
    "valid_windows": ("int32", 0, "windows fully recorded and worn"),
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


def acc_compressor() -> BloscCodec:
    """Blosc zstd-3 with bit-shuffle: the measured choice (bench/store.py prints the alternatives)."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle", typesize=2)


def create_store(path: str, max_days: int = DEFAULT_MAX_DAYS, participants: int = 0) -> zarr.Group:
    """Create an empty store sized for ``participants`` rows and ``max_days`` days per row."""
    n_windows = max_days * WINDOWS_PER_DAY
    group = zarr.open_group(path, mode="w-", zarr_format=3)
    group.attrs.update(
        {
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
    )
    group.create_array(
        "acc",
        shape=(participants, n_windows, 3, WINDOW_SAMPLES),
        chunks=(1, WINDOWS_PER_CHUNK, 3, WINDOW_SAMPLES),
        shards=(1, WINDOWS_PER_DAY, 3, WINDOW_SAMPLES),
        dtype="int16",
        fill_value=ACC_FILL,
        compressors=acc_compressor(),
        dimension_names=("participant", "window", "axis", "sample"),
        attributes={"units": "milli-g", "meaning": "acceleration, axis order x,y,z; fill = absent"},
    )
    for spec in WINDOW_ARRAYS:
        _create_window_array(group, spec, participants, n_windows)
    for name, (dtype, fill, meaning) in TABLE_COLUMNS.items():
        group.create_array(
            name,
            shape=(participants,),
            chunks=(TABLE_CHUNK,),
            dtype=dtype,
            fill_value=fill,
            dimension_names=("participant",),
            attributes={"meaning": meaning},
        )
    for name, dtype, fill, meaning in (
        ("day_valid_windows", "int32", 0, "valid windows per day"),
        ("day_std_sum", "float32", 0.0, "summed std of valid windows per day, g"),
    ):
        group.create_array(
            name,
            shape=(participants, max_days),
            chunks=DAY_SUMMARY_CHUNK,
            dtype=dtype,
            fill_value=fill,
            dimension_names=("participant", "day"),
            attributes={"meaning": meaning},
        )
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
        dimension_names=("participant", "window"),
        attributes={"meaning": spec.meaning},
    )


def open_group(path: str, mode: str = "r", storage_options: dict | None = None) -> zarr.Group:
    """Open a store's root group and check that it is an accelstore store."""
    try:
        group = zarr.open_group(path, mode=mode, storage_options=storage_options, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
        raise FileNotFoundError(f"{path}: no accelstore store here ({error})") from None
    meta = group.attrs.get("accelstore")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an accelstore store (format {FORMAT_VERSION})")
    return group


# ---------------------------------------------------------------- driver-side (metadata) writes


class MetadataWriter:
    """The one writer of shapes, the participant table, day summaries and attributes."""

    def __init__(self, group: zarr.Group):
        self.group = group

    @property
    def n_participants(self) -> int:
        return self.group["status"].shape[0]

    @property
    def n_windows(self) -> int:
        return self.group["acc"].shape[1]

    def table(self) -> pd.DataFrame:
        """Every row, whatever its status, indexed by row number."""
        return pd.DataFrame({name: self.group[name][:] for name in TABLE_COLUMNS})

    def allocate_rows(self, ids: list[str]) -> np.ndarray:
        """Give each new id a row: unused reserved rows first, then new ones. Status stays EMPTY."""
        unused = np.flatnonzero(self.group["id"][:] == "")[: len(ids)]
        extra = len(ids) - len(unused)
        start = self.n_participants
        if extra:
            self._resize(participants=start + extra)
        rows = np.concatenate([unused, np.arange(start, start + extra)]).astype(np.int64)
        if len(rows):
            self.set_rows(rows, id=ids)
        return rows

    def set_rows(self, rows: np.ndarray, **columns: Any) -> None:
        """Write table columns for ``rows`` (one value for all, or one per row)."""
        for name, values in columns.items():
            array = self.group[name]
            values = np.broadcast_to(np.asarray(values, dtype=object if array.dtype.kind in "OTU" else array.dtype), rows.shape)
            order = np.argsort(rows)
            rows, values = rows[order], values[order]
            for lo, hi in _runs(rows):
                array[lo:hi] = values[(rows >= lo) & (rows < hi)]

    def write_day_summary(self, row: int, valid_windows: np.ndarray, std_sum: np.ndarray) -> None:
        days = len(valid_windows)
        self.group["day_valid_windows"][row, :days] = valid_windows
        self.group["day_std_sum"][row, :days] = std_sum

    def ensure_windows(self, n_windows: int) -> None:
        """Grow the window axis (in whole days) so that ``n_windows`` fit."""
        if n_windows > self.n_windows:
            days = -(-n_windows // WINDOWS_PER_DAY)
            self._resize(windows=days * WINDOWS_PER_DAY)

    def _resize(self, participants: int | None = None, windows: int | None = None) -> None:
        p = self.n_participants if participants is None else participants
        w = self.n_windows if windows is None else windows
        self.group["acc"].resize((p, w, 3, WINDOW_SAMPLES))
        for spec in window_arrays_of(self.group):
            self.group[spec.name].resize((p, w))
        for name in TABLE_COLUMNS:
            self.group[name].resize((p,))
        for name in ("day_valid_windows", "day_std_sum"):
            self.group[name].resize((p, w // WINDOWS_PER_DAY))

    def add_classes(self, classes: list[str]) -> list[str]:
        """Make the store labelled (a ``label`` array) and extend its class list; returns the list.

        Existing classes keep their codes; new ones are appended in the given order.
        """
        if LABEL_ARRAY.name not in self.group:
            _create_window_array(self.group, LABEL_ARRAY, self.n_participants, self.n_windows)
        known = list(self.group.attrs.get("classes", []))
        known += [name for name in classes if name not in known]
        self.group.attrs["classes"] = known
        return known

    def failures(self) -> dict[str, dict[str, str]]:
        return dict(self.group.attrs.get("failures", {}))

    def set_failures(self, failures: dict[str, dict[str, str]]) -> None:
        self.group.attrs["failures"] = failures

    def set_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(attrs)


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
        self.n_windows = self.acc.shape[1]

    def write_day(self, day: int, acc: np.ndarray) -> None:
        """Write (or, when every window is absent, delete) the shard of day ``day``."""
        self.acc[self.row, day * WINDOWS_PER_DAY : (day + 1) * WINDOWS_PER_DAY] = acc

    def clear_day(self, day: int) -> None:
        self.acc[self.row, day * WINDOWS_PER_DAY : (day + 1) * WINDOWS_PER_DAY] = ACC_FILL

    def write_windows(self, **rows: np.ndarray) -> None:
        for name, values in rows.items():
            self.window_arrays[name][self.row, :] = values


# ---------------------------------------------------------------- reading


class _ZarrBackendArray(BackendArray):
    """Lazy, outer-indexed access to one Zarr array, optionally decoded (int16 milli-g → float32 g)."""

    def __init__(self, array: zarr.Array, decode_acc: bool = False):
        self.array = array
        self.decode_acc = decode_acc
        self.shape = array.shape
        self.dtype = np.dtype("float32") if decode_acc else array.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._getitem)

    def _getitem(self, key: tuple) -> np.ndarray:
        raw = self.array.oindex[key]
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
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path = str(path)
        self.storage_options = storage_options
        self.group = open_group(self.path, "r", storage_options)
        self._table: pd.DataFrame | None = None
        self._rows: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"<accelstore.Store {self.path!r}: {len(self.participants)} participants>"

    @property
    def participants(self) -> pd.DataFrame:
        """Complete participants, indexed by id: row, start of day 0, windows, device, source …"""
        if self._table is None:
            table = pd.DataFrame({name: self.group[name][:] for name in TABLE_COLUMNS})
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
        recording's first and last window.
        """
        info = self.participant(participant)
        row = int(info["row"])
        day0 = np.datetime64(info["day0"], "ns")
        w0 = int(info["first_window"]) if start is None else _window_at(day0, start, np.floor)
        w1 = int(info["n_windows"]) if end is None else _window_at(day0, end, np.ceil)
        w0, w1 = max(w0, 0), max(min(w1, self.group["acc"].shape[1]), 0)
        w1 = max(w0, w1)
        acc = acc_to_g(self.group["acc"][row, w0:w1])
        index = np.arange(w0, w1)
        coords = {
            "window": index,
            "time": ("window", day0 + index * np.timedelta64(WINDOW_SECONDS, "s")),
            "axis": list(AXES),
            "valid": ("window", self.group["valid"][row, w0:w1]),
        }
        if self.classes:
            coords["label"] = ("window", self.group[LABEL_ARRAY.name][row, w0:w1])
        return xr.DataArray(
            acc,
            dims=("window", "axis", "sample"),
            coords=coords,
            name="acc",
            attrs={"participant": str(participant), "units": "g", "sample_rate": SAMPLE_RATE},
        )

    @property
    def dataset(self) -> xr.Dataset:
        """The whole store as a lazy xarray.Dataset (xarray's lazy indexing, no Dask)."""
        return self.to_dataset()

    def to_dataset(self, dask: bool = False) -> xr.Dataset:
        """The whole store; ``dask=True`` gives Dask arrays with one chunk per participant-day."""
        variables = {}
        for name, array in self.group.arrays():
            dims = tuple(array.metadata.dimension_names)
            data = indexing.LazilyIndexedArray(_ZarrBackendArray(array, decode_acc=(name == "acc")))
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
            "rows": int(self.group["status"].shape[0]),
            "person_days": recorded / WINDOWS_PER_DAY,
            "valid_hours": valid_windows * WINDOW_SECONDS / 3600,
            "days_capacity": self.group["acc"].shape[1] // WINDOWS_PER_DAY,
            "bytes_on_disk": self.bytes_on_disk(),
            "failures": len(self.group.attrs.get("failures", {})),
            "devices": table["device"].value_counts().to_dict() if len(rows) else {},
        }

    def bytes_on_disk(self) -> int:
        fs, root = fsspec.core.url_to_fs(self.path, **(self.storage_options or {}))
        return int(fs.du(root, total=True))


def _window_at(day0: np.datetime64, when: Any, rounding) -> int:
    stamp = pd.Timestamp(when)
    if stamp.tzinfo is not None:
        raise ValueError(f"time {when!r} has a time zone; store times are the device's naive local clock")
    seconds = (stamp.to_datetime64().astype("datetime64[ns]") - day0) / np.timedelta64(1, "s")
    return int(rounding(seconds / WINDOW_SECONDS))


def open_store(path_or_url: str, storage_options: dict | None = None) -> Store:
    """Open a store for reading: a local path or an fsspec URL (``s3://…``, ``memory://…``)."""
    return Store(str(path_or_url), storage_options)
