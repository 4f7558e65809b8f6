"""Running one function over many tasks: on a Dask cluster, or in this process.

Shared by the pipelines (ingest, features, pretext): the driver makes a client with
:func:`task_client`, submits with :func:`run_tasks`, takes results as they complete, and stays
the only metadata writer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from dask.distributed import Client

log = logging.getLogger(__name__)

SYNCHRONOUS = "synchronous"
"""``scheduler`` value that runs every task in this process, one after another, without Dask."""

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class TaskError:
    """A task that still raised after its retries, or whose worker died."""

    message: str


@contextmanager
def task_client(workers: int | None, scheduler: str | None, warm: Callable[[], None] | None = None) -> Iterator[Client | None]:
    """A client of :func:`dask_client`, or None for ``SYNCHRONOUS``.

    ``warm`` runs here first and then once on every worker, so that workers load Numba's cache
    instead of racing to write it.
    """
    if warm is not None:
        warm()
    if scheduler == SYNCHRONOUS:
        yield None
        return
    with dask_client(workers, scheduler) as client:
        if warm is not None:
            client.run(warm)
        yield client


def run_tasks(
    client: Client | None, function: Callable[[TaskT], ResultT], tasks: Iterable[TaskT], retries: int = 2
) -> Iterator[tuple[TaskT, ResultT | TaskError]]:
    """Run ``function`` on every task and yield ``(task, result)`` as each completes.

    With a client: one Dask task each, in completion order. Without (``SYNCHRONOUS``): in this
    process, in order. Either way an exception that survives ``retries`` becomes a
    :class:`TaskError`, so one bad task never stops the others.
    """
    if client is None:
        for task in tasks:
            yield task, _call_with_retries(function, task, retries)
        return
    from dask.distributed import as_completed

    submitted: dict[str, TaskT] = {}
    completed = as_completed()
    for task in tasks:
        future = client.submit(function, task, retries=retries, pure=False)
        submitted[future.key] = task
        completed.add(future)
    for future in completed:
        task = submitted.pop(future.key)
        try:
            result = future.result()
        except Exception as error:  # noqa: BLE001 — a task's error (or its worker's death) is that task's failure
            result = TaskError(describe(error))
        yield task, result


def _call_with_retries(function: Callable[[TaskT], ResultT], task: TaskT, retries: int) -> ResultT | TaskError:
    attempt = 0
    while True:
        try:
            return function(task)
        except Exception as error:  # noqa: BLE001 — as on a cluster: retried, then that task's failure
            if attempt == retries:
                return TaskError(describe(error))
            attempt += 1
            log.debug("retrying %r after %s", task, describe(error))


def describe(error: BaseException) -> str:
    """An exception as one line: its type and message."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "participant"):
    """A tqdm bar (imported here: the command line starts faster without it)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=not enabled)


def absolute(store: str) -> str:
    """A local store path made absolute (workers may run elsewhere); URLs unchanged."""
    return store if "://" in store else str(Path(store).resolve())


@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Client]:
    """A client of an existing cluster (address or scheduler file), or of a new LocalCluster."""
    import dask
    from dask.distributed import Client, LocalCluster

    # distributed sets its loggers up on import; keep its routine messages out of ours
    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    if scheduler:
        kwargs = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        with Client(**kwargs) as existing:
            yield existing
        return
    n_workers = workers or os.cpu_count() or 1
    # distributed starts workers with glibc's trim threshold at 64 KiB, which also fixes its mmap
    # threshold: every array over 128 KiB is then fresh pages from the kernel, faulted in anew
    # for every file (1.4 GB per week-long recording, a third of the processing time). Our
    # workers reuse their memory instead; it stays bounded by the largest recording.
    unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(unset_trim), LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as local:
        yield local
