"""Ingest: raw files → the store, one Dask task per file (DESIGN §4).

The driver (this process) is the only metadata writer: it reserves table rows, resizes arrays,
and marks a participant complete only after its worker has written every shard. Workers read,
process and write their own participant's shards, and return a small :class:`FileResult`.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from accelstore import store as layout
from accelstore.kernels.resample import WINDOW_SECONDS, WINDOWS_PER_DAY, resample_windows, warm_up, window_stats
from accelstore.readers import ProcessingOptions, ReaderError, file_digest, is_supported, read_recording
from accelstore.store import MetadataWriter, ParticipantWriter, Status

log = logging.getLogger(__name__)

UK_BIOBANK_NAME = re.compile(r"^(\d{7})_\d+_\d+_\d+$")


def participant_id(path: str | os.PathLike, id_pattern: str | None = None) -> str:
    """The file name without its extensions, the eid for UK Biobank names, or ``id_pattern``'s group 1."""
    name = Path(path).name
    if id_pattern is not None:
        match = re.search(id_pattern, name)
        if match is None or not match.groups():
            raise ValueError(f"--id-pattern {id_pattern!r} does not match (or has no group) in '{name}'")
        return match.group(1)
    stem = name.split(".", 1)[0]
    uk_biobank = UK_BIOBANK_NAME.match(stem)
    return uk_biobank.group(1) if uk_biobank else stem


