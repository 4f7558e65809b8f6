"""Object storage for real: stores and raw files on S3, against moto's S3 server on loopback.

Nothing is passed as storage options: the store, the raw files, the Dask workers and the loader
find the server and the credentials through the usual ``AWS_*`` variables alone (s3_server.py),
and none of them ends up in the store. The module's store is ingested once, by a real
LocalCluster, from a local folder and an S3 prefix.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from s3_server import ACCESS_KEY, SECRET_KEY, new_bucket, s3_fixture, s3_server_fixture  # noqa: F401 - the fixtures s3, s3_server
from s3fs import S3FileSystem

from accelstore import open_store
from accelstore.dataset.windows import WindowDataset
from accelstore.errors import LeaseHeldError
from accelstore.pipelines.features import recompute
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.ingest_task import FileTask, ingest_file
from accelstore.pipelines.pretext_validation import build_validation_set
from accelstore.pipelines.verify import verify
from accelstore.readers import ProcessingOptions, file_digest
from accelstore.readers.discovery import discover
from accelstore.readers.sources import source_file
from accelstore.store import read_holdout, read_validation_set
from accelstore.store.lease import WriterLease
from helpers import run_cli, signal, time_limit, write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
SYNC = "synchronous"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """P1 crosses midnight (two shards); P2 and P3 one day each. Local files, copied to S3 by the tests."""
    folder = tmp_path_factory.mktemp("raw")
    (folder / "local").mkdir()
    write_csv(folder / "local" / "P1.csv", "2024-03-01 23:58:00", "2024-03-02 00:05:00")
    write_csv(folder / "P2.csv", "2024-03-05 12:00:00", "2024-03-05 12:03:00", rate=25)
    write_csv(folder / "P3.csv", "2024-03-07 08:00:00", "2024-03-07 08:02:00")
    return folder


@pytest.fixture(scope="module")
def ingested(s3_server, raw):
    """The module's store on S3: P1 from a local folder, P2 from an S3 prefix (beside an object of
    no supported format and a hidden one), and a prefix that does not exist. Ingested by a
    LocalCluster whose worker processes write the shards. (Objects named directly:
    test_discovery_of_s3_prefixes_and_objects, and the tasks below.)"""
    with new_bucket(s3_server) as bucket:
        bucket.fs.put_file(str(raw / "P2.csv"), f"{bucket.name}/raw/P2.csv")
        bucket.fs.pipe_file(f"{bucket.name}/raw/notes.txt", b"not a recording")
        bucket.fs.pipe_file(f"{bucket.name}/raw/.P9.csv", b"hidden")
        inputs = [str(raw / "local"), bucket.url("raw"), bucket.url("absent/")]
        with time_limit(180):  # a server that stopped answering would otherwise be retried for long
            report = ingest(inputs, bucket.url("x.zarr"), options=RAW, workers=1, progress=False)
        yield bucket, report


def test_ingest_into_s3_from_local_and_s3_raw_files(ingested, raw):
    bucket, report = ingested
    assert sorted(report.written) == ["P1", "P2"]
    assert list(report.failed) == [bucket.url("absent/")]
    assert report.failed[bucket.url("absent/")]["error"] == "unreadable input"
    table = open_store(bucket.url("x.zarr")).participants
    local = raw / "local" / "P1.csv"
    assert table.at["P1", "source"] == str(local.resolve())  # local sources stay absolute paths
    assert table.at["P2", "source"] == bucket.url("raw/P2.csv")  # URL sources are their URL
    for pid, path in (("P1", local), ("P2", raw / "P2.csv")):
        assert (table.at[pid, "source_size"], table.at[pid, "source_hash"]) == (path.stat().st_size, file_digest(path))
    # The shards are written by the LocalCluster's worker processes only (the driver writes
    # metadata): that they are there shows the workers inherited the AWS variables.
    shards = bucket.fs.find(f"{bucket.name}/x.zarr/acc/c")
    assert len(shards) == 3  # P1's two days, P2's one


def test_the_store_holds_no_credentials_and_no_endpoint(ingested):
    bucket, _ = ingested
    endpoint = bucket.server.endpoint.removeprefix("http://")
    objects = bucket.fs.find(f"{bucket.name}/x.zarr")
    assert any(path.endswith("zarr.json") for path in objects) and not any("writer_lease" in path for path in objects)
    for path in objects:
        content = bucket.fs.cat_file(path)
        for secret in (ACCESS_KEY, SECRET_KEY, endpoint):
            assert secret.encode() not in content, f"{secret} in {path}"


def test_open_windows_and_info_from_s3(ingested):
    bucket, _ = ingested
    store = open_store(bucket.url("x.zarr"))
    windows = store.windows("P1", "2024-03-01 23:59:00", "2024-03-02 00:01:00")
    assert windows.sizes["window"] == 12 and bool(windows["valid"].all())
    seconds = (windows["time"].values[:, None] - np.datetime64("2024-03-01")) / np.timedelta64(1, "s") + np.arange(300) / 30
    expected = signal(seconds.ravel()).reshape(12, 300, 3).transpose(0, 2, 1)
    np.testing.assert_allclose(windows.values, expected, atol=1e-3)
    assert windows["time"].values[0] == np.datetime64("2024-03-01T23:59:00")

    result = run_cli("info", bucket.url("x.zarr"))
    assert result.exit_code == 0, result.output
    assert "participants   2" in result.stdout
    assert f"{bucket.url('absent/')}: unreadable input" in result.stdout


@pytest.fixture(scope="module")
def downloaded(ingested, tmp_path_factory) -> Path:
    """The module's store, downloaded as it is (not to be changed: tests copy it)."""
    bucket, _ = ingested
    path = tmp_path_factory.mktemp("downloaded") / "x.zarr"
    bucket.fs.get(f"{bucket.name}/x.zarr/", str(path), recursive=True)
    return path


