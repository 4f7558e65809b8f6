"""Dask commands on batch-job clusters (``--cluster``, dask-jobqueue), for real.

Everywhere: the job scripts of SLURM, PBS, SGE and LSF (``--dry-run`` needs no batch system),
every refusal, and real runs on ``--cluster local``: dask-jobqueue's own job runner, which runs
each job script as a process here, so the workers are the ones a job script starts, from the
same Dask configuration, joined to the scheduler of the command. Where SLURM's daemons are
installed (Debian: slurmctld, slurmd, slurm-client, munge), one test also starts a one-node SLURM
of its own (munged, slurmctld, slurmd as its processes) and ingests through sbatch'd jobs.

The Dask configuration is set in this process (the commands run in it through CliRunner).
dask-jobqueue is imported first: its defaults enter the configuration on import, and a
``dask.config.set`` made before would remove them again on exit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import dask
import dask_jobqueue  # noqa: F401  (its defaults into the Dask configuration, before any dask.config.set)
import psutil
import pytest
from dask.distributed import LocalCluster

from accelstore import open_store
from accelstore.cli import main
from accelstore.kernels import resample
from accelstore.pipelines.clusters import SCHEDULER_PLACEHOLDER, ClusterConfig, job_cluster
from accelstore.pipelines.runner import task_client
from helpers import assert_help_explains, run_cli, time_limit, write_csv

DASK_COMMANDS = ("ingest", "verify", "features", "pretext")
WORKER_COMMAND = f"{sys.executable} -m distributed.cli.dask_worker {SCHEDULER_PLACEHOLDER}"
# Preloaded into every worker the jobs start: one file per worker, its pid and SLURM job id.
MARKER = """\
import os
from pathlib import Path


def dask_setup(worker):
    Path({folder!r}, worker.name).write_text(f"{{os.getpid()}} {{os.environ.get('SLURM_JOB_ID', '')}}")
"""


def raw_csvs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        write_csv(folder / f"S{i}.csv", f"2024-05-{i + 1:02d} 09:00:00", f"2024-05-{i + 1:02d} 09:02:00")
    return folder


def assert_ingested(store: Path, n: int) -> None:
    opened = open_store(str(store))
    assert sorted(opened.participants.index) == [f"S{i}" for i in range(n)]
    assert int(opened.participants["valid_windows"].min()) >= 11  # two minutes at 10 s, the edges aside


def one_error_line(result) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    return line


@pytest.fixture
def job_workers(tmp_path):
    """``--cluster local`` configured as a user would (cores, memory), on loopback; every worker
    its jobs start leaves a mark in the folder this yields."""
    marks = tmp_path / "workers"
    marks.mkdir()
    preload = tmp_path / "mark_worker.py"
    preload.write_text(MARKER.format(folder=str(marks)))
    with dask.config.set({
        "jobqueue.local.cores": 1,
        "jobqueue.local.memory": "1GiB",
        "jobqueue.local.scheduler-options": {"host": "127.0.0.1", "dashboard_address": ":0"},
        "jobqueue.local.worker-extra-args": ["--host", "127.0.0.1", "--preload", str(preload)],
    }):
        yield marks


def ended(pids: list[int], timeout: float) -> bool:
    """Whether every process in ``pids`` has exited (a zombie counts) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
    return True


def worker_pids(marks: Path) -> list[int]:
    return [int(mark.read_text().split()[0]) for mark in marks.iterdir()]


# ---------------------------------------------------------------- the options and their refusals


@pytest.mark.parametrize("command", DASK_COMMANDS)
def test_every_dask_command_explains_the_cluster_options(command):
    assert_help_explains(main.commands[command], dataclasses.fields(ClusterConfig))


