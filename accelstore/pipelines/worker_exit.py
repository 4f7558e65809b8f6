"""A worker plugin of ingest's own LocalCluster: workers that exit at once when closed.

Python's finalisation runs the cyclic garbage collector over the whole heap several times. An
ingest worker's heap (Numba's compiled kernels and their types, distributed, zarr, pandas: a few
hundred thousand objects) took 1–2.5 s of CPU for it, more on a busy machine, while the nanny
kills a worker that has not exited 4 s after being asked to close: "Worker process still alive
after 4.0 seconds, killing", once per worker at the end of every run. Freezing the heap at exit
(``gc.freeze``: the collector skips frozen objects) leaves those collections nothing to do; the
objects go with the process. Nothing is lost: no finaliser of ours writes data, a task's writes
are complete when it returns, and Python never promised to run the finalisers of what is left at
exit anyway.

Only for workers that accelstore starts itself; a cluster of one's own (``--scheduler``) is left
alone. A module of its own, so that the command line does not import distributed to start.
"""

from __future__ import annotations

import atexit
import gc

from distributed.diagnostics.plugin import WorkerPlugin


def _freeze_heap() -> None:
    gc.freeze()


class ExitWithoutCollecting(WorkerPlugin):
    """Registers, in every worker process (restarted ones too), :func:`gc.freeze` to run at exit."""

    def setup(self, worker) -> None:
        atexit.unregister(_freeze_heap)  # once per process, however often the plugin is set up
        atexit.register(_freeze_heap)
