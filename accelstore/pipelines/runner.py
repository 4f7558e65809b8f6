"""Running one function over many tasks: on a Dask cluster, or in this process.

Shared by the pipelines (ingest, features, pretext): the driver makes a client with
:func:`task_client`, submits with :func:`run_tasks`, takes results as they complete, and stays
the only metadata writer.

Errors, either way: an error that running the task again would only repeat
(:func:`is_deterministic`) is that task's failure at once; any other is retried; neither stops
the other tasks. A worker logs nothing of a task's error unless the root logger is at DEBUG: the
failure comes back as the task's :class:`TaskError`, which its driver reports.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from accelstore.errors import AccelstoreError, InputError

if TYPE_CHECKING:
    from dask.distributed import Client

log = logging.getLogger(__name__)

SYNCHRONOUS = "synchronous"
"""``scheduler`` value that runs every task in this process, one after another, without Dask."""

SCHEDULER_CONNECT_TIMEOUT = 10
"""Seconds to wait for an existing cluster's scheduler (``--scheduler``) to answer."""

MIN_IN_FLIGHT = 64
"""The fewest tasks :func:`run_task_batches` keeps on a cluster, whatever its size now."""

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class TaskError:
    """A task that raised a deterministic error, still raised after its retries, or whose worker died."""

    message: str


def is_deterministic(error: BaseException) -> bool:
    """Whether running the task again can only raise ``error`` again, so that it is never retried.

    Deterministic: :class:`~accelstore.errors.AccelstoreError` (a bad input, a damaged store, a
    held lease), :class:`~accelstore.readers.ReaderError` (a bad raw file), and ``ValueError`` and
    ``TypeError``: a task is a pure function of its arguments and the data it reads, and these say
    that the data or the code is wrong, never that the machine or the network hiccupped, so a
    retry would fail the same way after costing the same time again.

    Everything else is retried: ``OSError`` (a network file system or object store that failed
    for a moment, a full disk since cleaned), ``MemoryError`` (the memory of another task on the
    worker may be free now), a dead worker, and any exception we do not know (a storage client's
    own connection errors are not all ``OSError``).
    """
    from accelstore.readers import (
        ReaderError,  # imported here: the command line starts faster
    )

    return isinstance(error, (AccelstoreError, ReaderError, ValueError, TypeError))


@dataclass(frozen=True)
class _Failed:
    """What a worker returns instead of raising a deterministic error (which Dask would retry)."""

    message: str


@dataclass(frozen=True)
class _RetryOnlyTransient(Generic[TaskT, ResultT]):
    """``function``, returning a deterministic error as :class:`_Failed` instead of raising it.

    Dask retries a task whatever it raised; what this returns is a result, so it is not retried,
    and the worker logs no "Compute Failed" traceback for it. (It also never has to pickle the
    exception back: a ``ReaderError`` does not unpickle.)
    """

    function: Callable[[TaskT], ResultT]

    def __call__(self, task: TaskT) -> ResultT | _Failed:
        try:
            return self.function(task)
        except Exception as error:
            if is_deterministic(error):
                return _Failed(describe(error))
            raise


@contextmanager
def task_client(workers: int | None, scheduler: str | None, warm: Callable[[], None] | None = None) -> Iterator[Client | None]:
    """A client of :func:`dask_client`, or None for ``SYNCHRONOUS``.

    ``warm`` runs here first and then on every worker before its first task, the workers that
    join later included (:mod:`worker_warm`), so that workers load Numba's cache instead of racing
    to write it. (Here once the client is up: a ``--scheduler`` that cannot be used fails before
    the seconds of warming, and a LocalCluster's workers start meanwhile.)

    An existing cluster (``scheduler``) may have no worker yet, its jobs still queued: this waits
    for one for up to :func:`~accelstore.pipelines.clusters.worker_wait` seconds, and then raises
    :class:`~accelstore.errors.InputError`, rather than leave the tasks waiting for ever.
    """
    if scheduler == SYNCHRONOUS:
        if warm is not None:
            warm()
        yield None
        return
    with dask_client(workers, scheduler) as client:
        plugin = None
        if warm is not None:
            from accelstore.pipelines.worker_warm import WarmUp

            warm()
            plugin = f"accelstore-warm-{uuid.uuid4().hex}"  # a run's own: runs sharing a cluster do not replace each other's
            client.register_plugin(WarmUp(warm), name=plugin)
        if scheduler:
            from accelstore.pipelines.clusters import wait_for_a_worker

            wait_for_a_worker(client, f"--scheduler {scheduler}")
        yield client
        if plugin is not None and scheduler:  # a cluster that outlives the run keeps no plugin of ours
            client.unregister_worker_plugin(plugin)


