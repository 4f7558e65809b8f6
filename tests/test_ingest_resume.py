"""Crash safety: a driver killed with SIGKILL mid-run, then re-run, ends exactly like an uninterrupted run,
and no participant is ever visible half-written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import zarr

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.store import TABLE_COLUMNS, Status
from accelstore.synth import synthesize

N_PARTICIPANTS = 6


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


def _ingest_command(raw, store):
    return [sys.executable, "-m", "accelstore", "-q", "ingest", str(raw), "-o", str(store), "--workers", "2"]


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


def test_sigkill_then_rerun_equals_an_uninterrupted_run(raw, reference, tmp_path):
    store = tmp_path / "interrupted.zarr"
    driver = subprocess.Popen(_ingest_command(raw, store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    complete = 0
    deadline = time.monotonic() + 300
    while complete == 0 and driver.poll() is None and time.monotonic() < deadline:
        children = psutil.Process(driver.pid).children(recursive=True) or children
        if (store / "status" / "zarr.json").exists():
            complete = _assert_complete_rows_match(store, reference)
    assert driver.poll() is None, "the run ended before any participant completed: make the input larger"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    psutil.wait_procs(children, timeout=60)
    assert all(not child.is_running() for child in children), "workers outlived the killed driver"

    visible_after_kill = _assert_complete_rows_match(store, reference)
    assert 1 <= visible_after_kill < N_PARTICIPANTS

    rerun = subprocess.run(_ingest_command(raw, store), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
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
