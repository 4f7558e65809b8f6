"""Dask clusters whose workers are batch jobs (dask-jobqueue): SLURM, PBS, SGE, LSF.

``accelstore ingest … --cluster slurm`` (and every Dask command) starts a Dask scheduler in this
process, submits jobs that each start Dask workers on a compute node, and runs the pipeline on
that cluster, passing it the scheduler's address as ``--scheduler`` would. What a job asks for
comes from the user's Dask configuration, dask-jobqueue's keys ``jobqueue.<kind>.*``
(``~/.config/dask/jobqueue.yaml``, or ``DASK_JOBQUEUE__SLURM__QUEUE=…`` in the environment):
``cores`` and ``memory`` (required: per job), ``processes`` (workers per job; here one per core
unless configured, single-threaded as the local cluster's), ``queue``, ``account`` (``project``
on SGE and LSF), ``walltime``, ``job-extra-directives``, ``job-script-prologue`` (e.g. activating
the environment on the node), ``log-directory``, ``interface``.

``local`` runs the same job scripts as processes on this machine (dask-jobqueue's own runner, made
for its tests): a way to try a configuration end to end on a few files before queueing jobs, and
what the tests run where no batch system is installed.

Jobs start when the queue lets them: :func:`job_cluster` returns once the first worker has
joined (up to :func:`worker_wait` seconds), and the workers that join later are warmed up as
they join (:mod:`worker_warm`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from accelstore.errors import InputError

if TYPE_CHECKING:
    from dask.distributed import Client
    from dask_jobqueue.core import Job, JobQueueCluster

log = logging.getLogger(__name__)

KINDS = {
    "slurm": "dask_jobqueue.slurm.SLURMCluster",
    "pbs": "dask_jobqueue.pbs.PBSCluster",
    "sge": "dask_jobqueue.sge.SGECluster",
    "lsf": "dask_jobqueue.lsf.LSFCluster",
    "local": "dask_jobqueue.local.LocalCluster",
}
"""``--cluster`` kinds, each a dask-jobqueue cluster class (its configuration: ``jobqueue.<kind>``)."""

SCHEDULER_PLACEHOLDER = "tcp://<scheduler-address>:<port>"
"""Where :func:`job_script` puts the scheduler's address, known only once a scheduler runs."""

WORKER_WAIT_KEY = "accelstore.wait-for-workers"
"""The Dask configuration key (seconds, or a duration such as ``"2 hours"``) of :func:`worker_wait`."""

WORKER_WAIT = 600
"""Seconds to wait for a cluster's first worker when the Dask configuration does not say."""


