"""Ingest: raw files → the store, one Dask task per file (docs/architecture.md, "Ingest").

The driver (this process) is the only metadata writer: it reserves table rows, resizes arrays,
and marks a participant complete only after its worker has written every shard. Workers read,
process and write their own participant's shards, and return a small :class:`FileResult`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from accelstore import processing
from accelstore import store as layout
from accelstore.grid import WINDOW_SECONDS, WINDOWS_PER_DAY
from accelstore.kernels import resample
from accelstore.kernels import window_labels as label_kernels
from accelstore.kernels.resample import resample_windows, window_stats
from accelstore.kernels.window_labels import window_labels
from accelstore.pipelines.runner import (
    TaskError,
    absolute,
    progress_bar,
    run_tasks,
    task_client,
)
from accelstore.readers import (
    ProcessingOptions,
    ReaderError,
    cwa,
    file_digest,
)
from accelstore.readers.annotations import annotation_codes, scan_classes
from accelstore.readers.discovery import discover
from accelstore.store import (
    MetadataWriter,
    ParticipantWriter,
    Status,
    day_span,
    recorded_days,
    store_writer,
    summarise_days,
)

log = logging.getLogger(__name__)

UK_BIOBANK_NAME = re.compile(r"^(\d{7})_\d+_\d+_\d+$")


def participant_id(path: str | os.PathLike, id_pattern: str | None = None) -> str:
    """The file name without its extensions, the eid for UK Biobank names, or ``id_pattern``'s group 1."""
    name = Path(path).name
    if id_pattern is not None:
        match = re.search(id_pattern, name)
        if match is None or not match.groups():
            raise ValueError(f"--id-pattern {id_pattern!r} does not match (or has no group) in '{name}'")
        pid = match.group(1) or ""
    else:
        stem = name.split(".", 1)[0]
        uk_biobank = UK_BIOBANK_NAME.match(stem)
        pid = uk_biobank.group(1) if uk_biobank else stem
    if not pid.strip():
        raise ValueError(f"'{name}' gives an empty participant id" + (f" (--id-pattern {id_pattern!r})" if id_pattern else ""))
    return pid


# ---------------------------------------------------------------- the worker's task


@dataclass(frozen=True)
class LabelSpec:
    """How a labelled ingest turns annotations into codes: the store's classes and the label map."""

    classes: tuple[str, ...]
    label_map: tuple[tuple[str, str], ...] | None = None

    def codes(self, annotation: np.ndarray) -> np.ndarray:
        return annotation_codes(annotation, self.classes, dict(self.label_map) if self.label_map is not None else None)


@dataclass(frozen=True)
class FileTask:
    path: Path
    participant: str
    row: int
    store: str
    options: ProcessingOptions
    expected: tuple[int, str] | None = None  # (size, hash) of the complete row: skip when equal, else check it reads
    clear_stale: bool = False  # the row may hold shards of an earlier attempt
    labels: LabelSpec | None = None  # labelled ingest: window labels from the file's annotations


@dataclass
class FileResult:
    task: FileTask
    outcome: str  # "written", "unchanged", "changed" (and reads), "too_long", "failed"
    size: int = 0
    digest: str = ""
    windows_needed: int = 0
    row_fields: dict = field(default_factory=dict)
    day_valid_windows: np.ndarray | None = None
    day_std_sum: np.ndarray | None = None
    error: str = ""
    message: str = ""


