"""The ingest driver at scale: grouped metadata writes, the failure log, byte counts, tasks in flight.

What the driver writes per group must not grow with the group (one write per touched chunk), a
failure must not rewrite the others, ``info`` must get the store's size from the table, and the
runner must keep a bounded number of tasks on the cluster and hand over results on time.
Throughput itself is measured by bench/driver.py, not here.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from accelstore import open_store
from accelstore.errors import StoreDamageError
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.runner import MIN_IN_FLIGHT, dask_client, run_task_batches
from accelstore.readers import ProcessingOptions
from accelstore.store import TABLE_CHUNK, Status, create_store, store_writer
from accelstore.store.failures import FAILURES_GROUP, FailureLog, read_failures
from helpers import write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)


@contextmanager
def _objects_written():
    """The keys of every object written to any local store meanwhile."""
    written: list[str] = []
    original = LocalStore.set

    async def counted(self, key, value):
        written.append(key)
        return await original(self, key, value)

    LocalStore.set = counted
    try:
        yield written
    finally:
        LocalStore.set = original


def _row_columns(n: int) -> dict[str, list]:
    return {"id": [f"P{i}" for i in range(n)], "day0": [1_700_000_000] * n, "first_window": [10] * n, "n_windows": [8000] * n, "device": ["Axivity"] * n,
            "source": [f"/raw/{i}.cwa" for i in range(n)], "valid_windows": [100] * n, "stored_bytes": [12345] * n}


@pytest.mark.parametrize("rows", [1, 500])
def test_completing_a_group_writes_each_touched_chunk_once(tmp_path, rows):
    create_store(str(tmp_path / "s.zarr"), max_days=2, participants=1000)
    with store_writer(str(tmp_path / "s.zarr"), "test") as writer, _objects_written() as written:
        chosen = np.random.default_rng(0).permutation(600)[:rows]  # any order, within the first chunk of each array
        days = writer.n_windows // 8640
        writer.complete_rows(chosen, _row_columns(rows), np.full((rows, days), 100, np.int32), np.ones((rows, days), np.float32))
    columns = len(_row_columns(1)) + 1  # and the status
    assert len(written) == len(set(written)) == columns + 2, written  # + the two day summaries
    opened = open_store(str(tmp_path / "s.zarr"))
    assert sorted(opened.participants["row"]) == sorted(chosen.tolist())
    assert (opened.participants["stored_bytes"] == 12345).all()


def test_the_status_is_written_after_everything_else_of_a_group(tmp_path):
    create_store(str(tmp_path / "s.zarr"), max_days=1, participants=10)
    with store_writer(str(tmp_path / "s.zarr"), "test") as writer, _objects_written() as written:
        writer.complete_rows(np.array([3, 1]), _row_columns(2), np.zeros((2, 1), np.int32), np.zeros((2, 1), np.float32))
    assert written[-1].startswith("status/"), written
    assert sum(key.startswith("status/") for key in written) == 1


def _failure(i: int) -> dict[str, str]:
    return {"id": f"P{i}", "error": "corrupt", "message": f"/raw/P{i}.cwa: corrupt: block {i} is damaged"}


def test_a_failure_writes_only_its_own_rows_chunk(tmp_path):
    root = create_store(str(tmp_path / "s.zarr"), max_days=1)
    log = FailureLog(root, "s")
    for i in range(TABLE_CHUNK + 10):  # two chunks of failures
        log.record(f"/raw/P{i}.cwa", _failure(i))
    log.flush()
    with _objects_written() as written:
        log.record("/raw/new.cwa", _failure(-1))
        log.flush()
    assert sorted(key.rsplit("/c/", 1)[0] for key in written if "/c/" in key) == [f"{FAILURES_GROUP}/{name}" for name in ("error", "id", "message", "source")]
    assert all(key.endswith("/c/1") for key in written if "/c/" in key)  # the second chunk only
    assert len(read_failures(root, "s")) == TABLE_CHUNK + 11

    with _objects_written() as written:  # replacing or clearing one failure also writes one chunk per array
        log.record("/raw/P3.cwa", {**_failure(3), "error": "truncated"})
        assert log.clear("/raw/P5.cwa")
        log.flush()
    assert {key for key in written if "/c/" in key} == {f"{FAILURES_GROUP}/{name}/c/0" for name in ("error", "id", "message", "source")}
    reread = FailureLog(zarr.open_group(str(tmp_path / "s.zarr"), mode="r+"), "s")
    assert reread.recorded["/raw/P3.cwa"]["error"] == "truncated" and "/raw/P5.cwa" not in reread.recorded
    assert len(reread.recorded) == TABLE_CHUNK + 10

    reread.record("/raw/later.cwa", _failure(-2))  # takes the cleared row: the log does not grow
    reread.flush()
    assert zarr.open_group(str(tmp_path / "s.zarr"))[FAILURES_GROUP].attrs["rows"] == TABLE_CHUNK + 11


def test_a_failure_recorded_and_cleared_before_a_flush_writes_nothing(tmp_path):
    root = create_store(str(tmp_path / "s.zarr"), max_days=1)
    log = FailureLog(root, "s")
    log.record("/raw/A.csv", _failure(0))
    assert log.clear("/raw/A.csv") and not log.clear("/raw/A.csv")
    with _objects_written() as written:
        log.flush()
    assert written == []


def test_a_lost_chunk_of_the_failure_log_is_damage(tmp_path):
    root = create_store(str(tmp_path / "s.zarr"), max_days=1)
    log = FailureLog(root, "s")
    log.record("/raw/A.csv", _failure(0))
    log.flush()
    os.remove(tmp_path / "s.zarr" / FAILURES_GROUP / "message" / "c" / "0")
    with pytest.raises(StoreDamageError, match="failure log has lost rows"):
        _ = open_store(str(tmp_path / "s.zarr")).failures


def test_the_next_writer_starts_a_damaged_failure_log_afresh_and_records_again(tmp_path, caplog):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:02:00", rate=25)
    (raw / "B.csv").write_text("time,x,y,z\nnot a time,1,2,3\n")
    store = tmp_path / "s.zarr"
    ingest([raw], str(store), options=RAW, scheduler="synchronous", max_days=1, progress=False)
    os.remove(store / FAILURES_GROUP / "message" / "c" / "0")
    report = ingest([raw], str(store), options=RAW, scheduler="synchronous", max_days=1, progress=False)
    assert "starting it afresh" in caplog.text
    assert report.unchanged == ["A"] and list(report.failed) == [str(raw / "B.csv")]
    assert list(open_store(str(store)).failures.index) == [str(raw / "B.csv")]  # recorded again, readable


def _array_folders(store: Path) -> set[Path]:
    return {path.parent for path in store.rglob("zarr.json") if '"node_type": "array"' in path.read_text()}


def test_stored_bytes_are_the_sizes_of_each_participants_shards(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:05:00", rate=25)
    write_csv(raw / "B.csv", "2024-01-01 23:58:00", "2024-01-02 00:03:00", rate=25)  # two days of shards
    store = tmp_path / "s.zarr"
    ingest([raw], str(store), options=RAW, scheduler="synchronous", max_days=3, progress=False)
    opened = open_store(str(store))
    for _, row in opened.participants.iterrows():
        on_disk = sum(
            path.stat().st_size for name in ("acc", "valid", "std", "enmo")
            for path in (store / name / "c" / str(row["row"])).rglob("*") if path.is_file()
        )
        assert row["stored_bytes"] == on_disk > 0
    every_array_file = sum(path.stat().st_size for folder in _array_folders(store) for path in folder.rglob("*") if path.is_file())
    assert opened.info()["bytes_stored"] == every_array_file  # every shard here belongs to a complete row


def test_info_counts_the_failures_from_the_log(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:02:00", rate=25)
    (raw / "B.csv").write_text("time,x,y,z\nnot a time,1,2,3\n")
    store = str(tmp_path / "s.zarr")
    ingest([raw], store, options=RAW, scheduler="synchronous", max_days=1, progress=False)
    opened = open_store(store)
    assert opened.info()["failures"] == 1 and list(opened.failures.index) == [str(raw / "B.csv")]
    assert not (zarr.open_group(store)["status"][:] == Status.WRITING).any()


# ---------------------------------------------------------------- the runner, on a real cluster


@pytest.fixture(scope="module")
def client():
    with dask_client(1, None) as client:
        yield client


def _wait_for(path: str) -> str:
    """Finishes only once ``path`` exists: the test decides when, without any timing."""
    while not os.path.exists(path):
        os.sched_yield()
    return path


def test_an_empty_batch_comes_when_nothing_completes_in_time(client, tmp_path):
    release = str(tmp_path / "release")
    batches = run_task_batches(client, _wait_for, [release], retries=0, max_wait=0.05)
    assert next(batches) == []  # the task cannot have finished: its file does not exist yet
    Path(release).touch()
    results = [result for batch in batches for _, result in batch]
    assert results == [release]


def _state_counts(dask_scheduler) -> int:
    return sum(1 for task in dask_scheduler.tasks.values() if task.state in ("processing", "queued", "no-worker", "waiting"))


def _identity(i: int) -> int:
    return i


def test_tasks_are_submitted_as_earlier_ones_complete(client):
    tasks = 10 * MIN_IN_FLIGHT
    seen_on_cluster, results = [], []
    for batch in run_task_batches(client, _identity, range(tasks), retries=0):
        results += [result for _, result in batch]
        seen_on_cluster.append(client.run_on_scheduler(_state_counts))
    assert sorted(results) == list(range(tasks))
    assert max(seen_on_cluster) <= MIN_IN_FLIGHT  # a one-thread cluster: the floor of the limit
