"""Ingest: raw files → the store, one Dask task per file (docs/architecture.md, "Ingest").

The driver (this process) is the only metadata writer: it reserves table rows, resizes arrays,
and marks a participant complete only after its worker has written every shard. Workers read,
process and write their own participant's shards (:mod:`accelstore.pipelines.ingest_task`), and
return a small :class:`FileResult`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from accelstore import store as layout
from accelstore.pipelines.ingest_task import FileResult, FileTask, LabelSpec, ingest_file, participant_id, warm_up
from accelstore.pipelines.runner import TaskError, absolute, progress_bar, run_task_batches, task_client
from accelstore.readers import ProcessingOptions
from accelstore.readers.annotations import scan_classes
from accelstore.readers.discovery import discover
from accelstore.readers.sources import Source, as_source
from accelstore.store import MetadataWriter, Status, store_writer

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    store: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)  # source → id, error, message

    @property
    def ok(self) -> bool:
        return not self.failed


class _IngestPlan:
    """Which files become which tasks, decided from the table (every row, :meth:`MetadataWriter.table`)
    before anything is submitted."""

    def __init__(
        self,
        files: list[Source],
        table: pd.DataFrame,
        writer: MetadataWriter,
        store: str,
        options: ProcessingOptions,
        id_pattern: str | None,
        labels: LabelSpec | None,
    ):
        self.tasks: list[FileTask] = []
        self.failed: dict[str, dict[str, str]] = {}
        rows_by_id = {pid: row for row, pid in enumerate(table["id"]) if pid}
        seen: dict[str, Source] = {}
        new: list[tuple[Source, str]] = []
        redo: list[tuple[Source, str, int]] = []
        for path in files:
            try:
                pid = participant_id(path, id_pattern)
            except ValueError as error:
                self._fail(path, "", "bad id", f"{path}: {error}")
                continue
            if pid in seen:
                self._fail(path, pid, "duplicate id", f"{path}: participant id {pid!r} is also given by {seen[pid]}")
                continue
            seen[pid] = path
            row = rows_by_id.get(pid)
            if row is None:
                new.append((path, pid))
                continue
            status, source = int(table.at[row, "status"]), table.at[row, "source"]
            if status == Status.COMPLETE and source != str(path):
                self._fail(path, pid, "duplicate id", f"{path}: participant id {pid!r} is already ingested from {source}")
            elif status == Status.COMPLETE:
                expected = (int(table.at[row, "source_size"]), str(table.at[row, "source_hash"]))
                self.tasks.append(FileTask(path, pid, row, store, options, expected=expected, labels=labels))
            else:
                redo.append((path, pid, row))
        new_rows = writer.allocate_rows([pid for _, pid in new])
        rows = np.array([row for *_, row in redo] + list(new_rows), dtype=np.int64)
        writer.set_rows(rows, source=[str(p) for p, *_ in redo] + [str(p) for p, _ in new], status=Status.WRITING)
        self.tasks += [FileTask(p, pid, row, store, options, clear_stale=True, labels=labels) for p, pid, row in redo]
        self.tasks += [FileTask(p, pid, int(row), store, options, labels=labels) for (p, pid), row in zip(new, new_rows)]

    def _fail(self, path: Source, pid: str, error: str, message: str) -> None:
        self.failed[str(path)] = {"id": pid, "error": error, "message": message}


def ingest(
    inputs: Sequence[str | os.PathLike],
    store: str,
    *,
    options: ProcessingOptions = ProcessingOptions(),
    workers: int | None = None,
    scheduler: str | None = None,
    id_pattern: str | None = None,
    max_days: int = layout.DEFAULT_MAX_DAYS,
    reserve: int = 0,
    labels: bool = False,
    label_map: dict[str, str] | None = None,
    retries: int = 2,
    progress: bool = True,
    break_lease: bool = False,
) -> IngestReport:
    """Ingest every supported file under ``inputs`` into ``store``.

    A new store gets ``max_days`` days of window address space and ``reserve`` empty participant
    rows (absent data costs nothing, so a store can be sized for a whole cohort up front).
    ``labels``: CSVs carry an ``annotation`` column; each window gets the class covering at least
    half of it (``label_map`` merges or renames annotations first). Participants that ``verify``
    found damaged are redone from their recorded source, whether or not it is among ``inputs``.

    The run holds the store's writer lease (:mod:`accelstore.store.lease`): a second writer is refused
    with :class:`~accelstore.errors.LeaseHeldError`; ``break_lease`` takes it from a holder that is
    certainly gone.
    """
    files, unreadable = discover(inputs)
    store = absolute(store)
    with store_writer(store, "ingest", break_lease=break_lease, create={"max_days": max_days, "participants": reserve}) as writer:
        table = writer.table()
        files += _damaged_sources(table, files)
        label_spec = None
        if labels:
            classes = writer.add_classes(scan_classes(files, label_map))
            label_spec = LabelSpec(tuple(classes), tuple(sorted(label_map.items())) if label_map is not None else None)
            log.info("labelled ingest: %d classes (%s)", len(classes), ", ".join(classes))
        plan = _IngestPlan(files, table, writer, store, options, id_pattern, label_spec)
        report = IngestReport(store)
        applied = _AppliedInGroups(writer, report)
        for error in unreadable:
            applied.fail(error.path, {"id": "", "error": error.kind, "message": str(error)})
        for source, failure in plan.failed.items():
            applied.fail(source, failure)
        applied.flush()
        log.info("%d file(s): %d task(s), %d refused before reading", len(files), len(plan.tasks), len(plan.failed) + len(unreadable))

        with task_client(workers, scheduler, warm=warm_up) as client, progress_bar(len(plan.tasks), "ingest", progress, unit="file") as bar:
            tasks = plan.tasks
            while tasks:
                deferred = _apply_round(run_task_batches(client, ingest_file, tasks, retries, max_wait=FLUSH_SECONDS), applied, bar)
                tasks = list(_replan(deferred, writer)) if deferred else []
    _log_summary(report)
    return report


def _apply_round(batches: Iterable[list[tuple[FileTask, FileResult | TaskError]]], applied: _AppliedInGroups, bar) -> list[FileResult]:
    """Apply one round's results as they come (the driver's whole work per file: bench/driver.py
    times it); returns the results that need another round (a file that changed, a recording
    longer than the window axis), after writing everything else."""
    deferred: list[FileResult] = []
    for batch in batches:
        for task, result in batch:
            result = _file_result(task, result)
            if result.outcome in ("changed", "too_long"):
                deferred.append(result)
            else:
                applied.add(result)
                bar.update()
        if applied.due():
            applied.flush()
    applied.flush()  # before the next round grows the store or rewrites rows
    return deferred


def _damaged_sources(table: pd.DataFrame, files: list[Source]) -> list[Source]:
    """The recorded sources (paths, or URLs as strings) of rows that ``verify`` marked damaged,
    unless already among ``files``."""
    given = set(files)
    sources = [as_source(source) for source in table.loc[table["status"] == Status.DAMAGED, "source"]]
    extra = [source for source in dict.fromkeys(sources) if source not in given]
    if extra:
        log.info("redoing %d participant(s) that verify found damaged, from their recorded sources", len(extra))
    return extra


def _file_result(task: FileTask, result: FileResult | TaskError) -> FileResult:
    """An exception that survived the retries, or a dead worker, is that file's failure."""
    if isinstance(result, TaskError):
        return FileResult(task, "failed", error="task error", message=f"{task.path}: {result.message}")
    return result


