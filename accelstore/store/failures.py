"""The failure log: the files that could not be ingested, and the participants ``verify`` found
damaged, each with its reason.

Its own arrays, in the group ``failures``: one row per source (``source``, ``id``, ``error``,
``message``). Recording or clearing a failure rewrites only the chunks holding the rows it
changes, however many failures there are — an attribute holding them all would be rewritten
whole at every change, which over a run with many failures is quadratic.

The log's extent is the group's ``rows`` attribute, committed after the rows it adds are written
(as the store's shape is committed after a growth), so a kill in between leaves the log as it
was. A failure that is cleared (its file read since) keeps its row with an empty source, and the
next new failure takes that row. A lost chunk reads as the fill value: a StoreDamageError, as in
the participant table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import zarr

from accelstore.errors import StoreDamageError
from accelstore.store.checked_reads import read_checked
from accelstore.store.layout import ABSENT_TEXT, TABLE_CHUNK, checked_compressors

__all__ = ["FAILURES_GROUP", "FAILURE_FIELDS", "FailureLog", "create_failure_log", "read_failures"]

FAILURES_GROUP = "failures"
FAILURE_FIELDS = ("source", "id", "error", "message")
"""A failure: the source it concerns (the index), its participant id ('' if none), a short error kind, the one-line message."""

Failure = dict[str, str]
"""``id``, ``error`` and ``message`` of one source's failure."""


def create_failure_log(root: zarr.Group) -> None:
    """An empty failure log in the store's root group (replacing any half-made one)."""
    group = root.create_group(FAILURES_GROUP, overwrite=True)
    for name in FAILURE_FIELDS:
        group.create_array(
            name, shape=(0,), chunks=(TABLE_CHUNK,), dtype=str, fill_value=ABSENT_TEXT,
            compressors=checked_compressors(), dimension_names=("failure",), overwrite=True,
        )
    group.attrs["rows"] = 0


def read_failures(root: zarr.Group, where: str) -> pd.DataFrame:
    """The failures now recorded, indexed by source (columns ``id``, ``error``, ``message``)."""
    rows = _read_rows(root, where)
    live = rows["source"] != ""
    return pd.DataFrame({name: rows[name][live] for name in FAILURE_FIELDS[1:]}, index=pd.Index(rows["source"][live], name="source"))


class FailureLog:
    """The writer's side of the log: every recorded failure by source in memory (:attr:`recorded`),
    and the changes since the last :meth:`flush`, which writes them all at once."""

    def __init__(self, root: zarr.Group, where: str):
        rows = _read_rows(root, where)
        self._group = root[FAILURES_GROUP]
        self._arrays = {name: self._group[name] for name in FAILURE_FIELDS}
        self._row_of = {source: row for row, source in enumerate(rows["source"]) if source}
        self._free = [row for row, source in enumerate(rows["source"]) if not source]
        self._extent = len(rows["source"])  # committed rows
        self._assigned = self._extent  # rows given to sources, written or not
        self._pending: dict[str, Failure | None] = {}
        self.recorded: dict[str, Failure] = {
            source: {name: str(rows[name][row]) for name in FAILURE_FIELDS[1:]} for source, row in self._row_of.items()
        }

    def record(self, source: str, failure: Failure) -> None:
        self.recorded[source] = failure
        self._pending[source] = failure

    def clear(self, source: str) -> bool:
        """Forget ``source``'s failure, if it has one; whether it had."""
        if self.recorded.pop(source, None) is None:
            return False
        self._pending[source] = None
        return True

    def flush(self) -> None:
        """Write every change since the last flush: one write per touched chunk of each array,
        then, if the log grew, its new extent."""
        changes = [self._row_and_values(source, failure) for source, failure in self._pending.items()]
        changes = [change for change in changes if change is not None]
        self._pending.clear()
        if not changes:
            return
        rows = np.array([row for row, _ in changes])
        extent = max(self._extent, int(rows.max()) + 1)
        for name, array in self._arrays.items():
            if array.shape[0] < extent:
                array.resize((extent,))
            array.oindex[rows] = np.array([values[name] for _, values in changes], dtype=object)
        if extent != self._extent:
            self._group.attrs["rows"] = extent  # last: the new rows exist only now
            self._extent = extent

    def _row_and_values(self, source: str, failure: Failure | None) -> tuple[int, dict[str, str]] | None:
        row = self._row_of.get(source)
        if failure is None:  # cleared
            if row is None:  # recorded and cleared since the last flush: nothing was written
                return None
            del self._row_of[source]
            self._free.append(row)
            return row, dict.fromkeys(FAILURE_FIELDS, "")
        if row is None:
            if self._free:
                row = self._free.pop()
            else:
                row, self._assigned = self._assigned, self._assigned + 1
            self._row_of[source] = row
        return row, {"source": source, **failure}


def _read_rows(root: zarr.Group, where: str) -> dict[str, np.ndarray]:
    """Every committed row of the log, damage checked (a lost chunk reads as the fill value)."""
    try:
        group = root[FAILURES_GROUP]
        extent = int(group.attrs["rows"])
        arrays = {name: group[name] for name in FAILURE_FIELDS}
    except KeyError:
        raise StoreDamageError(f"{where}: the failure log ('{FAILURES_GROUP}') is missing or incomplete") from None
    rows = {name: read_checked(array, slice(0, extent), f"{where}: failure log") for name, array in arrays.items()}
    if any(len(values) < extent or (values == ABSENT_TEXT).any() for values in rows.values()):
        raise StoreDamageError(f"{where}: the failure log has lost rows (a missing chunk)")
    return rows