def test_loader_reads_each_shard_with_one_get_and_streams_what_local_disk_does(ingested, downloaded):
    bucket, _ = ingested
    settings = {"batch_size": 16, "tasks": ("aot", "permute"), "augment": True, "seed": 3}
    from_s3 = WindowDataset(bucket.url("x.zarr"), **settings)
    from_disk = WindowDataset(str(downloaded), **settings)
    mark = bucket.server.mark
    batches = list(from_s3)
    requests = bucket.server.requests_since(mark)
    gets = Counter(r.key for r in requests if r.method == "GET")
    expected = list(from_disk)
    assert len(batches) == len(expected) > 1
    for batch, local in zip(batches, expected):
        assert batch.keys() == local.keys()
        for name in batch:
            torch.testing.assert_close(batch[name], local[name], rtol=0, atol=0)
    shards = np.count_nonzero(open_store(bucket.url("x.zarr")).day_summary("day_valid_windows"))
    assert shards == 3
    acc = {key: count for key, count in gets.items() if key.startswith("x.zarr/acc/c/")}
    assert len(acc) == shards and set(acc.values()) == {1}  # each shard read whole, once
    assert sum(gets.values()) == shards, f"GETs besides the acc shards: {gets}"
    assert len(requests) == shards, [(r.method, r.key) for r in requests]  # no HEAD before each GET either


def test_writer_lease_on_s3_admits_one_writer(s3, caplog):
    url = s3.url("leased.zarr")
    with WriterLease.acquire(url, "first writer"), pytest.raises(LeaseHeldError, match=r"another writer holds the store: .*'first writer'"):
        WriterLease.acquire(url, "second writer")
    assert "best effort" not in caplog.text  # refused by the conditional PUT, not by a look first
    with WriterLease.acquire(url, "third writer"):  # released: free again
        pass
    assert s3.fs.find(f"{s3.name}/leased.zarr") == []