BATCH_SYSTEMS = {  # the Dask configuration of each, and the lines its job script must then carry
    "slurm": ({"account": "proj42"}, ["#SBATCH -p short", "#SBATCH -A proj42", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH -t 01:30:00"]),
    "pbs": ({"account": "proj42"}, ["#PBS -q short", "#PBS -A proj42", "#PBS -l select=1:ncpus=4:mem=8192MB", "#PBS -l walltime=01:30:00"]),
    "sge": ({"project": "proj42", "resource-spec": "h_vmem=8G"}, ["#$ -q short", "#$ -P proj42", "#$ -l h_vmem=8G", "#$ -l h_rt=01:30:00"]),
    "lsf": ({"project": "proj42", "lsf-units": "mb"}, ["#BSUB -q short", '#BSUB -P "proj42"', "#BSUB -n 4", "#BSUB -M 8590", "#BSUB -W 01:30:00"]),
}


@pytest.mark.parametrize("kind", BATCH_SYSTEMS)
def test_dry_run_prints_the_job_script_from_the_dask_configuration_without_any_batch_system(kind, tmp_path, monkeypatch):
    extra, lines = BATCH_SYSTEMS[kind]
    settings = {"cores": 4, "memory": "8GiB", "queue": "short", "walltime": "01:30:00", "job-script-prologue": ["source /opt/accel/bin/activate"], **extra}
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, qsub or bsub: the script needs none
    raw = raw_csvs(tmp_path / "raw", 1)
    with dask.config.set({f"jobqueue.{kind}.{key}": value for key, value in settings.items()}):
        shown = run_cli("ingest", str(raw), "-o", str(tmp_path / "store.zarr"), "--cluster", kind, "--dry-run")
    assert shown.exit_code == 0, shown.output
    script = shown.stdout.splitlines()
    assert script[0] == "#!/usr/bin/env bash"
    for line in lines + ["source /opt/accel/bin/activate"]:
        assert line in script, (line, shown.stdout)
    (worker,) = [line for line in script if line.startswith(WORKER_COMMAND)]
    # memory and cores per job as configured; one single-threaded worker per core, each a quarter of the memory
    assert "--nworkers 4 " in worker and "--nthreads 1 " in worker and "--memory-limit 2.00GiB " in worker
    assert not (tmp_path / "store.zarr").exists()  # nothing ran


@pytest.mark.parametrize("command", ["verify", "features", "pretext"])
def test_dry_run_of_the_other_dask_commands_touches_no_store(command, tmp_path):
    store = tmp_path / "missing.zarr"  # not even there: the command does not run
    extra = ["--windows", "10", "--holdout-fraction", "0.5", "--seed", "1"] if command == "pretext" else []
    with dask.config.set({"jobqueue.slurm.cores": 2, "jobqueue.slurm.memory": "4GiB", "jobqueue.slurm.queue": "long"}):
        shown = run_cli(command, str(store), *extra, "--cluster", "slurm", "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "#SBATCH -p long" in shown.stdout.splitlines() and WORKER_COMMAND in shown.stdout
    assert not store.exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--cluster", "local", "--scheduler", "tcp://127.0.0.1:8786"], "error: --cluster starts a cluster of its own: give --cluster or --scheduler, not both"),
    (["--cluster", "local", "--workers", "2"], "error: --workers sizes the local cluster: with --cluster the workers are --jobs times jobqueue.local.processes"),
    (["--jobs", "2"], "error: --jobs needs --cluster (it is about batch jobs)"),
    (["--adaptive"], "error: --adaptive needs --cluster (it is about batch jobs)"),
    (["--dry-run"], "error: --dry-run needs --cluster (it is about batch jobs)"),
    (["--cluster", "local", "--adaptive"], "error: --adaptive needs --jobs N: the most jobs to scale up to"),
    (["--wait-for-workers", "5"], "error: --wait-for-workers needs --cluster or --scheduler: the local cluster's workers are there at once"),
])
def test_options_that_mean_nothing_together_are_refused_before_anything_starts(options, message, tmp_path):
    raw = raw_csvs(tmp_path / "raw", 1)
    refused = run_cli("ingest", str(raw), "-o", str(tmp_path / "store.zarr"), *options)
    assert refused.exit_code == 2 and one_error_line(refused) == message
    assert not (tmp_path / "store.zarr").exists()


def test_an_unknown_kind_is_a_usage_error(tmp_path):
    refused = run_cli("ingest", str(tmp_path), "--cluster", "torque")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[-1].startswith("Error: Invalid value for '--cluster': 'torque' is not one of 'slurm', 'pbs', 'sge', 'lsf', 'local'")


def test_a_configuration_without_cores_and_memory_names_the_keys(tmp_path):
    with dask.config.set({"jobqueue.sge.cores": None, "jobqueue.sge.memory": None}):
        for dry_run in (["--dry-run"], []):
            refused = run_cli("ingest", str(tmp_path), "-o", str(tmp_path / "store.zarr"), "--cluster", "sge", *dry_run)
            assert refused.exit_code == 2
            assert one_error_line(refused).startswith("error: --cluster sge: the Dask configuration has no jobqueue.sge.cores and no jobqueue.sge.memory (")
    with dask.config.set({"jobqueue.sge.cores": 2, "jobqueue.sge.memory": "plenty"}):
        refused = run_cli("ingest", str(tmp_path), "--cluster", "sge", "--dry-run")
    assert refused.exit_code == 2
    assert one_error_line(refused).startswith("error: --cluster sge: the Dask configuration jobqueue.sge cannot be used: ")
    assert "plenty" in refused.stderr


def test_a_batch_system_whose_commands_are_missing_is_refused_before_the_store_is_touched(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with dask.config.set({"jobqueue.slurm.cores": 2, "jobqueue.slurm.memory": "4GiB"}):
        refused = run_cli("ingest", str(raw_csvs(tmp_path / "raw", 1)), "-o", str(tmp_path / "store.zarr"), "--cluster", "slurm")
    assert refused.exit_code == 2
    assert one_error_line(refused).startswith("error: --cluster slurm: sbatch and scancel not found on PATH (")
    assert not (tmp_path / "store.zarr").exists()


def test_an_existing_cluster_without_workers_ends_in_an_error_after_the_wait(tmp_path):
    raw = raw_csvs(tmp_path / "raw", 1)
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as empty, time_limit(120):
        refused = run_cli("ingest", str(raw), "-o", str(tmp_path / "store.zarr"), "--scheduler", empty.scheduler_address, "--wait-for-workers", "1")
    assert refused.exit_code == 2
    assert one_error_line(refused) == f"error: --scheduler {empty.scheduler_address}: no worker joined within 1 s (raise --wait-for-workers, or see the queue and the workers' logs for why)"


def test_ingest_inputs_may_be_urls_but_then_need_an_output(tmp_path):
    refused = run_cli("ingest", "s3://cohort/raw/")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[-1] == "Error: -o/--output is required when the first input is a URL (s3://cohort/raw/): the default store lies beside a local first input"
    missing = run_cli("ingest", "s3://cohort/raw/", str(tmp_path / "nowhere"), "-o", str(tmp_path / "store.zarr"))
    assert missing.exit_code == 2
    assert missing.stderr.splitlines()[-1] == f"Error: Invalid value for 'INPUTS...': Path '{tmp_path / 'nowhere'}' does not exist."


# ---------------------------------------------------------------- real runs on jobs


def test_ingest_on_two_jobs_runs_its_tasks_on_the_jobs_workers_and_ends_them(tmp_path, job_workers):
    raw = raw_csvs(tmp_path / "raw", 4)
    (raw / "broken.cwa").write_bytes(b"\x00" * 1000)
    store = tmp_path / "jobs.zarr"
    with time_limit(240):
        run = run_cli("ingest", str(raw), "-o", str(store), "--cluster", "local", "--jobs", "2", "--no-calibrate", "--no-nonwear")
    assert run.exit_code == 1, run.output  # broken.cwa failed, recorded; the others went in
    assert_ingested(store, 4)
    assert list(open_store(str(store)).failures.index) == [str(raw / "broken.cwa")]
    assert len(list(job_workers.iterdir())) == 2  # one worker per job (cores 1), started by the job scripts
    assert ended(worker_pids(job_workers), timeout=60)  # the jobs end with the command


def test_adaptive_ingest_scales_between_one_job_and_jobs(tmp_path, job_workers):
    raw = raw_csvs(tmp_path / "raw", 6)
    store = tmp_path / "adaptive.zarr"
    with time_limit(240):
        run = run_cli("ingest", str(raw), "-o", str(store), "--cluster", "local", "--jobs", "3", "--adaptive", "--no-calibrate", "--no-nonwear")
    assert run.exit_code == 0, run.output
    assert_ingested(store, 6)
    assert 1 <= len(list(job_workers.iterdir())) <= 3
    assert ended(worker_pids(job_workers), timeout=60)


def test_workers_that_join_after_the_run_started_are_warmed_up_before_their_first_task(job_workers):
    def compiled() -> int:  # in each worker: the kernel's compiled signatures (warm_up compiles it)
        return len(resample.window_stats.signatures)

    with time_limit(240), job_cluster("local", jobs=1) as cluster, task_client(None, cluster.scheduler_address, warm=resample.warm_up) as client:
        cluster.scale(jobs=2)  # a job the queue starts later
        client.wait_for_workers(2, timeout=180)
        counts = client.run(compiled)
        assert len(counts) == 2 and min(counts.values()) > 0
    assert len(list(job_workers.iterdir())) == 2


# ---------------------------------------------------------------- a real SLURM, where installed

SLURM_DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _until(condition, what: str, timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = {log.name: log.read_text()[-2000:] for log in sorted(logs.glob("*.log"))}
            pytest.fail(f"{what} not within {timeout} s; logs: {tails}")
        time.sleep(0.2)


@pytest.fixture
def slurm(monkeypatch):
    """A one-node SLURM of this test's own: munged, slurmctld and slurmd in a temporary folder,
    on ports the OS had free; SLURM_CONF points the commands at it."""
    missing = [name for name in SLURM_DAEMONS if shutil.which(name) is None and shutil.which(name, path="/usr/sbin:/sbin") is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} not found; Debian: apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        pytest.skip("this one-node SLURM needs root: its slurmd starts each job as the submitting user")
    tool = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in SLURM_DAEMONS}
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: munge's socket path has a length limit
    logs = root / "log"
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o700)
    subprocess.run(["mungekey", "--create", f"--keyfile={root / 'munge' / 'munge.key'}"], check=True, capture_output=True)
    host = socket.gethostname().split(".")[0]
    memory_mb = psutil.virtual_memory().total // 2**20 // 2
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=accelstore", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "SlurmUser=root", "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root / 'munge' / 'munge.sock'}",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={logs / 'slurmctld.log'}", f"SlurmdLogFile={logs / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MailProg=/bin/true", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", "",
    ]))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with ExitStack() as stack:
        def start(*command: str) -> None:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def stop() -> None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)

            stack.callback(stop)

        stack.callback(shutil.rmtree, root, ignore_errors=True)
        munge = root / "munge"
        start(tool["munged"], "-F", "-f", f"--key-file={munge / 'munge.key'}", f"--socket={munge / 'munge.sock'}",
              f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'seed'}", f"--log-file={logs / 'munged.log'}")
        _until((munge / "munge.sock").exists, "munged's socket", 30, logs)
        start(tool["slurmctld"], "-D", "-i")
        start(tool["slurmd"], "-D")
        node_state = lambda: subprocess.run([tool["sinfo"], "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()  # noqa: E731
        _until(lambda: node_state() == "idle", "the node idle", 60, logs)
        yield {"squeue": tool["squeue"], "root": root}


def test_ingest_on_a_real_slurm(tmp_path, slurm, job_workers):
    """sbatch'd jobs whose workers ingest; a partition SLURM refuses; jobs that never start in time."""
    raw = raw_csvs(tmp_path / "raw", 4)
    store = tmp_path / "slurm.zarr"
    config = {"jobqueue.slurm.cores": 1, "jobqueue.slurm.memory": "500MiB", "jobqueue.slurm.queue": "debug", "jobqueue.slurm.walltime": "00:10:00",
              "jobqueue.slurm.log-directory": str(tmp_path / "job-logs"), "jobqueue.slurm.scheduler-options": {"host": "127.0.0.1", "dashboard_address": ":0"},
              "jobqueue.slurm.worker-extra-args": dask.config.get("jobqueue.local.worker-extra-args")}

    def queue() -> str:
        return subprocess.run([slurm["squeue"], "-h", "-o", "%i %T"], capture_output=True, text=True, check=True).stdout.strip()

    with dask.config.set(config), time_limit(300):
        run = run_cli("ingest", str(raw), "-o", str(store), "--cluster", "slurm", "--jobs", "2", "--no-calibrate", "--no-nonwear")
        assert run.exit_code == 0, run.output
        assert_ingested(store, 4)
        job_ids = {mark.read_text().split()[1] for mark in job_workers.iterdir()}
        assert len(job_ids) >= 1 and all(job_ids), job_ids  # the workers ran inside SLURM jobs
        _until(lambda: queue() == "", "the jobs cancelled", 60, slurm["root"] / "log")

        with dask.config.set({"jobqueue.slurm.queue": "nosuchpartition"}):
            refused = run_cli("ingest", str(raw), "-o", str(tmp_path / "refused.zarr"), "--cluster", "slurm")
        assert refused.exit_code == 2
        assert one_error_line(refused).startswith("error: --cluster slurm: the job was not submitted: sbatch: error: ")
        assert "invalid partition" in refused.stderr.lower()

        with dask.config.set({"jobqueue.slurm.job-extra-directives": ["--begin=now+1hour"]}):
            waited = run_cli("ingest", str(raw), "-o", str(tmp_path / "waited.zarr"), "--cluster", "slurm", "--wait-for-workers", "2")
        assert waited.exit_code == 2
        assert one_error_line(waited) == "error: --cluster slurm: no worker joined within 2 s (raise --wait-for-workers, or see the queue and the workers' logs for why)"
        _until(lambda: queue() == "", "the queued job cancelled", 60, slurm["root"] / "log")
