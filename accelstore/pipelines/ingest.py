"""Ingest: raw files → the store, one Dask task per file (docs/architecture.md, "Ingest").

The driver (this process) is the only metadata writer: it reserves table rows, resizes arrays,
and marks a participant complete only after its worker has written every shard. Workers read,
process and write their own participant's shards (:mod:`accelstore.pipelines.ingest_task`), and
return a small :class:`FileResult`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from accelstore import store as layout
from accelstore.pipelines.ingest_task import FileResult, FileTask, LabelSpec, ingest_file, participant_id, warm_up
from accelstore.pipelines.runner import TaskError, absolute, progress_bar, run_tasks, task_client
from accelstore.readers import ProcessingOptions
from accelstore.readers.annotations import scan_classes
from accelstore.readers.discovery import discover
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
        files: list[Path],
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
        seen: dict[str, Path] = {}
        new: list[tuple[Path, str]] = []
        redo: list[tuple[Path, str, int]] = []
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

    def _fail(self, path: Path, pid: str, error: str, message: str) -> None:
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
        failures = writer.failures()
        for error in unreadable:
            _record_failure(report, failures, error.path, {"id": "", "error": error.kind, "message": str(error)})
        for source, failure in plan.failed.items():
            _record_failure(report, failures, source, failure)
        writer.set_failures(failures)
        log.info("%d file(s): %d task(s), %d refused before reading", len(files), len(plan.tasks), len(plan.failed) + len(unreadable))

        with task_client(workers, scheduler, warm=warm_up) as client, progress_bar(len(plan.tasks), "ingest", progress, unit="file") as bar:
            tasks = plan.tasks
            while tasks:
                deferred: list[FileResult] = []
                for task, result in run_tasks(client, ingest_file, tasks, retries):
                    result = _file_result(task, result)
                    if result.outcome in ("changed", "too_long"):
                        deferred.append(result)
                    else:
                        _apply(result, writer, report, failures)
                        bar.update()
                tasks = list(_replan(deferred, writer)) if deferred else []
        writer.set_failures(failures)
    _log_summary(report)
    return report


def _damaged_sources(table: pd.DataFrame, files: list[Path]) -> list[Path]:
    """The recorded sources of rows that ``verify`` marked damaged, unless already among ``files``."""
    given = set(files)
    sources = [Path(source) for source in table.loc[table["status"] == Status.DAMAGED, "source"]]
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


def _apply(result: FileResult, writer: MetadataWriter, report: IngestReport, failures: dict) -> None:
    task = result.task
    source = str(task.path)
    if result.outcome == "written":
        row = np.array([task.row])
        writer.write_day_summary(task.row, result.day_valid_windows, result.day_std_sum)
        writer.set_rows(row, **result.row_fields)
        writer.set_rows(row, status=Status.COMPLETE)  # last: the participant becomes visible only now
        report.written.append(task.participant)
        if failures.pop(source, None) is not None:
            writer.set_failures(failures)
    elif result.outcome == "unchanged":  # a failure recorded for it earlier (the file was broken, then restored) is over
        report.unchanged.append(task.participant)
        if failures.pop(source, None) is not None:
            writer.set_failures(failures)
    else:
        if task.expected is None:  # a complete row keeps its data and stays visible
            writer.set_rows(np.array([task.row]), status=Status.FAILED)
        _record_failure(report, failures, source, {"id": task.participant, "error": result.error, "message": result.message})
        writer.set_failures(failures)


def _record_failure(report: IngestReport, failures: dict, source: str, failure: dict[str, str]) -> None:
    report.failed[source] = failure
    failures[source] = failure
    log.warning("failed: %s", failure["message"])


def _log_summary(report: IngestReport) -> None:
    log.info(
        "ingest into %s: %d written, %d unchanged, %d failed",
        report.store, len(report.written), len(report.unchanged), len(report.failed),
    )
    for failure in sorted(report.failed.values(), key=lambda f: f["message"]):
        log.error("not ingested: %s", failure["message"])
