"""What a store holds: its format version, its arrays and their chunking, codecs and fill values.

Time is implicit: window ``w`` of participant ``p`` starts at ``day0[p] + w × 10 s``. Every chunk
and shard of the per-window arrays belongs to one participant, so a worker that writes a
participant's whole row never shares a shard with another writer (docs/architecture.md, "The
store's rules").

Every chunk carries a CRC32C checksum, and every table and day-summary array has a fill value
(:attr:`Column.absent`) that no row ever holds, because the writer writes each row's empty values
explicitly: a flipped byte fails its checksum and a lost chunk reads as the fill value
(:mod:`accelstore.store.checked_reads` turns either into a StoreDamageError).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from accelstore.grid import ACC_FILL

FORMAT_VERSION = 3
WINDOWS_PER_CHUNK = 360  # one hour
TABLE_CHUNK = 4096
DAY_SUMMARY_CHUNK = (1024, 32)
DEFAULT_MAX_DAYS = 14


class Status:
    """Participant row states; only COMPLETE rows are visible to readers."""

    EMPTY, WRITING, COMPLETE, FAILED, DAMAGED = 0, 1, 2, 3, 4


ABSENT_TEXT = "/absent/"
"""The fill of text columns: no id, file name, device or hash holds it (no source is a folder)."""


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
        if self.dtype is str:
            return ABSENT_TEXT
        return -np.inf if np.dtype(self.dtype).kind == "f" else -1


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
    "stored_bytes": Column("int64", 0, "bytes of the row's shards in the store (acc and per-window arrays), measured when they were written"),
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


def window_arrays_of(group: Container[str]) -> tuple[WindowArray, ...]:
    """The per-window arrays this store has: ``label`` only in labelled stores.

    ``group``: the store's group, or its open arrays by name.
    """
    return WINDOW_ARRAYS + ((LABEL_ARRAY,) if LABEL_ARRAY.name in group else ())


def acc_compressors() -> tuple[BloscCodec, Crc32cCodec]:
    """Blosc zstd-3 with bit-shuffle (the measured choice: bench/store.py), then a CRC32C checksum."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle", typesize=2), Crc32cCodec()


def checked_compressors() -> tuple[ZstdCodec, Crc32cCodec]:
    """Every other array: Zarr's default compression (zstd), then a CRC32C checksum."""
    return ZstdCodec(level=0), Crc32cCodec()


def acc_to_g(raw: np.ndarray) -> np.ndarray:
    """Stored ``acc`` (int16 milli-g) → float32 g, NaN where absent."""
    out = np.multiply(raw, np.float32(0.001), dtype=np.float32)
    out[raw == ACC_FILL] = np.nan
    return out


def committed_shape(group: zarr.Group) -> tuple[int, int] | None:
    """(participants, windows) of the store, or None while its creation is unfinished.

    The committed shape, not the arrays' shapes, is the store's extent: a growth resizes the
    arrays first and commits the new shape last (:mod:`accelstore.store.root_group`).
    """
    shape = group.attrs.get("accelstore", {}).get("shape")
    return (int(shape[0]), int(shape[1])) if shape is not None else None
