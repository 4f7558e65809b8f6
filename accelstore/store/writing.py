"""Writing a store: the driver's :class:`MetadataWriter` (under the writer lease) and a worker's
:class:`ParticipantWriter` (one participant's shards).

Only the holder of the writer lease (:mod:`accelstore.store.lease`), through
:class:`MetadataWriter`, touches the participant table, the day summary, the attributes and the
array shapes. A participant's row is marked complete last, after its data and table fields, so a
reader never sees a half-written participant (docs/architecture.md, "The store's rules").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.core.sync import sync

from accelstore.errors import StoreDamageError, StoreError
from accelstore.grid import ACC_FILL, WINDOWS_PER_DAY
from accelstore.store.checked_reads import read_checked, read_column, read_table
from accelstore.store.days import day_span
from accelstore.store.failures import FailureLog, create_failure_log
from accelstore.store.layout import DAY_ARRAYS, LABEL_ARRAY, TABLE_COLUMNS, Status, committed_shape, window_arrays_of
from accelstore.store.lease import WriterLease, command_line
from accelstore.store.root_group import (
    commit_shape,
    create_store,
    create_window_array,
    holds_another_format,
    initialise_cells,
    open_arrays,
    open_group,
    reaching,
    refuse_a_file,
)

log = logging.getLogger(__name__)


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
        try:
            self.failures = FailureLog(group, str(group.store))
        except StoreDamageError as error:  # what it held is found again: each run records the failures of the files it reads
            log.warning("%s: starting it afresh; this run records again the failures of the files it reads", error)
            create_failure_log(group)
            self.failures = FailureLog(group, str(group.store))

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
        """Write table columns for ``rows`` (distinct row numbers, in any order; one value for all,
        or one per row): one write per touched chunk of each column, however many rows."""
        self.check_lease()
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        for name, values in columns.items():
            array = self.arrays[name]
            values = np.broadcast_to(np.asarray(values, dtype=object if array.dtype.kind in "OTU" else array.dtype), rows.shape)
            array.oindex[rows] = values

    def write_day_summaries(self, rows: np.ndarray, valid_windows: np.ndarray, std_sum: np.ndarray) -> None:
        """The day summaries of ``rows``: ``valid_windows`` and ``std_sum`` are (rows, days)."""
        days = self.n_windows // WINDOWS_PER_DAY
        if valid_windows.shape != (len(rows), days) or std_sum.shape != (len(rows), days):
            raise ValueError(f"day summaries of {len(rows)} rows are {valid_windows.shape} and {std_sum.shape}, the store has {days} days")
        self.check_lease()
        self.arrays["day_valid_windows"].oindex[rows, :] = valid_windows
        self.arrays["day_std_sum"].oindex[rows, :] = std_sum

    def complete_rows(self, rows: np.ndarray, columns: dict[str, Any], valid_windows: np.ndarray, std_sum: np.ndarray) -> None:
        """Make ``rows`` complete participants, whose shards their workers have written: their day
        summaries and table ``columns`` first, their status last, so that a reader sees each
        participant whole or not at all, and a kill before the status leaves them to be redone."""
        rows = np.asarray(rows, dtype=np.int64)
        self.write_day_summaries(rows, valid_windows, std_sum)
        self.set_rows(rows, **columns)
        self.set_rows(rows, status=Status.COMPLETE)

    def flush_failures(self) -> None:
        """Write the failure log's changes since the last flush (:class:`~accelstore.store.failures.FailureLog`)."""
        self.check_lease()
        self.failures.flush()

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
        initialise_cells(self.arrays, old, (participants, windows))
        commit_shape(self.group, participants, windows)

    def add_classes(self, classes: list[str]) -> list[str]:
        """Make the store labelled (a ``label`` array) and extend its class list; returns the list.

        Existing classes keep their codes; new ones are appended in the given order.
        """
        self.check_lease()
        if LABEL_ARRAY.name not in self.group:
            self.arrays[LABEL_ARRAY.name] = create_window_array(self.group, LABEL_ARRAY, self.n_participants, self.n_windows)
        known = list(self.group.attrs.get("classes", []))
        known += [name for name in classes if name not in known]
        self.group.attrs["classes"] = known
        return known

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
    refuse_a_file(path)
    holder = f"{command}: {command_line()}"
    with ExitStack() as held:
        with reaching(path):  # the storage's own errors while opening; not those of the caller's work
            if create is None:
                open_group(path, "r", storage_options)  # refuse a non-store before leaving a lease in it
            lease = held.enter_context(WriterLease.acquire(path, holder, break_lease=break_lease, storage_options=storage_options))
            try:
                group = open_group(path, "r+", storage_options)
            except StoreError:
                if create is None or holds_another_format(path, storage_options):
                    raise
                group = create_store(path, **create)
            writer = MetadataWriter(group, lease)
        yield writer


# ---------------------------------------------------------------- worker-side (one participant) writes


class ParticipantWriter:
    """Writes one participant's shards: whole days of ``acc`` and whole rows of per-window arrays.

    The one way a worker writes. It also reads back what it may rewrite (:meth:`read_day`,
    :meth:`read_windows`), through the checked reads.
    """

    def __init__(self, path: str, row: int):
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        self.path = path
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

    def stored_bytes(self) -> int:
        """Bytes of this row's shards as stored now, of ``acc`` and every per-window array: what
        ``accelstore info`` sums, so that it never lists the store's objects (a million at UK
        Biobank size). One listing per array (a LIST request on an object store)."""
        store = self.acc.store
        # zarr's stores are asynchronous and bound to zarr's own event loop; sync() runs on it
        return sum(
            sync(store.getsize_prefix(f"{array.path}/c/{self.row}/")) for array in (self.acc, *self.window_arrays.values())
        )

    def read_day(self, day: int) -> np.ndarray:
        """The stored ``acc`` of day ``day`` (int16 milli-g, (8640, 3, 300)); damage is a StoreDamageError."""
        return read_checked(self.acc, (self.row, day_span(day)), f"{self.path}: row {self.row}, day {day}")

    def read_windows(self) -> dict[str, np.ndarray]:
        """The stored rows of every per-window array, over the committed window axis."""
        return {
            name: read_checked(array, (self.row, slice(0, self.n_windows)), f"{self.path}: row {self.row}")
            for name, array in self.window_arrays.items()
        }