def test_a_bad_s3_object_fails_by_its_url_after_one_download_that_is_then_deleted(s3, tmp_path, monkeypatch):
    """The task a worker runs, on its own: these fail before anything is written to a store."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s3.fs.pipe_file(f"{s3.name}/raw/B1.csv", b"time,x,y,z\n2024-03-01 10:00:00,0,0,1\nnot a time,0,0,1\n2024-03-01 10:00:02,0,0,1\n")
    s3.fs.pipe_file(f"{s3.name}/raw/B2.txt", b"named directly: taken, and refused by the reader")
    mark = s3.server.mark
    results = {name: ingest_file(FileTask(s3.url(f"raw/{name}"), "B", 0, s3.url("x.zarr"), RAW)) for name in ("B1.csv", "B2.txt")}
    assert {name: (r.outcome, r.error) for name, r in results.items()} == {"B1.csv": ("failed", "bad time"), "B2.txt": ("failed", "unsupported format")}
    for name, result in results.items():
        assert result.message.startswith(f"{s3.url('raw/' + name)}: {result.error}:") and "accelstore-source-" not in result.message
    assert "'.txt' is not one of" in results["B2.txt"].message  # the copy has the object's name: the reader tells formats by it
    assert Counter(r.key for r in s3.server.requests_since(mark) if r.method == "GET") == {"raw/B1.csv": 1, "raw/B2.txt": 1}
    assert list(tmp_path.iterdir()) == []  # the copies are gone

    with source_file(s3.url("raw/B1.csv")) as copy:
        assert copy.path.parent.parent == tmp_path and copy.path.name == "B1.csv" and copy.path.is_file()
        assert (copy.size, copy.digest) == (len(copy.path.read_bytes()), file_digest(copy.path))
    assert not copy.path.exists() and list(tmp_path.iterdir()) == []


def test_an_s3_object_replaced_during_its_download_is_refused_as_changed(s3, raw):
    url = s3.url("raw/P2.csv")
    s3.fs.put_file(str(raw / "P3.csv"), f"{s3.name}/raw/P2.csv")
    s3.server.replace_on_next_get(s3.name, "raw/P2.csv", (raw / "P2.csv").read_bytes())
    mark = s3.server.mark
    result = ingest_file(FileTask(url, "P2", 0, s3.url("x.zarr"), RAW))
    assert [r.method for r in s3.server.requests_since(mark) if r.key == "raw/P2.csv"].count("GET") == 1  # a new version landed then
    assert (result.outcome, result.error) == ("failed", "changed while reading")
    assert result.message == f"{url}: changed while it was being read; run ingest again"
    with source_file(url) as copy:  # the new version, whole
        assert (copy.size, copy.digest) == ((raw / "P2.csv").stat().st_size, file_digest(raw / "P2.csv")) and not copy.changed()
    unchanged = ingest_file(FileTask(url, "P2", 0, s3.url("x.zarr"), RAW, expected=(copy.size, copy.digest)))
    assert unchanged.outcome == "unchanged"


def test_verify_ingest_features_and_pretext_write_to_a_store_on_s3(ingested, s3, downloaded, tmp_path):
    """On a copy of the module's store: verify marks a participant whose shard is lost, ingest
    with no inputs redoes it from its recorded source (an S3 URL), features then find nothing
    to change, and the pretext validation set is the one drawn from the same store on disk."""
    bucket, _ = ingested
    url = s3.url("copy.zarr")
    bucket.fs.copy(f"{bucket.name}/x.zarr/", url.removeprefix("s3://"), recursive=True)
    row = int(open_store(url).participants.at["P2", "row"])
    s3.fs.rm_file(f"{s3.name}/copy.zarr/acc/c/{row}/0/0/0")
    assert list(verify(url, scheduler=SYNC, progress=False).damaged) == ["P2"]
    redone = ingest([], url, options=RAW, scheduler=SYNC, progress=False)
    assert redone.written == ["P2"] and redone.ok
    np.testing.assert_array_equal(open_store(url).windows("P2").values, open_store(str(downloaded)).windows("P2").values)

    features = recompute(url, scheduler=SYNC, progress=False)
    assert features.ok and sorted(features.recomputed) == ["P1", "P2"] and features.changed == []
    local = str(shutil.copytree(downloaded, tmp_path / "x.zarr"))
    on_s3 = build_validation_set(url, windows=6, holdout_fraction=0.5, seed=1, scheduler=SYNC, progress=False)
    on_disk = build_validation_set(local, windows=6, holdout_fraction=0.5, seed=1, scheduler=SYNC, progress=False)
    assert on_s3.holdout == on_disk.holdout == read_holdout(url) and on_s3.holdout
    stored, expected = read_validation_set(url), read_validation_set(local)
    for name in ("x", "row", "window"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(expected, name), err_msg=name)


def test_discovery_of_s3_prefixes_and_objects(s3):
    for name in ("a/P1.cwa", "a/deeper/P2.csv.gz", "a/.hidden.csv", "a/notes.txt", "b.gt3x"):
        s3.fs.pipe_file(f"{s3.name}/{name}", b"x")
    files, errors = discover([s3.url("a/"), "s3a://" + s3.url("b.gt3x").removeprefix("s3://"), s3.url("missing"), "s3://no-such-bucket-here/x"])
    assert files == [s3.url("a/P1.cwa"), s3.url("a/deeper/P2.csv.gz"), s3.url("b.gt3x")]  # sorted; s3a:// named as s3://
    assert [(e.kind, e.path) for e in errors] == [
        ("unreadable input", s3.url("missing")),
        ("unreadable input", "s3://no-such-bucket-here/x"),
    ]
    assert all(str(e).endswith("no such object or prefix") for e in errors)



def test_a_store_whose_storage_cannot_be_reached_is_a_one_line_usage_error(tmp_path, monkeypatch):
    for name, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)  # port 1: nothing listens, so every request is refused
    S3FileSystem.clear_instance_cache()  # fsspec reuses a file system made for the moto server: its key ignores the environment
    write_csv(tmp_path / "A.csv", "2024-01-01 10:00:00", "2024-01-01 10:01:00", rate=25)
    for args in (["info", "s3://nobucket/x.zarr"], ["ingest", str(tmp_path), "-o", "s3://nobucket/x.zarr", "--scheduler", "synchronous"]):
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert result.stderr.startswith("error: s3://nobucket/x.zarr: cannot reach the store: "), result.stderr
