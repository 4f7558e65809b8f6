"""run_tasks on a real LocalCluster: a task whose worker process dies is that task's failure only."""

from __future__ import annotations

import os

from accelstore.pipelines.runner import TaskError, dask_client, run_tasks

DOOMED = 3


def _square_or_die(n: int) -> int:
    """n², except that task DOOMED ends its worker process, as the kernel's OOM killer would."""
    if n == DOOMED:
        os._exit(1)
    return n * n


def test_a_task_whose_worker_dies_fails_alone():
    with dask_client(2, None) as client:
        results = dict(run_tasks(client, _square_or_die, range(6), retries=0))
    assert sorted(results) == list(range(6))
    assert {n: r for n, r in results.items() if n != DOOMED} == {n: n * n for n in range(6) if n != DOOMED}
    failure = results[DOOMED]
    assert isinstance(failure, TaskError) and failure.message.startswith("KilledWorker")
