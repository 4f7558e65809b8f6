"""Prove a store whole: every complete participant's chunks decode and agree with the table.

Checked, for each complete participant (one task each, through Dask or in this process):

- every chunk of its per-window arrays and of each recorded day of ``acc`` decodes and passes its
  CRC32C checksum;
- each day with valid windows has its ``acc`` (a valid window never holds an absent sample) and
  invalid windows hold none;
- ``std`` is finite in valid windows; no valid window lies outside the recording;
- the day summary and the table's ``valid_windows`` equal what ``valid`` and ``std`` give.

And once for the store: every table and day-summary chunk is there and decodes. Damaged
participants are marked :data:`~accelstore.store.Status.DAMAGED` (invisible to readers), with the
finding recorded against their source, so that the next ``ingest`` redoes them from that source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from accelstore.errors import StoreDamageError
from accelstore.grid import ACC_FILL
from accelstore.pipelines.runner import (
    TaskError,
    absolute,
    progress_bar,
    run_tasks,
    task_client,
)
from accelstore.store import (
    Status,
    check_days,
    check_present,
    day_span,
    open_store,
    recorded_days,
    store_writer,
    summarise_days,
    window_arrays_of,
)

__all__ = ["VerifyReport", "verify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyTask:
    store: str
    participant: str
    row: int
    first_window: int
    n_windows: int
    valid_windows: int  # the table's
    day_valid_windows: np.ndarray
    day_std_sum: np.ndarray


def verify_participant(task: VerifyTask) -> list[str]:
    """What is wrong with one participant's data (nothing: an empty list)."""
    where = f"participant {task.participant!r}"
    try:
        store = open_store(task.store)
        width = store.shape[1]
        rows = {spec.name: store.window_values(task.row, spec.name, slice(0, width), where) for spec in window_arrays_of(store.arrays)}
    except StoreDamageError as error:
        return [str(error)]
    valid, std = rows["valid"], rows["std"]
    problems = []
    days = recorded_days(task.first_window, task.n_windows)
    outside = np.ones(width, dtype=bool)
    for day in days:
        span = day_span(day)
        outside[span] = False
        try:
            acc = store.window_values(task.row, "acc", span, f"{where}, day {day}")
            check_present(where, valid[span], acc, span.start)
        except StoreDamageError as error:
            problems.append(str(error))
            continue
        if ((acc != ACC_FILL).any(axis=(1, 2)) & ~valid[span]).any():
            problems.append(f"{where}, day {day}: invalid windows hold acceleration (a damaged 'valid' chunk)")
    if (valid & outside).any():
        problems.append(f"{where}: valid windows outside the recording's days (a damaged 'valid' chunk)")
    if not np.isfinite(std[valid]).all():
        problems.append(f"{where}: 'std' is missing in valid windows (a lost or damaged 'std' chunk)")
    try:
        check_days(where, valid, task.day_valid_windows, 0)
    except StoreDamageError as error:
        problems.append(str(error))
    day_valid, day_std = summarise_days(valid, std)
    if not np.array_equal(day_std, task.day_std_sum) and np.array_equal(day_valid, task.day_valid_windows):
        problems.append(f"{where}: the day summary's std sums disagree with 'std'")
    if int(day_valid.sum()) != task.valid_windows:
        problems.append(f"{where}: the table says {task.valid_windows} valid windows, 'valid' holds {int(day_valid.sum())}")
    return problems


@dataclass
class VerifyReport:
    store: str
    checked: list[str] = field(default_factory=list)
    damaged: dict[str, list[str]] = field(default_factory=dict)  # participant → what is wrong
    store_damage: list[str] = field(default_factory=list)  # the table or day summaries
    marked: bool = False  # damaged participants were marked for ingest to redo

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.store_damage


def verify(
    store_path: str,
    participants: Sequence[str] | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    mark: bool = True,
    break_lease: bool = False,
    progress: bool = True,
) -> VerifyReport:
    """Check every complete participant of ``store_path`` (or ``participants``) and the table.

    ``mark``: take the writer lease and mark damaged participants for the next ingest to redo.
    """
    store_path = absolute(store_path)
    report = VerifyReport(store_path)
    try:
        store = open_store(store_path)
        selected = store.select(participants).sort_values("row")  # reads, and checks, the whole table
        day_valid = store.day_summary("day_valid_windows")
        day_std = store.day_summary("day_std_sum")
    except StoreDamageError as error:
        report.store_damage.append(str(error))
        log.error("%s", error)
        return report
    tasks = [
        VerifyTask(
            store_path, str(pid), int(info["row"]), int(info["first_window"]), int(info["n_windows"]),
            int(info["valid_windows"]), day_valid[int(info["row"])], day_std[int(info["row"])],
        )
        for pid, info in selected.iterrows()
    ]
    with task_client(workers, scheduler) as client, progress_bar(len(tasks), "verify", progress) as bar:
        for task, result in run_tasks(client, verify_participant, tasks, retries=1):
            bar.update()
            report.checked.append(task.participant)
            problems = [f"participant {task.participant!r}: {result.message}"] if isinstance(result, TaskError) else result
            if problems:
                report.damaged[task.participant] = problems
                for problem in problems:
                    log.error("%s: %s", store_path, problem)
    if mark and report.damaged:
        _mark_damaged(store_path, {task.participant: (task.row, str(selected.at[task.participant, "source"])) for task in tasks}, report, break_lease)
    log.info("verify %s: %d participant(s) checked, %d damaged", store_path, len(report.checked), len(report.damaged))
    return report


def _mark_damaged(store_path: str, rows: dict[str, tuple[int, str]], report: VerifyReport, break_lease: bool) -> None:
    """Damaged participants become invisible, with the finding recorded against their source.

    ``rows``: each checked participant's row and source.
    """
    with store_writer(store_path, "verify", break_lease=break_lease) as writer:
        for pid, problems in report.damaged.items():
            writer.failures.record(rows[pid][1], {"id": pid, "error": "damaged", "message": f"{store_path}: {problems[0]} (found by verify; ingest redoes it)"})
        writer.set_rows(np.array([rows[pid][0] for pid in report.damaged], dtype=np.int64), status=Status.DAMAGED)
        writer.flush_failures()
    report.marked = True
