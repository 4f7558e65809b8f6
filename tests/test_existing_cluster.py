"""Ingest through an existing cluster: `dask scheduler` and two `dask worker` processes on loopback,
and the command line, in this process, their client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from accelstore import open_store
from helpers import run_cli, write_csv

DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def cluster(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]
    from distributed import Client

    try:
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield json.loads(scheduler_file.read_text())["address"], scheduler_file
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def test_ingest_through_scheduler_address(cluster, tmp_path):
    address, scheduler_file = cluster
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        write_csv(raw / f"S{i}.csv", f"2024-05-0{i + 1} 09:00:00", f"2024-05-0{i + 1} 09:02:00")
    (raw / "broken.cwa").write_bytes(b"\x00" * 1000)
    store = tmp_path / "cluster.zarr"
    assert address.startswith("tcp://127.0.0.1:")
    run = run_cli("ingest", str(raw), "-o", str(store), "--scheduler", address, "--no-calibrate", "--no-nonwear")
    assert run.exit_code == 1, run.output  # broken.cwa failed; the others went in
    opened = open_store(str(store))
    assert sorted(opened.participants.index) == ["S0", "S1", "S2", "S3"]
    assert list(opened.failures.index) == [str(raw / "broken.cwa")]
    assert int(opened.participants["valid_windows"].min()) >= 11
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file)) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "ingest_file" in prefixes  # the files were tasks of this scheduler, not of a LocalCluster
