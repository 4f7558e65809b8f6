"""Crash safety: a driver killed with SIGKILL mid-run, then re-run, ends exactly like an uninterrupted run,
and no participant is ever visible half-written.

The kill comes at a known point, not when a poll happens to see something: the driver (the command
line in a process of its own, with :data:`STOP_AT_FIRST_COMPLETE` installed) writes to a pipe how
many participants its first group made complete, once it has, then waits, its workers busy with the others; the test,
blocked reading that pipe, kills it then. (tests/test_store_crash.py kills a run without workers
at each of its store writes in turn.)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import numpy as np
import psutil
import pytest
import zarr

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.store import TABLE_COLUMNS, Status
from accelstore.synth import synthesize
from helpers import run_cli

N_PARTICIPANTS = 6

STOP_AT_FIRST_COMPLETE = """
import os, signal, sys

from accelstore.cli import main
from accelstore.pipelines import ingest
from accelstore.store import MetadataWriter, Status

ready, set_rows = int(sys.argv[1]), MetadataWriter.set_rows


def set_rows_then_stop(self, rows, **columns):
    set_rows(self, rows, **columns)
    if columns.get("status") == Status.COMPLETE:  # a group of participants has just become visible
        os.write(ready, bytes([len(rows)]))
        signal.pause()  # until the test's SIGKILL


ingest.FLUSH_SECONDS = 0  # a group of what has completed at each look, not of a second's results
MetadataWriter.set_rows = set_rows_then_stop
main(sys.argv[2:], prog_name="accelstore")
"""
"""``python -c`` program: ``accelstore ARGS`` that stops once its first group of participants is
complete (argv: the pipe's write end, then ARGS)."""


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    synthesize(out, participants=N_PARTICIPANTS, days=0.4, seed=11)
    return out


@pytest.fixture(scope="module")
def reference(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "uninterrupted.zarr"
    assert ingest([raw], str(path), workers=2, progress=False).ok
    return path


def _ingest_arguments(raw, store) -> list[str]:
    return ["-q", "ingest", str(raw), "-o", str(store), "--workers", "2"]


def _driver_stopped_after_its_first_complete(raw, store) -> tuple[subprocess.Popen, list[psutil.Process], int]:
    """An ingest driver, stopped just after its first group of participants became complete, its
    workers, and how many participants that group made complete."""
    ready_read, ready_write = os.pipe()
    driver = subprocess.Popen(
        [sys.executable, "-c", STOP_AT_FIRST_COMPLETE, str(ready_write), *_ingest_arguments(raw, store)],
        pass_fds=(ready_write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(ready_write)  # the driver holds the only write end: its exit ends the read below
    try:
        readable, _, _ = select.select([ready_read], [], [], 600)  # blocks: no polling
        said = os.read(ready_read, 1) if readable else b""
    finally:
        os.close(ready_read)
    if not said:
        hung = driver.poll() is None
        driver.kill()
        driver.wait()
        how = "hung" if hung else f"ended (exit status {driver.returncode})"
        pytest.fail(f"the driver {how} before any participant was complete")
    return driver, psutil.Process(driver.pid).children(recursive=True), said[0]


def _assert_complete_rows_match(store, reference) -> int:
    """Every row marked complete holds exactly the reference data; returns how many there are."""
    group, expected = zarr.open_group(str(store), mode="r"), open_store(str(reference))
    status = group["status"][:]
    for row in np.flatnonzero(status == Status.COMPLETE):
        pid = str(group["id"][row])
        info = expected.participants.loc[pid]
        window_range = slice(int(info["first_window"]), int(info["n_windows"]))
        np.testing.assert_array_equal(group["acc"][row, window_range], expected.group["acc"][int(info["row"]), window_range])
        np.testing.assert_array_equal(group["valid"][row, :], expected.group["valid"][int(info["row"]), :])
    return int((status == Status.COMPLETE).sum())


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(raw, reference, tmp_path):
    store = tmp_path / "interrupted.zarr"
    driver, children, first_group = _driver_stopped_after_its_first_complete(raw, store)
    assert children, "the driver started no workers"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL
    psutil.wait_procs(children, timeout=60)
    assert all(not child.is_running() for child in children), "workers outlived the killed driver"

    visible_after_kill = _assert_complete_rows_match(store, reference)
    assert visible_after_kill == first_group < N_PARTICIPANTS  # those the driver stopped after; the others, however far their workers got, are not

    rerun = run_cli(*_ingest_arguments(raw, store))
    assert rerun.exit_code == 0, rerun.output
    assert f"{N_PARTICIPANTS - visible_after_kill} written, {visible_after_kill} unchanged" in rerun.stdout
    _assert_same_store(store, reference)


def _assert_same_store(store, reference) -> None:
    got, want = zarr.open_group(str(store), mode="r"), zarr.open_group(str(reference), mode="r")
    for name in TABLE_COLUMNS:
        np.testing.assert_array_equal(got[name][:], want[name][:], err_msg=name)
    for name in ("valid", "std", "enmo", "day_valid_windows", "day_std_sum"):
        np.testing.assert_array_equal(got[name][:], want[name][:], err_msg=name)
    for row in range(N_PARTICIPANTS):
        np.testing.assert_array_equal(got["acc"][row, : got["n_windows"][row]], want["acc"][row, : want["n_windows"][row]])
    chunk_files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert chunk_files(store) == chunk_files(reference)
    assert dict(got.attrs) == dict(want.attrs)
