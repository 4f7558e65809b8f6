"""The store's root group: creating it, opening it (format checked), opening its arrays, growing it.

Crash safety. Each object write is atomic (a temporary file renamed into place; a PUT on object
stores), so what needs care is a change that spans several objects:

- **Shapes.** The store's extent is the *committed shape* in the root attributes. Growing resizes
  every array, writes the new table rows and day-summary cells (:func:`initialise_cells`), and
  only then commits the new shape in one write (:func:`commit_shape`). Readers use the committed
  shape, so a half-done growth is invisible to them; the next writer completes it
  (:meth:`accelstore.store.writing.MetadataWriter.repair`).
- **Creation.** A store is usable once its shape is committed (its arrays and its empty failure
  log, :mod:`accelstore.store.failures`, are made first); a creation killed before that is
  redone by the next ``ingest``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import zarr

from accelstore.errors import StoreDamageError, StoreError
from accelstore.grid import ACC_FILL, AXES, SAMPLE_RATE, WINDOW_SAMPLES, WINDOW_SECONDS, WINDOWS_PER_DAY
from accelstore.store.failures import create_failure_log
from accelstore.store.layout import (
    DAY_ARRAYS,
    DAY_SUMMARY_CHUNK,
    DEFAULT_MAX_DAYS,
    FORMAT_VERSION,
    TABLE_CHUNK,
    TABLE_COLUMNS,
    WINDOW_ARRAYS,
    WINDOWS_PER_CHUNK,
    WindowArray,
    acc_compressors,
    checked_compressors,
    committed_shape,
    window_arrays_of,
)


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
        create_window_array(group, spec, participants, n_windows)
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
    create_failure_log(group)
    initialise_cells(group, (0, 0), (participants, n_windows))
    commit_shape(group, participants, n_windows)
    return group


def create_window_array(group: zarr.Group, spec: WindowArray, participants: int, n_windows: int) -> zarr.Array:
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


def initialise_cells(arrays: Mapping[str, zarr.Array], old: tuple[int, int], new: tuple[int, int]) -> None:
    """Write the empty values of the table rows and day-summary cells that growing from the
    committed shape ``old`` to ``new`` adds.

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


def commit_shape(group: zarr.Group, participants: int, windows: int) -> None:
    """Make (participants, windows) the store's extent, in one write of the root attributes."""
    meta = dict(group.attrs["accelstore"])
    meta["shape"] = [participants, windows]
    group.attrs["accelstore"] = meta


def open_group(path: str, mode: str = "r", storage_options: dict | None = None) -> zarr.Group:
    """Open a store's root group, checking that it is a whole accelstore store; StoreError if not."""
    refuse_a_file(path)
    if path.startswith(("s3://", "s3a://")):
        # s3fs reads an object of several MB in concurrent ranges, after a HEAD for its size: two
        # round trips per shard where one GET does (tests/test_object_store.py counts them)
        storage_options = {"max_concurrency": 1, **(storage_options or {})}
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


STORAGE_CLIENTS = frozenset({"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec"})
"""Packages whose exceptions say a store's storage cannot be reached (no endpoint, no credentials,
no bucket): they are not all ``OSError``."""


@contextmanager
def reaching(path: str) -> Iterator[None]:
    """Turn an error of the storage itself (an ``OSError``, or one raised by a storage client of
    :data:`STORAGE_CLIENTS`) into a StoreError naming ``path``; other errors pass unchanged."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        if not (isinstance(error, OSError) or type(error).__module__.partition(".")[0] in STORAGE_CLIENTS):
            raise
        why = " ".join(str(error).split()) or type(error).__name__
        raise StoreError(f"{path}: cannot reach the store: {type(error).__name__}: {why}") from None


def refuse_a_file(path: str) -> None:
    """A StoreError for a local path that is a file: a store is a folder."""
    if "://" not in path and os.path.isfile(path):
        raise StoreError(f"{path}: is a file, not a store (a store is a folder)")


def holds_another_format(path: str, storage_options: dict | None) -> bool:
    """Whether ``path`` already holds Zarr data that is not an unfinished accelstore store."""
    try:
        group = zarr.open_group(path, mode="r", storage_options=storage_options, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    meta = group.attrs.get("accelstore")
    if meta is None:
        return bool(list(group.keys())) or bool(group.attrs.asdict())
    return meta.get("format") != FORMAT_VERSION or committed_shape(group) is not None


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