def ingest_file(task: FileTask) -> FileResult:
    """Read, process and write one file's participant. Bad input is a 'failed' result, not an exception."""
    try:
        before = task.path.stat()
        size = before.st_size
        digest = file_digest(task.path)
    except OSError as error:
        return _unreadable(task, error)
    if task.expected == (size, digest):
        return FileResult(task, "unchanged", size=size, digest=digest)
    try:
        recording = processing.read_recording(task.path, task.options, _thread_buffers())
        after = task.path.stat()
    except ReaderError as error:
        return FileResult(task, "failed", size=size, digest=digest, error=error.kind, message=str(error))
    except OSError as error:
        return _unreadable(task, error, size, digest)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        message = f"{task.path}: changed while it was being read; run ingest again"
        return FileResult(task, "failed", size=size, digest=digest, error="changed while reading", message=message)
    if task.labels is not None and recording.annotation is None:
        message = f"{task.path}: no annotations: labelled ingest needs a CSV with an 'annotation' column"
        return FileResult(task, "failed", size=size, digest=digest, error="unlabelled", message=message)
    if task.expected is not None:  # a complete row's file changed and reads: the driver redoes the row
        return FileResult(task, "changed", size=size, digest=digest)

    day0 = recording.time[0].astype("datetime64[D]")
    day0_ns = np.int64(day0.astype("datetime64[ns]").astype(np.int64))
    time_ns = recording.time.view(np.int64)
    first_window = int((time_ns[0] - day0_ns) // (WINDOW_SECONDS * 10**9))
    n_windows = int((time_ns[-1] - day0_ns) // (WINDOW_SECONDS * 10**9)) + 1
    writer = ParticipantWriter(task.store, task.row)
    if n_windows > writer.n_windows:
        return FileResult(task, "too_long", size=size, digest=digest, windows_needed=n_windows)

    arrays = layout.WINDOW_ARRAYS + ((layout.LABEL_ARRAY,) if task.labels is not None else ())
    rows = {spec.name: np.full(writer.n_windows, spec.fill, dtype=spec.dtype) for spec in arrays}
    if task.labels is not None:
        codes = task.labels.codes(recording.annotation)
        samples_per_window = round(recording.sample_rate * WINDOW_SECONDS)
    days_with_data = recorded_days(first_window, n_windows)
    for day in range(writer.n_windows // WINDOWS_PER_DAY):
        if day not in days_with_data:
            if task.clear_stale:
                writer.clear_day(day)
            continue
        acc, valid = resample_windows(time_ns, day0_ns, *recording.axes, day * WINDOWS_PER_DAY, WINDOWS_PER_DAY)
        writer.write_day(day, acc)
        span = day_span(day)
        rows["valid"][span] = valid
        rows["std"][span], rows["enmo"][span] = window_stats(acc, valid)
        if task.labels is not None:
            rows["label"][span] = window_labels(
                time_ns, day0_ns, codes, len(task.labels.classes), day * WINDOWS_PER_DAY, WINDOWS_PER_DAY, samples_per_window
            )
    writer.write_windows(**rows)
    day_valid, day_std = summarise_days(rows["valid"], rows["std"])

    info = recording.info
    row_fields = {
        "day0": int(day0.astype("datetime64[s]").astype(np.int64)),
        "first_window": first_window,
        "n_windows": n_windows,
        "device": recording.device,
        "device_id": recording.device_id,
        "source": str(task.path),
        "source_size": size,
        "source_hash": digest,
        "utc_offset": str(info.get("UtcOffset", "")),
        "device_rate": recording.sample_rate,
        "calibrated": int(bool(info.get("CalibOK", 0))),
        "calib_error_mg": float(info.get("CalibErrorAfter(mg)", np.nan)),
        "read_errors": int(info.get("ReadErrors", 0)),
        "non_finite_samples": int(info.get("NonFiniteSamples", 0)),
        "out_of_range_samples": int(info.get("OutOfRangeSamples", 0)),
        "wear_days": float(info.get("WearTime(days)", np.nan)),
        "valid_windows": int(day_valid.sum()),
    }
    return FileResult(task, "written", size, digest, n_windows, row_fields, day_valid, day_std)


def _unreadable(task: FileTask, error: OSError, size: int = 0, digest: str = "") -> FileResult:
    message = f"{task.path}: unreadable: {error.strerror or error}"
    return FileResult(task, "failed", size=size, digest=digest, error="unreadable", message=message)


_buffers_of_thread = threading.local()


def _thread_buffers() -> cwa.SampleBuffers:
    """This thread's reader buffers: kept from task to task, one set per worker thread."""
    if not hasattr(_buffers_of_thread, "cwa"):
        _buffers_of_thread.cwa = cwa.SampleBuffers()
    return _buffers_of_thread.cwa


# ---------------------------------------------------------------- the driver


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


def warm_up() -> None:
    """Prepare a process for ingest tasks: compile every kernel they run, and no huge pages.

    The kernels: the .cwa reader, resampling and the Numba processing steps. Huge pages: numpy
    asks the kernel for them (``madvise``) on every large array, and where the kernel then
    compacts memory to find them (transparent huge pages with ``defrag=madvise``, a common
    default) a worker's first week of samples took 3–6 s to fault in instead of ~1 s here. The
    setting is numpy's, for the whole process.
    """
    set_huge_pages = getattr(np._core.multiarray, "_set_madvise_hugepage", None)
    if set_huge_pages is not None:
        set_huge_pages(False)
    cwa.warm_up()
    resample.warm_up()
    label_kernels.warm_up()
    processing.warm_up()


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