def run_tasks(
    client: Client | None, function: Callable[[TaskT], ResultT], tasks: Iterable[TaskT], retries: int = 2
) -> Iterator[tuple[TaskT, ResultT | TaskError]]:
    """Run ``function`` on every task and yield ``(task, result)`` as each completes.

    With a client: one Dask task each, in completion order. Without (``SYNCHRONOUS``): in this
    process, in order. Either way a deterministic error (:func:`is_deterministic`) becomes that
    task's :class:`TaskError` at once, and any other exception does once it survives ``retries``
    retries, so one bad task never stops the others.
    """
    for batch in run_task_batches(client, function, tasks, retries):
        yield from batch


def run_task_batches(
    client: Client | None,
    function: Callable[[TaskT], ResultT],
    tasks: Iterable[TaskT],
    retries: int = 2,
    max_wait: float | None = None,
) -> Iterator[list[tuple[TaskT, ResultT | TaskError]]]:
    """:func:`run_tasks`, yielding every result that has completed as one list.

    ``max_wait``: seconds after which an empty list is yielded when nothing has completed, so that
    a caller applying results in groups can flush on time. With a client, the tasks are
    submitted in the order given as the earlier ones complete, keeping between half of
    :func:`in_flight_limit` and all of it on the cluster (bench/driver.py measures why).
    """
    if client is None:
        for task in tasks:
            yield [(task, _call_with_retries(function, task, retries))]
        return
    from dask.distributed import as_completed
    from dask.utils import funcname

    wrapped = _RetryOnlyTransient(function)
    prefix = funcname(function)  # keys named after the function, as Dask names them itself
    submitted: dict[str, TaskT] = {}
    completed = as_completed()
    waiting = iter(tasks)
    limit = _InFlightLimit(client)

    def submit_more() -> None:
        """Top up to the limit once half of it has completed: one message to the scheduler per top-up."""
        room = limit.now() - len(submitted)
        if room < len(submitted):
            return
        more = list(itertools.islice(waiting, room))
        if more:
            keys = [f"{prefix}-{uuid.uuid4().hex}" for _ in more]
            futures = client.map(wrapped, more, key=keys, retries=retries, pure=False)
            submitted.update(zip(keys, more))
            completed.update(futures)

    submit_more()
    while submitted:
        batch = [_outcome(submitted.pop(future.key), future) for future in _next_completed(completed, max_wait)]
        submit_more()
        if batch or max_wait is not None:
            yield batch


class _InFlightLimit:
    """:func:`in_flight_limit`, asked of the scheduler at most once a second (each ask is a round trip)."""

    def __init__(self, client: Client):
        self.client = client
        self.value, self.asked = 0, -math.inf

    def now(self) -> int:
        if time.monotonic() - self.asked >= 1.0:
            self.value, self.asked = in_flight_limit(self.client), time.monotonic()
        return self.value


def in_flight_limit(client: Client) -> int:
    """How many tasks to keep on the cluster: two per worker thread, at least :data:`MIN_IN_FLIGHT`.

    Counted again at every submission, so that a cluster that grows (jobs starting on an HPC
    queue, adaptive scaling) gets more. Enough to keep every thread busy while the driver takes
    results, few enough that the scheduler's and this process's memory do not grow with the
    cohort (100k tasks at once: bench/driver.py).
    """
    threads = sum(client.nthreads().values())
    return max(MIN_IN_FLIGHT, 2 * threads)


def _next_completed(completed, max_wait: float | None) -> list:
    """The futures that have completed, waiting for at least one for up to ``max_wait`` seconds."""
    if max_wait is None or completed.has_ready():
        return completed.next_batch(block=True)
    deadline = time.monotonic() + max_wait
    while not completed.has_ready():
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        with completed.thread_condition:  # notified by as_completed at each completion
            completed.thread_condition.wait(timeout=min(left, 0.1))
    return completed.next_batch(block=False)


