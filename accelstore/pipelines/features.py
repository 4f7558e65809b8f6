"""Recompute the per-window features (``valid``, ``std``, ``enmo``) and the day summary from ``acc``.

One Dask task per participant reads that participant's recorded days of ``acc``, computes the
features with the same kernel as ingest, and rewrites the participant's whole rows (one writer
per shard, docs/architecture.md, "The store's rules") only where they differ from what is stored. The driver, the one metadata
writer, then updates the day summary and the table's ``valid_windows``. Running it again changes
nothing, so it is safe to repeat after an interrupted run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from accelstore.grid import ACC_FILL
from accelstore.kernels.resample import warm_up, window_stats
from accelstore.pipelines.runner import (
    TaskError,
    absolute,
    progress_bar,
    run_tasks,
    task_client,
)
from accelstore.store import (
    WINDOW_ARRAYS,
    ParticipantWriter,
    day_span,
    open_store,
    read_day_summary,
    recorded_days,
    store_writer,
    summarise_days,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the worker's task


@dataclass(frozen=True)
class FeatureTask:
    store: str
    participant: str
    row: int
    first_window: int
    n_windows: int


@dataclass
class FeatureResult:
    rewritten: bool  # the stored per-window rows differed and were replaced
    day_valid_windows: np.ndarray
    day_std_sum: np.ndarray
    stored_bytes: int  # of the row's shards, after any rewrite


def recompute_participant(task: FeatureTask) -> FeatureResult:
    """Features of one participant from its ``acc``; its rows are rewritten only if they changed."""
    writer = ParticipantWriter(task.store, task.row)
    rows = {spec.name: np.full(writer.n_windows, spec.fill, dtype=spec.dtype) for spec in WINDOW_ARRAYS}
    for day in recorded_days(task.first_window, task.n_windows):
        span = day_span(day)
        acc = writer.read_day(day)
        valid = (acc != ACC_FILL).all(axis=(1, 2))  # ingest fills every sample of an invalid window
        rows["valid"][span] = valid
        rows["std"][span], rows["enmo"][span] = window_stats(acc, valid)
    stored = writer.read_windows()
    rewritten = not all(np.array_equal(rows[name], stored[name], equal_nan=rows[name].dtype.kind == "f") for name in rows)
    if rewritten:
        writer.write_windows(**rows)
    return FeatureResult(rewritten, *summarise_days(rows["valid"], rows["std"]), writer.stored_bytes())


# ---------------------------------------------------------------- the driver


@dataclass
class FeaturesReport:
    store: str
    recomputed: list[str] = field(default_factory=list)  # every participant whose task succeeded
    changed: list[str] = field(default_factory=list)  # those whose stored features or day summary differed
    failed: dict[str, str] = field(default_factory=dict)  # participant → error

    @property
    def ok(self) -> bool:
        return not self.failed


def recompute(
    store_path: str,
    participants: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 2,
    progress: bool = True,
    break_lease: bool = False,
) -> FeaturesReport:
    """Recompute ``valid``, ``std``, ``enmo`` and the day summary of ``participants`` (default: all).

    ``scheduler``: an existing cluster's address or scheduler file, or ``"synchronous"`` to run
    every task in this process; default a LocalCluster of ``workers`` processes.
    """
    store_path = absolute(store_path)
    table = open_store(store_path).select(participants)
    tasks = [
        FeatureTask(store_path, str(pid), int(info["row"]), int(info["first_window"]), int(info["n_windows"]))
        for pid, info in table.iterrows()
    ]
    stored_valid_windows = dict(zip(table.index, table["valid_windows"].astype(int)))
    report = FeaturesReport(store_path)
    log.info("recomputing features of %d participant(s) in %s", len(tasks), store_path)
    with store_writer(store_path, "features", break_lease=break_lease) as writer:
        shape = (writer.n_participants, writer.n_windows)
        day_valid = read_day_summary(writer.arrays, "day_valid_windows", slice(None), shape, store_path)
        day_std = read_day_summary(writer.arrays, "day_std_sum", slice(None), shape, store_path)
        with task_client(workers, scheduler, warm=warm_up) as client, progress_bar(len(tasks), "features", progress) as bar:
            for task, result in run_tasks(client, recompute_participant, tasks, retries):
                bar.update()
                if isinstance(result, TaskError):
                    report.failed[task.participant] = result.message
                    log.warning("features of %s failed: %s", task.participant, result.message)
                    continue
                report.recomputed.append(task.participant)
                summary_changed = not (
                    np.array_equal(day_valid[task.row], result.day_valid_windows)
                    and np.array_equal(day_std[task.row], result.day_std_sum)
                    and stored_valid_windows[task.participant] == int(result.day_valid_windows.sum())
                )
                row = np.array([task.row])
                if summary_changed:
                    writer.write_day_summaries(row, result.day_valid_windows[None], result.day_std_sum[None])
                    writer.set_rows(row, valid_windows=int(result.day_valid_windows.sum()))
                if result.rewritten:
                    writer.set_rows(row, stored_bytes=result.stored_bytes)
                if result.rewritten or summary_changed:
                    report.changed.append(task.participant)
    log.info(
        "features of %s: %d recomputed, %d changed, %d failed",
        store_path, len(report.recomputed), len(report.changed), len(report.failed),
    )
    return report