def _replan(deferred: list[FileResult], writer: MetadataWriter) -> Iterator[FileTask]:
    """Second round: rows whose file changed (and reads), and recordings longer than the window axis."""
    writer.ensure_windows(max(r.windows_needed for r in deferred))
    rows = np.array([r.task.row for r in deferred])
    writer.set_rows(rows, status=Status.WRITING)
    for result in deferred:
        yield replace(result.task, expected=None, clear_stale=True)


FLUSH_SECONDS = 1.0
"""The longest a completed result waits before the driver writes it into the store."""
MAX_GROUP = 4096
"""The most results written as one group: one table chunk's worth, so a group's memory is bounded."""


class _AppliedInGroups:
    """Completed results, written into the store in groups rather than one by one.

    A group is written at least every :data:`FLUSH_SECONDS` (sooner once it holds
    :data:`MAX_GROUP` results) and at the end, with one write per
    touched chunk of each table column, day summary and failure-log array, whatever its size
    (bench/driver.py): the driver's cost per participant falls well under a millisecond, where
    one participant at a time took ~112 ms. Within a group the store's rules hold as for one
    participant (:meth:`~accelstore.store.MetadataWriter.complete_rows`: data and row first,
    status last), so a kill loses at most the group not yet written, whose rows are still
    marked being written and are redone by the next run.
    """

    def __init__(self, writer: MetadataWriter, report: IngestReport):
        self.writer, self.report = writer, report
        self.written: list[FileResult] = []
        self.failed_rows: list[int] = []
        self.since = time.monotonic()

    def add(self, result: FileResult) -> None:
        task = result.task
        source = str(task.path)
        if result.outcome == "written":
            self.written.append(result)
            self.report.written.append(task.participant)
            self.writer.failures.clear(source)
        elif result.outcome == "unchanged":  # a failure recorded for it earlier (the file was broken, then restored) is over
            self.report.unchanged.append(task.participant)
            self.writer.failures.clear(source)
        else:
            if task.expected is None:  # a complete row keeps its data and stays visible
                self.failed_rows.append(task.row)
            self.fail(source, {"id": task.participant, "error": result.error, "message": result.message})

    def fail(self, source: str | os.PathLike, failure: dict[str, str]) -> None:
        self.report.failed[str(source)] = failure
        self.writer.failures.record(str(source), failure)
        log.warning("failed: %s", failure["message"])

    def due(self) -> bool:
        return len(self.written) >= MAX_GROUP or time.monotonic() - self.since >= FLUSH_SECONDS

    def flush(self) -> None:
        if self.written:
            rows = np.array([result.task.row for result in self.written], dtype=np.int64)
            columns = {name: [result.row_fields[name] for result in self.written] for name in self.written[0].row_fields}
            valid_windows = np.stack([result.day_valid_windows for result in self.written])
            std_sum = np.stack([result.day_std_sum for result in self.written])
            self.writer.complete_rows(rows, columns, valid_windows, std_sum)
        if self.failed_rows:
            self.writer.set_rows(np.array(self.failed_rows, dtype=np.int64), status=Status.FAILED)
        self.writer.flush_failures()
        self.written, self.failed_rows = [], []
        self.since = time.monotonic()


def _log_summary(report: IngestReport) -> None:
    log.info(
        "ingest into %s: %d written, %d unchanged, %d failed",
        report.store, len(report.written), len(report.unchanged), len(report.failed),
    )
    for failure in sorted(report.failed.values(), key=lambda f: f["message"]):
        log.error("not ingested: %s", failure["message"])