def _outcome(task: TaskT, future) -> tuple[TaskT, ResultT | TaskError]:
    try:
        result = future.result()
    except Exception as error:
        result = TaskError(describe(error))
    if isinstance(result, _Failed):
        result = TaskError(result.message)
    return task, result


def _call_with_retries(function: Callable[[TaskT], ResultT], task: TaskT, retries: int) -> ResultT | TaskError:
    attempt = 0
    while True:
        try:
            return function(task)
        except Exception as error:
            if attempt == retries or is_deterministic(error):
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
    """A client of an existing cluster (address or scheduler file), or of a new LocalCluster.

    An existing cluster that cannot be used (no such scheduler file, not one, no answer within
    :data:`SCHEDULER_CONNECT_TIMEOUT` seconds) raises :class:`~accelstore.errors.InputError`.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    # distributed sets its loggers up on import; keep its routine messages out of ours
    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    if scheduler:
        address = scheduler_address(scheduler)  # checked to answer: Client would wait 30 s (forever for a missing file)
        with Client(address) as existing:
            yield existing
        return
    n_workers = workers or os.cpu_count() or 1
    # distributed starts workers with glibc's trim threshold at 64 KiB, which also fixes its mmap
    # threshold: every array over 128 KiB is then fresh pages from the kernel, faulted in anew
    # for every file (1.4 GB per week-long recording, a third of the processing time). Our
    # workers reuse their memory instead; it stays bounded by the largest recording.
    unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    # One task at a time on each worker, the others kept on the scheduler: when a worker dies (a
    # recording too big for its memory), Dask blames every task it held, and a task sent ahead to
    # it could fail with the one that killed it. A task takes seconds, so sending ahead gains nothing.
    one_task_each = {"distributed.scheduler.worker-saturation": 1.0}
    # The workers' own log handlers: a task's error comes back as its TaskError, so "Compute
    # Failed" and its traceback stay out of the terminal unless -v asked for debug messages.
    worker_logs = logging.WARNING if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else logging.CRITICAL
    with dask.config.set({**unset_trim, **one_task_each}), LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=worker_logs
    ) as cluster, Client(cluster) as local:
        from accelstore.pipelines.worker_exit import ExitWithoutCollecting

        local.register_plugin(ExitWithoutCollecting(), name="accelstore-exit-without-collecting")
        yield local


def scheduler_address(scheduler: str) -> str:
    """The address of the scheduler that ``--scheduler`` names, checked to answer.

    ``scheduler``: an address (``tcp://host:8786``) or a scheduler file (``.json``, as written by
    ``dask scheduler --scheduler-file``; read here rather than waited for, as distributed would).
    """
    given = f"--scheduler {scheduler}"
    if scheduler.endswith(".json"):
        try:
            text = Path(scheduler).read_text()
        except FileNotFoundError:
            raise InputError(f"{given}: no such scheduler file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{given}: cannot read the scheduler file: {getattr(error, 'strerror', None) or error}") from None
        try:
            address = json.loads(text)["address"]
        except (ValueError, TypeError, KeyError):
            address = None
        if not isinstance(address, str) or not address:
            raise InputError(f"{given}: not a Dask scheduler file (no scheduler address in it)")
    else:
        address, given = scheduler, "--scheduler"
    from distributed.comm import connect
    from distributed.security import Security

    connection_args = Security().get_connection_args("client")  # tls:// certificates from the Dask configuration, as Client's

    async def probe() -> None:
        comm = await connect(address, timeout=SCHEDULER_CONNECT_TIMEOUT, **connection_args)
        await comm.close()

    # in a thread of its own: asyncio.run needs a thread without a running event loop
    with ThreadPoolExecutor(1, thread_name_prefix="accelstore-probe") as pool:
        try:
            pool.submit(asyncio.run, probe()).result()
        except ValueError as error:  # distributed's parse of the address
            raise InputError(f"{given}: not a scheduler address or .json scheduler file: {error}") from None
        except (TimeoutError, OSError):
            raise InputError(f"{given}: could not connect to {address} within {SCHEDULER_CONNECT_TIMEOUT} s") from None
    return address