def worker_wait() -> float:
    """How long to wait for the first worker of a cluster whose workers are batch jobs, seconds:
    the Dask configuration's ``accelstore.wait-for-workers`` (``--wait-for-workers``), else
    :data:`WORKER_WAIT`. An HPC queue may hold jobs for hours; the wait is bounded so that a run
    whose jobs never start ends with an error instead of waiting for ever."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get(WORKER_WAIT_KEY, WORKER_WAIT)
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (ValueError, TypeError, KeyError):
        seconds = None
    if seconds is None or seconds <= 0:
        raise InputError(f"{WORKER_WAIT_KEY} in the Dask configuration: {value!r} is not a positive duration (seconds, or e.g. '2 hours')")
    return seconds


def wait_for_a_worker(client: Client, what: str) -> None:
    """Return once ``client``'s cluster has a worker; after :func:`worker_wait` seconds without one,
    raise :class:`~accelstore.errors.InputError` naming ``what`` (the cluster, as the user gave it)."""
    seconds = worker_wait()
    if client.nthreads():
        return
    log.info("%s: no worker yet; waiting up to %g s for one (jobs still queued?)", what, seconds)
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError:
        raise InputError(f"{what}: no worker joined within {seconds:g} s (raise --wait-for-workers, or see the queue and the workers' logs for why)") from None


@dataclass(frozen=True)
class ClusterConfig:
    """Where a pipeline's Dask tasks run: a new local cluster (``workers``), an existing cluster
    (``scheduler``), or batch jobs (``cluster``, ``jobs``, ``adaptive``). The options of every
    command that runs Dask tasks (:func:`accelstore.cli.options.dask_options`), checked together
    here: a combination that means nothing raises :class:`~accelstore.errors.InputError`."""

    workers: int | None = field(default=None, metadata={
        "help": "Worker processes of the local cluster (one thread each). Default: one per core.", "min": 1})
    scheduler: str | None = field(default=None, metadata={
        "help": "Use an existing Dask cluster: a scheduler address (tcp://host:8786) or a scheduler file (.json); "
                "'synchronous' runs every task in this process."})
    cluster: str | None = field(default=None, metadata={
        "help": "Run on Dask workers started as batch jobs (dask-jobqueue): slurm, pbs, sge or lsf; 'local' runs the same job "
                "scripts as processes on this machine, to try a configuration on a few files. Each job's resources come from the "
                "Dask configuration, jobqueue.KIND.*: cores and memory (required), queue, account (SGE, LSF: project), walltime, "
                "processes (workers per job; default one per core), job-script-prologue, log-directory. Not with --scheduler or --workers.",
        "choices": tuple(KINDS)})
    jobs: int | None = field(default=None, metadata={
        "help": "With --cluster: how many jobs to submit (default 1); with --adaptive, the most jobs at once.", "min": 1})
    adaptive: bool = field(default=False, metadata={
        "help": "With --cluster and --jobs: keep one job, submit more (up to --jobs) while tasks wait, and end jobs left idle."})
    dry_run: bool = field(default=False, metadata={
        "help": "With --cluster: print the job script it would submit (the scheduler's address left as a placeholder) and exit, "
                "submitting and running nothing."})
    wait_for_workers: float | None = field(default=None, metadata={
        "help": "With --cluster or --scheduler: seconds to wait for the first worker (jobs may sit in the queue) before giving up "
                f"with an error. Default: the Dask configuration's {WORKER_WAIT_KEY}, else {WORKER_WAIT}.",
        "min": 0, "min_open": True})

    def __post_init__(self) -> None:
        if self.cluster is None:
            given = [name for name, value in (("--jobs", self.jobs), ("--adaptive", self.adaptive), ("--dry-run", self.dry_run)) if value]
            if given:
                raise InputError(f"{given[0]} needs --cluster (it is about batch jobs)")
            if self.wait_for_workers is not None and self.scheduler is None:
                raise InputError("--wait-for-workers needs --cluster or --scheduler: the local cluster's workers are there at once")
            return
        if self.cluster not in KINDS:
            raise InputError(f"--cluster {self.cluster}: not a cluster kind; choose from {', '.join(KINDS)}")
        if self.scheduler is not None:
            raise InputError("--cluster starts a cluster of its own: give --cluster or --scheduler, not both")
        if self.workers is not None:
            raise InputError(f"--workers sizes the local cluster: with --cluster the workers are --jobs times jobqueue.{self.cluster}.processes")
        if self.adaptive and self.jobs is None:
            raise InputError("--adaptive needs --jobs N: the most jobs to scale up to")

    @contextmanager
    def scheduler_of_run(self) -> Iterator[str | None]:
        """The ``scheduler`` to give a pipeline for the block: ``scheduler`` as given, or the
        address of a batch-job cluster (:func:`job_cluster`) started for it and ended after it."""
        import dask

        waiting = {WORKER_WAIT_KEY: self.wait_for_workers} if self.wait_for_workers is not None else {}
        with dask.config.set(waiting), contextlib.ExitStack() as stack:
            if self.cluster is None:
                yield self.scheduler
            else:
                yield stack.enter_context(job_cluster(self.cluster, self.jobs or 1, adaptive=self.adaptive)).scheduler_address


def job_script(kind: str) -> str:
    """The job script ``kind``'s cluster would submit, from the Dask configuration.

    Starts no scheduler and submits nothing; needs no batch system installed (``--dry-run``).
    """
    cluster_class = _cluster_class(kind)
    options = _job_options(kind)
    with _usable_configuration(kind):
        job: Job = cluster_class.job_cls(SCHEDULER_PLACEHOLDER, name="dummy-name", **options)
        return job.job_script()


@contextmanager
def job_cluster(kind: str, jobs: int = 1, adaptive: bool = False) -> Iterator[JobQueueCluster]:
    """A running dask-jobqueue cluster of ``kind`` with at least one worker.

    ``jobs``: the jobs to submit; with ``adaptive``, the most jobs, from one kept always, scaled
    by the tasks waiting (dask's Adaptive; idle jobs are ended). Yields once the first worker
    has joined; raises :class:`~accelstore.errors.InputError` for an unknown kind, a Dask
    configuration without what a job needs, a batch system whose commands are not on ``PATH``,
    a submission the batch system refuses, and no worker within
    :func:`worker_wait` seconds. Its jobs end with the block.
    """
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: need at least one job")
    cluster_class = _cluster_class(kind)
    options = _job_options(kind)
    _check_commands(kind, cluster_class.job_cls)
    from dask.distributed import Client

    from accelstore.pipelines.worker_exit import ExitWithoutCollecting

    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    refusals = _Refusals(kind)
    with _usable_configuration(kind):
        cluster = cluster_class(job_cls=_reporting_refusals(cluster_class.job_cls, refusals), **options)
    with cluster, Client(cluster) as client:
        # registered with the scheduler before any job starts, so every worker sets it up as it joins
        client.register_plugin(ExitWithoutCollecting(), name="accelstore-exit-without-collecting")
        first = 1 if adaptive else jobs
        cluster.scale(jobs=first)
        # Until the submissions that scale() scheduled are done: distributed's SpecCluster corrects
        # its state under a lock, so this returns after them (for local, once the workers registered).
        cluster.sync(cluster._correct_state)
        if refusals.reasons:
            raise InputError(f"--cluster {kind}: the job was not submitted: {refusals.reasons[0]}")
        refusals.started = True
        if adaptive:
            cluster.adapt(minimum_jobs=1, maximum_jobs=jobs)
        log.info("--cluster %s: %d job(s) submitted%s; scheduler at %s", kind, first, f", up to {jobs} as tasks wait" if adaptive else "",
                 cluster.scheduler_address)
        wait_for_a_worker(client, f"--cluster {kind}")
        yield cluster


@dataclass
class _Refusals:
    """Why jobs of a cluster were not submitted: the first ones' reasons end the run; later ones
    (adaptive scaling) are logged as warnings while the run goes on with the workers it has."""

    kind: str
    reasons: list[str] = field(default_factory=list)
    started: bool = False

    def add(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.started:
            log.warning("--cluster %s: a job was not submitted: %s", self.kind, reason)


def _reporting_refusals(job_class: type[Job], refusals: _Refusals) -> type[Job]:
    """``job_class``, whose jobs that cannot be submitted give ``refusals`` the reason.

    dask-jobqueue submits in the background (``scale``), where an exception (sbatch's refusal of
    an unknown partition, a local job whose worker did not start) would only be logged by the
    event loop, as a traceback, while the run waited for workers that never come.
    A refused job stays in the cluster's books as asked for (SpecCluster requires a started job
    to be running) and never joins; having no job id, it has nothing to cancel either.
    """
    from distributed.core import Status

    class ReportingRefusals(job_class):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as error:  # what the batch system's command, or the local runner, raised
                text = str(error)
                refusals.add(" ".join((text.partition("stderr:")[2] or text).split()) or type(error).__name__)
                self.status = Status.running

        async def close(self) -> None:
            if self.job_id is not None:  # a job never submitted has nothing to cancel
                await super().close()

    return ReportingRefusals


def _cluster_class(kind: str) -> type[JobQueueCluster]:
    if kind not in KINDS:
        raise InputError(f"--cluster {kind}: not a cluster kind; choose from {', '.join(KINDS)}")
    module, _, name = KINDS[kind].rpartition(".")
    logging.getLogger("dask_jobqueue").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    return getattr(importlib.import_module(module), name)


def _job_options(kind: str) -> dict[str, int]:
    """What the Dask configuration must say for a job of ``kind``, checked; the options we add.

    dask-jobqueue needs each job's cores and memory and refuses a cluster without them in a
    message of several lines written for Python code; this names the configuration keys instead.
    Workers per job (``processes``): one per core unless configured, as the local cluster's
    single-threaded workers (dask-jobqueue's own default is about √cores processes).
    """
    import dask

    section = f"jobqueue.{kind}"
    missing = [f"{section}.{key}" for key in ("cores", "memory") if dask.config.get(f"{section}.{key}", None) is None]
    if missing:
        raise InputError(f"--cluster {kind}: the Dask configuration has no {' and no '.join(missing)} "
                         f"(each job's cores and memory: set them in ~/.config/dask/jobqueue.yaml or as DASK_JOBQUEUE__{kind.upper()}__CORES=…)")
    if dask.config.get(f"{section}.processes", None) is None:
        return {"processes": int(dask.config.get(f"{section}.cores"))}
    return {}


@contextmanager
def _usable_configuration(kind: str) -> Iterator[None]:
    """dask-jobqueue's refusals of a configuration (a memory it cannot parse, an unknown option)
    as one line naming the configuration section."""
    try:
        yield
    except (ValueError, TypeError, KeyError) as error:
        reason = " ".join(str(error).split())
        raise InputError(f"--cluster {kind}: the Dask configuration jobqueue.{kind} cannot be used: {reason}") from None


def _check_commands(kind: str, job_class: type[Job]) -> None:
    """The batch system's submit and cancel commands are on ``PATH`` (none for ``local``).

    Checked before a scheduler starts, with a message that says where to run instead (a missing
    cancel command would otherwise surface only when the jobs are to end).
    """
    commands = [command for command in (job_class.submit_command, job_class.cancel_command) if command]
    missing = [name for name in (shlex.split(command)[0] for command in commands) if shutil.which(name) is None]
    if missing:
        raise InputError(f"--cluster {kind}: {' and '.join(missing)} not found on PATH (run on a machine that submits {kind} jobs, "
                         "e.g. a login node; --dry-run prints the job script without them)")

