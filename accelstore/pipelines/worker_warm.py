"""A worker plugin that prepares every worker of a run for its tasks, those that join late too.

A run's ``warm`` (compile or load the Numba kernels its tasks call, :func:`runner.task_client`)
must run on each worker before its first task: otherwise the workers' first tasks all compile
the same kernels at once and race to write Numba's cache. On a batch-job cluster
(``--cluster``, or ``--scheduler`` of one) workers join whenever the queue starts their jobs, and
adaptive scaling adds and removes them during the run, so running ``warm`` once on the workers
present at the start is not enough. A worker sets its plugins up when it registers, before it
runs any task, and the scheduler hands the plugins registered so far to every worker that joins.

A module of its own, as :mod:`worker_exit`: the command line does not import distributed to start.
"""

from __future__ import annotations

from collections.abc import Callable

from distributed.diagnostics.plugin import WorkerPlugin


class WarmUp(WorkerPlugin):
    """Runs ``warm`` (a module-level function, pickled by reference) in each worker as it joins,
    or at once in those already there when the plugin is registered."""

    def __init__(self, warm: Callable[[], None]) -> None:
        self.warm = warm

    def setup(self, worker) -> None:
        # In the worker's event loop, as Client.run ran it: the worker takes no task until it returns.
        self.warm()
