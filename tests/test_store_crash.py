"""Crash safety, proved deterministically: the ingest driver killed at its k-th store write, for every k.

A small ingest that grows both axes (new rows, a recording longer than the window axis) and records
a failure is run in a forked child that dies (``os._exit``) just before its k-th mutation of the
store — a Zarr object written or deleted, or the lease created or removed. After each kill the store
must answer for every participant that was complete, with exactly the uninterrupted run's data; a
re-run must then end identical to the uninterrupted run: arrays, table, day summaries, attributes
and the set of objects on disk. Writes themselves are atomic (Zarr's local store writes a temporary
file and renames it), so a kill between writes is the only kind there is.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

import accelstore.pipelines.ingest as ingest_module
import accelstore.store.lease as lease_module
from accelstore import open_store
from accelstore.errors import StoreError
from accelstore.pipelines.ingest import ingest
from accelstore.readers import ProcessingOptions
from accelstore.store import DAY_ARRAYS, TABLE_COLUMNS, Status
from helpers import write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
KILLED = 77

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_csv(folder / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:02:00", rate=25)
    write_csv(folder / "B.csv", "2024-01-01 23:59:00", "2024-01-02 00:01:00", rate=25)  # two days: grows the window axis
    (folder / "D.csv").write_text("time,x,y,z\nnot a time,1,2,3\nnor this,1,2,3\n")  # a failure to record
    return folder


def _ingest(raw: Path, store: Path):
    return ingest([raw], str(store), options=RAW, scheduler="synchronous", max_days=1, progress=False)


@contextmanager
def _writes_counted(kill_at: int | None = None):
    """Count every mutation of a store; with ``kill_at``, die just before that one."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == kill_at:
            os._exit(KILLED)

    originals = {name: getattr(LocalStore, name) for name in ("set", "set_if_not_exists", "delete", "delete_dir")}

    def counted(original):
        async def mutation(self, *args, **kwargs):
            tick()
            return await original(self, *args, **kwargs)

        return mutation

    lease_create, lease_remove = lease_module._create_exclusive, lease_module._remove

    def create(*args):
        tick()
        return lease_create(*args)

    def remove(*args):
        tick()
        return lease_remove(*args)

    for name, original in originals.items():
        setattr(LocalStore, name, counted(original))
    lease_module._create_exclusive, lease_module._remove = create, remove
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(LocalStore, name, original)
        lease_module._create_exclusive, lease_module._remove = lease_create, lease_remove


def _killed_run(raw: Path, store: Path, k: int) -> None:
    pid = os.fork()
    if pid == 0:  # the child: ingest until just before write k
        try:
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 — the forked child exits with it open
            with _writes_counted(kill_at=k):
                _ingest(raw, store)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED, f"the run ended before write {k}"


def _objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_same_store(got_path: Path, want_path: Path) -> None:
    got, want = zarr.open_group(str(got_path), mode="r"), zarr.open_group(str(want_path), mode="r")
    for name in (*TABLE_COLUMNS, *DAY_ARRAYS, "valid", "std", "enmo"):
        np.testing.assert_array_equal(got[name][:], want[name][:], err_msg=name)
    assert got["acc"].shape == want["acc"].shape
    for row, (first, last) in enumerate(zip(want["first_window"][:], want["n_windows"][:])):
        np.testing.assert_array_equal(got["acc"][row, first:last], want["acc"][row, first:last], err_msg=f"acc of row {row}")
    assert got.attrs.asdict() == want.attrs.asdict()
    assert _objects(got_path) == _objects(want_path)  # no shard more or less, outside the rows' spans too


def _assert_complete_match(store: Path, reference) -> None:
    """Whatever the kill left: every participant visible is whole and equals the reference."""
    try:
        opened = open_store(str(store))
    except StoreError as error:  # killed before the store's creation finished: nothing was complete
        assert "creation did not finish" in str(error) or "no accelstore store" in str(error)
        return
    for pid in opened.participants.index:
        np.testing.assert_array_equal(opened.windows(pid).values, reference.windows(pid).values, err_msg=pid)


def _kill_at_then_rerun(raw: Path, store: Path, want: Path, k: int) -> None:
    _killed_run(raw, store, k)
    _assert_complete_match(store, open_store(str(want)))
    rerun = _ingest(raw, store)
    assert list(rerun.failed) == [str(raw / "D.csv")], (k, rerun.failed)
    _assert_same_store(store, want)
    shutil.rmtree(store)


def _case(args: tuple[Path, Path, Path, int]) -> int:
    raw, folder, want, k = args
    _kill_at_then_rerun(raw, folder / f"killed-{k}.zarr", want, k)
    return k


@pytest.mark.slow
@pytest.mark.parametrize("flush_seconds", [ingest_module.FLUSH_SECONDS, 0.0], ids=["one group", "a group per participant"])
def test_a_kill_at_every_write_then_a_rerun_equals_the_uninterrupted_run(raw, tmp_path, monkeypatch, flush_seconds):
    """The driver writes completed participants in groups: a kill inside a group, or between two,
    loses only what is not yet complete, and the rerun redoes it (forked runs inherit the setting)."""
    monkeypatch.setattr(ingest_module, "FLUSH_SECONDS", flush_seconds)
    want = tmp_path / "uninterrupted.zarr"
    with _writes_counted() as count:
        report = _ingest(raw, want)
    writes = count[0]
    assert sorted(report.written) == ["A", "B"] and list(report.failed) == [str(raw / "D.csv")]
    assert open_store(str(want)).shape[1] == 2 * 8640  # B grew the window axis
    assert writes > 50
    cases = [(raw, tmp_path, want, k) for k in range(1, writes + 1)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:  # each case forks its own run
        done = sorted(pool.imap_unordered(_case, cases))
    assert done == list(range(1, writes + 1))


def test_status_of_the_reference_run(raw, tmp_path):
    """The fixture's run covers what the kill test must: rows grown, a failed row, complete rows."""
    store = tmp_path / "s.zarr"
    _ingest(raw, store)
    status = zarr.open_group(str(store), mode="r")["status"][:]
    assert sorted(status.tolist()) == [Status.COMPLETE] * 2 + [Status.FAILED]
