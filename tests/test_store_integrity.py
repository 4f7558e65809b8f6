"""The store's guarantees: one writer, damage detected (on read and by ``verify``), complete data kept."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import zarr
from click.testing import CliRunner

from accelstore import open_store
from accelstore.cli import main
from accelstore.errors import InputError, LeaseHeldError, StoreDamageError, StoreError
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.ingest_task import participant_id
from accelstore.pipelines.verify import verify
from accelstore.readers import ProcessingOptions
from accelstore.store.layout import FORMAT_VERSION
from accelstore.store.lease import LEASE_NAME, WriterLease
from helpers import write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)


def _ingest(raw: Path, store: Path, **kwargs):
    return ingest([raw], str(store), options=RAW, scheduler="synchronous", progress=False, **kwargs)


@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    write_csv(folder / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:05:00", rate=25)
    write_csv(folder / "B.csv", "2024-01-01 23:58:00", "2024-01-02 00:03:00", rate=25)
    return folder


@pytest.fixture
def store(raw, tmp_path) -> Path:
    path = tmp_path / "s.zarr"
    assert sorted(_ingest(raw, path).written) == ["A", "B"]
    return path


def _shard(store: Path, array: str, row: int, day: int = 0) -> Path:
    """The file of one participant-day shard of ``acc`` or one participant's row of a window array."""
    return store / array / "c" / str(row) / (f"{day}/0/0" if array == "acc" else "0")


def _flip_byte(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _snapshot(path: Path) -> dict[str, np.ndarray]:
    opened = open_store(str(path))
    return {pid: opened.windows(pid).values for pid in opened.participants.index}


# ------------------------------------------------------------------ one writer


def test_a_second_writer_is_refused_naming_the_holder_and_readers_are_not_blocked(raw, store):
    before = _snapshot(store)
    with WriterLease.acquire(str(store), "accelstore features s.zarr"):
        with pytest.raises(LeaseHeldError) as refused:
            _ingest(raw, store)
        message = str(refused.value)
        assert f"{socket.gethostname()} pid {os.getpid()}" in message and "accelstore features s.zarr" in message
        result = CliRunner().invoke(main, ["-q", "ingest", str(raw), "-o", str(store), "--scheduler", "synchronous"])
        assert result.exit_code == 2 and "another writer holds the store" in result.output
        assert _snapshot(store).keys() == before.keys()  # a reader opens the store meanwhile
    assert not (store / LEASE_NAME).exists()  # released at the end of the block


def _write_lease(store: Path, **holder) -> None:
    lease = {"host": socket.gethostname(), "pid": 0, "started": 0.0, "command": "ingest", "since": "2024-01-01T00:00:00+00:00", "token": "t"}
    lease.update(holder)
    (store / LEASE_NAME).mkdir()
    (store / LEASE_NAME / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"accelstore_lease": lease}}))