def discover(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files to ingest: supported files in each folder (recursively), plus files named directly."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
            ignored = [p for p in found if not is_supported(p)]
            if ignored:
                log.info("ignoring %d file(s) of no supported format in %s, e.g. %s", len(ignored), item, ignored[0].name)
            files += [p for p in found if is_supported(p)]
        else:
            files.append(item)
    return [p.resolve() for p in files]


# ---------------------------------------------------------------- the worker's task


@dataclass(frozen=True)
class FileTask:
    path: Path
    participant: str
    row: int
    store: str
    options: ProcessingOptions
    expected: tuple[int, str] | None = None  # (size, hash) of the complete row: skip when equal
    clear_stale: bool = False  # the row may hold shards of an earlier attempt


@dataclass
class FileResult:
    task: FileTask
    outcome: str  # "written", "unchanged", "changed", "too_long", "failed"
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
        size = task.path.stat().st_size
        digest = file_digest(task.path)
    except OSError as error:
        return FileResult(task, "failed", error="unreadable", message=f"{task.path}: {error.strerror or error}")
    if task.expected is not None:
        outcome = "unchanged" if task.expected == (size, digest) else "changed"
        return FileResult(task, outcome, size=size, digest=digest)
    try:
        recording = read_recording(task.path, task.options)
    except ReaderError as error:
        return FileResult(task, "failed", size=size, digest=digest, error=error.kind, message=str(error))

    day0 = recording.time[0].astype("datetime64[D]")
    day0_ns = np.int64(day0.astype("datetime64[ns]").astype(np.int64))
    time_ns = recording.time.view(np.int64)
    first_window = int((time_ns[0] - day0_ns) // (WINDOW_SECONDS * 10**9))
    n_windows = int((time_ns[-1] - day0_ns) // (WINDOW_SECONDS * 10**9)) + 1
    writer = ParticipantWriter(task.store, task.row)
    if n_windows > writer.n_windows:
        return FileResult(task, "too_long", size=size, digest=digest, windows_needed=n_windows)

    days = writer.n_windows // WINDOWS_PER_DAY
    rows = {spec.name: np.full(writer.n_windows, spec.fill, dtype=spec.dtype) for spec in layout.WINDOW_ARRAYS}
    day_valid = np.zeros(days, dtype=np.int32)
    day_std = np.zeros(days, dtype=np.float32)
    recorded_days = range(first_window // WINDOWS_PER_DAY, (n_windows - 1) // WINDOWS_PER_DAY + 1)
    for day in range(days):
        if day not in recorded_days:
            if task.clear_stale:
                writer.clear_day(day)
            continue
        acc, valid = resample_windows(time_ns, day0_ns, *recording.axes, day * WINDOWS_PER_DAY, WINDOWS_PER_DAY)
        std, enmo = window_stats(acc, valid)
        writer.write_day(day, acc)
        span = slice(day * WINDOWS_PER_DAY, (day + 1) * WINDOWS_PER_DAY)
        rows["valid"][span], rows["std"][span], rows["enmo"][span] = valid, std, enmo
        day_valid[day] = valid.sum()
        day_std[day] = std[valid].sum()
    writer.write_windows(**rows)

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
        "device_rate": recording.sample_rate,
        "calibrated": bool(info.get("CalibOK", 0)),
        "calib_error_mg": float(info.get("CalibErrorAfter(mg)", np.nan)),
        "read_errors": int(info.get("ReadErrors", 0)),
        "wear_days": float(info.get("WearTime(days)", np.nan)),
        "valid_windows": int(day_valid.sum()),
    }
    return FileResult(task, "written", size, digest, n_windows, row_fields, day_valid, day_std)


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


class _Plan:
    """Which files become which tasks, decided from the table before anything is submitted."""

    def __init__(self, files: list[Path], writer: MetadataWriter, store: str, options: ProcessingOptions, id_pattern: str | None):
        self.tasks: list[FileTask] = []
        self.failed: dict[str, dict[str, str]] = {}
        table = writer.table()
        rows_by_id = {pid: row for row, pid in enumerate(table["id"]) if pid}
        seen: dict[str, Path] = {}
        new: list[tuple[Path, str]] = []
        redo: list[tuple[Path, str, int]] = []
        for path in files:
            try:
                pid = participant_id(path, id_pattern)
            except ValueError as error:
                self._fail(path, "", "bad id", str(error))
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
                self.tasks.append(FileTask(path, pid, row, store, options, expected=expected))
            else:
                redo.append((path, pid, row))
        new_rows = writer.allocate_rows([pid for _, pid in new])
        rows = np.array([row for *_, row in redo] + list(new_rows), dtype=np.int64)
        writer.set_rows(rows, source=[str(p) for p, *_ in redo] + [str(p) for p, _ in new], status=Status.WRITING)
        self.tasks += [FileTask(p, pid, row, store, options, clear_stale=True) for p, pid, row in redo]
        self.tasks += [FileTask(p, pid, int(row), store, options) for (p, pid), row in zip(new, new_rows)]

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
    retries: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Ingest every supported file under ``inputs`` into ``store``.

    A new store gets ``max_days`` days of window address space and ``reserve`` empty participant
    rows (absent data costs nothing, so a store can be sized for a whole cohort up front).
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    files = discover(inputs)
    store = _absolute(store)
    group = _open_or_create(store, max_days, reserve)
    writer = MetadataWriter(group)
    plan = _Plan(files, writer, store, options, id_pattern)
    report = IngestReport(store)
    failures = writer.failures()
    for source, failure in plan.failed.items():
        _record_failure(report, failures, source, failure)
    writer.set_failures(failures)
    log.info("%d file(s): %d task(s), %d refused before reading", len(files), len(plan.tasks), len(plan.failed))

    warm_up()  # compile once here, so workers load Numba's cache instead of racing to write it
    with _client(workers, scheduler) as client:
        client.run(warm_up)
        submitted: dict[str, FileTask] = {}

        def submit(task: FileTask):
            future = client.submit(ingest_file, task, retries=retries, pure=False)
            submitted[future.key] = task
            return future

        completed = as_completed([submit(task) for task in plan.tasks])
        deferred: list[FileResult] = []
        with tqdm(total=len(plan.tasks), unit="file", desc="ingest", disable=not progress) as bar:
            for future in completed:
                result = _result_of(future, submitted.pop(future.key))
                if result.outcome in ("changed", "too_long"):
                    deferred.append(result)
                else:
                    _apply(result, writer, report, failures)
                    bar.update()
                if not completed.count() and deferred:
                    for task in _replan(deferred, writer):
                        completed.add(submit(task))
                    deferred = []
    writer.set_failures(failures)
    _log_summary(report)
    return report


def _result_of(future, task: FileTask) -> FileResult:
    """The task's result; an exception that survived the retries, or a dead worker, is a failure."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 — any task error is that file's failure, never the run's
        message = f"{task.path}: {type(error).__name__}: {' '.join(str(error).split())}"
        return FileResult(task, "failed", error="task error", message=message)


def _replan(deferred: list[FileResult], writer: MetadataWriter) -> Iterator[FileTask]:
    """Second round: rows whose file changed, and recordings longer than the window axis."""
    writer.ensure_windows(max(r.windows_needed for r in deferred))
    rows = np.array([r.task.row for r in deferred])
    writer.set_rows(rows, status=Status.WRITING)
    for result in deferred:
        task = result.task
        yield FileTask(task.path, task.participant, task.row, task.store, task.options, clear_stale=True)


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
    elif result.outcome == "unchanged":
        report.unchanged.append(task.participant)
    else:
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


def _absolute(store: str) -> str:
    return store if "://" in store else str(Path(store).resolve())


def _open_or_create(store: str, max_days: int, reserve: int):
    try:
        return layout.open_group(store, mode="r+")
    except FileNotFoundError:
        return layout.create_store(store, max_days=max_days, participants=reserve)


@contextmanager
def _client(workers: int | None, scheduler: str | None):
    """A client of an existing cluster (address or scheduler file), or of a new LocalCluster."""
    from dask.distributed import Client, LocalCluster

    # distributed sets its loggers up on import; keep its routine messages out of ours
    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    if scheduler:
        kwargs = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        with Client(**kwargs) as client:
            yield client
        return
    n_workers = workers or os.cpu_count() or 1
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as client:
        yield client