def test_the_lease_of_a_process_that_no_longer_runs_is_taken_over(raw, store, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(gone.pid).create_time()
    gone.wait()
    _write_lease(store, pid=gone.pid, started=started)
    assert _ingest(raw, store).unchanged == ["A", "B"]
    assert "took over the writer lease" in caplog.text and not (store / LEASE_NAME).exists()


def test_a_reused_pid_is_not_the_holder(raw, store):
    """The recorded start time tells a live process that merely has the holder's pid from the holder."""
    _write_lease(store, pid=os.getpid(), started=psutil.Process().create_time() - 1000)
    assert _ingest(raw, store).unchanged == ["A", "B"]


def test_a_holder_on_another_host_is_refused_until_the_lease_is_broken(raw, store):
    _write_lease(store, host="elsewhere.example", pid=1234)
    with pytest.raises(LeaseHeldError, match=re.escape("elsewhere.example pid 1234")):
        _ingest(raw, store)
    assert _ingest(raw, store, break_lease=True).unchanged == ["A", "B"]


def test_a_writer_whose_lease_was_broken_stops_and_leaves_the_new_lease(store):
    first = WriterLease.acquire(str(store), "first")
    second = WriterLease.acquire(str(store), "second", break_lease=True)
    with pytest.raises(LeaseHeldError, match="second"):
        first.check()
    first.release()
    second.check()  # still the second's
    second.release()
    assert not (store / LEASE_NAME).exists()


def test_two_ingest_processes_started_at_once_one_writes_the_other_is_refused(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(6):
        write_csv(raw / f"P{i}.csv", "2024-01-01 10:00:00", "2024-01-01 10:20:00", rate=25)
    store = tmp_path / "both.zarr"
    command = [sys.executable, "-m", "accelstore", "-q", "ingest", str(raw), "-o", str(store), "--scheduler", "synchronous",
               "--no-lowpass", "--no-calibrate", "--no-nonwear"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    codes = sorted(code for code, *_ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert "another writer holds the store" in refused and len(refused.strip().splitlines()) == 1
    opened = open_store(str(store))
    assert sorted(opened.participants.index) == [f"P{i}" for i in range(6)]
    reference = tmp_path / "alone.zarr"
    _ingest(raw, reference)
    for pid, values in _snapshot(reference).items():
        np.testing.assert_array_equal(opened.windows(pid).values, values)


# ------------------------------------------------------------------ damage detected on read


def test_a_flipped_byte_in_an_acc_shard_is_an_error_naming_the_participant(store):
    _flip_byte(_shard(store, "acc", 0))
    opened = open_store(str(store))
    with pytest.raises(StoreDamageError, match="participant 'A'"):
        opened.windows("A")
    assert opened.windows("B").sizes["window"] > 0  # the other participant reads


def test_a_deleted_acc_shard_is_an_error_not_absent_data(store):
    _shard(store, "acc", 1, day=1).unlink()
    with pytest.raises(StoreDamageError, match=r"participant 'B', day 1: valid windows whose acceleration is absent"):
        open_store(str(store)).windows("B")


def test_a_deleted_valid_shard_disagrees_with_the_day_summary(store):
    _shard(store, "valid", 0).unlink()
    with pytest.raises(StoreDamageError, match="day summary says"):
        open_store(str(store)).windows("A")


def test_a_lost_status_chunk_is_an_error_not_vanished_participants(store):
    (store / "status" / "c" / "0").unlink()
    with pytest.raises(StoreDamageError, match="'status' has lost rows 0–1"):
        _ = open_store(str(store)).participants


def test_a_damaged_table_chunk_fails_its_checksum(store):
    _flip_byte(store / "id" / "c" / "0", offset=2)
    with pytest.raises(StoreDamageError, match="'id'"):
        _ = open_store(str(store)).participants


def test_single_array_reads_name_the_damaged_chunk(store):
    _flip_byte(_shard(store, "enmo", 1))
    opened = open_store(str(store))
    with pytest.raises(StoreDamageError, match="participant 'B': a chunk of 'enmo' is damaged"):
        opened.days_of("B", ("valid", "enmo"))
    with pytest.raises(StoreDamageError, match="row 1: a chunk of 'enmo' is damaged"):
        opened.window_values(1, "enmo", slice(0, 10))
    assert opened.days_of("A", ("valid", "enmo"))["enmo"].shape == (1, 8640)  # the other participant reads


def test_days_of_checks_valid_against_the_day_summary(store):
    _shard(store, "valid", 0).unlink()
    opened = open_store(str(store))
    with pytest.raises(StoreDamageError, match="participant 'A', day 0: 0 valid windows, the day summary says"):
        opened.days_of("A", ("valid",))
    assert opened.days_of("A", ("std",))["std"].shape == (1, 8640)  # without valid, nothing to check it against


def test_a_lost_day_summary_chunk_is_an_error(store):
    (store / "day_std_sum" / "c" / "0" / "0").unlink()
    with pytest.raises(StoreDamageError, match="'day_std_sum' has lost cells"):
        open_store(str(store)).day_summary("day_std_sum", 0)


def test_the_loader_refuses_damaged_data(store):
    from accelstore.dataset.windows import WindowDataset

    _shard(store, "acc", 0).unlink()
    dataset = WindowDataset(str(store), batch_size=8, tasks=(), augment=False, participants=["A"])
    with pytest.raises(StoreDamageError, match="acceleration is absent"):
        next(iter(dataset))


# ------------------------------------------------------------------ verify


def test_verify_passes_a_whole_store_and_finds_each_injected_damage(raw, store, tmp_path):
    assert verify(str(store), scheduler="synchronous", progress=False).ok
    result = CliRunner().invoke(main, ["-q", "verify", str(store), "--scheduler", "synchronous"])
    assert result.exit_code == 0, result.output

    _flip_byte(_shard(store, "acc", 0))  # A: a flipped byte
    _shard(store, "acc", 1, day=1).unlink()  # B: a deleted shard
    result = CliRunner().invoke(main, ["-q", "verify", str(store), "--scheduler", "synchronous", "--no-mark"])
    assert result.exit_code == 1
    assert "participant 'A', day 0: a chunk of 'acc' is damaged" in result.output
    assert "participant 'B', day 1: valid windows whose acceleration is absent" in result.output
    assert open_store(str(store)).participants.index.tolist() == ["A", "B"]  # --no-mark changed nothing

    report = verify(str(store), scheduler="synchronous", progress=False)
    assert sorted(report.damaged) == ["A", "B"] and report.marked
    opened = open_store(str(store))
    assert opened.participants.empty and set(opened.failures["error"]) == {"damaged"}

    # the re-run redoes both from their recorded sources, even when they are not among the inputs
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    rerun = _ingest(elsewhere, store)
    assert sorted(rerun.written) == ["A", "B"] and not rerun.failed
    reference = tmp_path / "reference.zarr"
    _ingest(raw, reference)
    repaired, want = _snapshot(store), _snapshot(reference)
    assert repaired.keys() == want.keys() and all(np.array_equal(repaired[p], want[p], equal_nan=True) for p in want)
    assert verify(str(store), scheduler="synchronous", progress=False).ok
    assert open_store(str(store)).failures.empty


def test_verify_finds_a_lost_table_chunk(store):
    (store / "n_windows" / "c" / "0").unlink()
    report = verify(str(store), scheduler="synchronous", progress=False)
    assert not report.ok and "'n_windows' has lost rows" in report.store_damage[0]
    result = CliRunner().invoke(main, ["-q", "verify", str(store), "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "damaged: " in result.output


def test_verify_finds_summaries_that_disagree_with_the_windows(store):
    group = zarr.open_group(str(store), mode="r+")
    group["valid_windows"][1] = group["valid_windows"][1] + 1
    report = verify(str(store), scheduler="synchronous", progress=False, mark=False)
    assert list(report.damaged) == ["B"] and "the table says" in report.damaged["B"][0]


def test_verify_of_a_path_that_is_not_a_store_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 2 and "no accelstore store here" in result.output


# ------------------------------------------------------------------ complete data is kept


def test_a_complete_participant_whose_file_turned_to_junk_stays_visible(raw, store):
    before = _snapshot(store)
    (raw / "A.csv").write_text("time,x,y,z\ngarbage\n")
    report = _ingest(raw, store)
    assert list(report.failed) == [str(raw / "A.csv")] and report.unchanged == ["B"]
    opened = open_store(str(store))
    np.testing.assert_array_equal(opened.windows("A").values, before["A"])  # still there, unchanged
    assert opened.failures.loc[str(raw / "A.csv"), "id"] == "A"  # the failure recorded against it


def test_a_changed_file_that_reads_replaces_the_participant(raw, store):
    write_csv(raw / "A.csv", "2024-01-01 12:00:00", "2024-01-01 12:01:00", rate=25)
    assert _ingest(raw, store).written == ["A"]
    assert open_store(str(store)).windows("A").sizes["window"] == 6


@pytest.mark.parametrize("name, pattern", [("..csv", None), ("P01.csv", r"X?(\d*)Q?")])
def test_an_empty_participant_id_is_refused(tmp_path, name, pattern):
    with pytest.raises(ValueError, match="empty participant id"):
        participant_id(tmp_path / name, pattern)


def test_a_file_giving_an_empty_id_is_a_failure_not_a_row(store, tmp_path):
    named = tmp_path / "..csv"  # named directly: in a folder it would be skipped as a dotfile
    write_csv(named, "2024-01-01 10:00:00", "2024-01-01 10:01:00", rate=25)
    report = _ingest(named, store)
    assert report.failed[str(named)]["error"] == "bad id"
    assert "" not in open_store(str(store)).participants.index


# ------------------------------------------------------------------ queries


def test_query_times_are_checked(store):
    opened = open_store(str(store))
    with pytest.raises(InputError, match="not before"):
        opened.windows("A", "2024-01-01 11:00", "2024-01-01 10:00")
    with pytest.raises(InputError, match="too far"):
        opened.windows("A", "3000-01-01")
    with pytest.raises(InputError, match="too far"):
        opened.windows("A", None, "1000-01-01")
    assert opened.windows("A", None, "1500-01-01").sizes["window"] == 0  # before the recording: nothing
    assert opened.windows("A", "2024-01-02", "2024-01-03").sizes["window"] == 0  # after the recording: nothing
    assert opened.windows("A", "2024-01-01 10:01", "2024-01-01 10:02").sizes["window"] == 6


def test_a_store_whose_creation_did_not_finish_is_finished_by_the_next_ingest(raw, tmp_path):
    path = tmp_path / "half.zarr"
    zarr.open_group(str(path), mode="w", attributes={"accelstore": {"format": FORMAT_VERSION}})
    with pytest.raises(StoreError, match="creation did not finish"):
        open_store(str(path))
    assert sorted(_ingest(raw, path).written) == ["A", "B"]


def test_ingest_into_another_zarr_store_is_refused(raw, tmp_path):
    path = tmp_path / "other.zarr"
    zarr.open_group(str(path), mode="w").create_array("x", shape=(3,), dtype="int8")
    with pytest.raises(StoreError, match="not an accelstore store"):
        _ingest(raw, path)
    assert not (path / LEASE_NAME).exists()


def test_a_growth_killed_half_way_is_invisible_to_readers(store):
    group = zarr.open_group(str(store), mode="r+")
    group["status"].resize((10,))  # as a driver killed after its first resize leaves it
    group["acc"].resize((10, *group["acc"].shape[1:]))
    assert open_store(str(store)).participants.index.tolist() == ["A", "B"]
    assert open_store(str(store)).dataset.sizes["participant"] == 2


@pytest.mark.parametrize("damage", ["garbled", "deleted"])
def test_damaged_array_metadata_is_a_store_fault_naming_the_array(store, damage):
    metadata = store / "acc" / "zarr.json"
    if damage == "garbled":
        metadata.write_text('{"zarr_format": 3, "node_')
    else:
        metadata.unlink()
    with pytest.raises(StoreDamageError, match="array 'acc'"):
        open_store(str(store))
    result = CliRunner().invoke(main, ["query", str(store), "A", "-o", str(store.parent / "a.npy")])
    assert result.exit_code == 1 and "array 'acc'" in result.output
