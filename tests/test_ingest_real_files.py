"""Ingest of the real device files, good and bad together, through the CLI and a LocalCluster."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import zarr

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.readers import ProcessingOptions
from helpers import GOOD_DEVICE_FILES, TRUNCATED_FILE, UNSUPPORTED_FILE, run_cli_process

BAD_FILES = (UNSUPPORTED_FILE, TRUNCATED_FILE, "zero-bytes.cwa", "random-bytes.cwa")


@pytest.fixture(scope="module")
def ingested(devices_dir, tmp_path_factory):
    """One CLI run over every real file plus a zero-byte and a random-bytes .cwa."""
    raw = tmp_path_factory.mktemp("raw")
    for name in GOOD_DEVICE_FILES + (UNSUPPORTED_FILE, TRUNCATED_FILE):
        shutil.copy(devices_dir / name, raw / name)
    (raw / "zero-bytes.cwa").write_bytes(b"")
    (raw / "random-bytes.cwa").write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    store = raw.parent / "real.zarr"
    run = run_cli_process("-q", "ingest", str(raw), "-o", str(store), "--workers", "2", timeout=600)  # a process: the test reads its log on stderr
    return raw, store, run


def test_exit_status_says_some_files_failed(ingested):
    _, _, run = ingested
    assert run.returncode == 1, run.stderr
    assert f"{len(GOOD_DEVICE_FILES)} written" in run.stdout and f"{len(BAD_FILES)} failed" in run.stdout


def test_every_bad_file_is_listed_with_a_one_line_reason(ingested):
    raw, store, run = ingested
    failures = open_store(str(store)).failures
    assert sorted(failures.index) == sorted(str(raw / name) for name in BAD_FILES)
    assert failures.loc[str(raw / UNSUPPORTED_FILE), "error"] == "unsupported format"
    assert failures.loc[str(raw / TRUNCATED_FILE), "error"] == "truncated file"
    assert failures.loc[str(raw / "zero-bytes.cwa"), "error"] == "empty file"
    assert failures.loc[str(raw / "random-bytes.cwa"), "error"] == "corrupt file"
    for source, message in failures["message"].items():
        assert message.startswith(source) and "\n" not in message and "Traceback" not in message
        assert message in run.stderr  # printed at the end of the run


def test_every_good_file_is_ingested_and_matches_actipy_within_one_milli_g(ingested):
    import actipy

    _, store, _ = ingested
    opened = open_store(str(store))
    assert sorted(opened.participants.index) == sorted(name.split(".")[0] for name in GOOD_DEVICE_FILES)
    for pid, row in opened.participants.iterrows():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, _ = actipy.read_device(
                row["source"], lowpass_hz=20, calibrate_gravity=True, detect_nonwear=True, resample_hz=None, verbose=False
            )
        windows = opened.windows(pid)
        valid = windows.where(windows["valid"], drop=True)
        assert valid.sizes["window"] >= 1, pid
        assert int(windows["valid"].sum()) == row["valid_windows"]
        day0 = np.datetime64(row["day0"], "ns")
        source_seconds = (data.index.to_numpy(dtype="datetime64[ns]") - day0) / np.timedelta64(1, "s")
        grid_seconds = (valid["time"].values[:, None] - day0) / np.timedelta64(1, "s") + np.arange(300) / 30
        for axis in "xyz":
            expected = np.interp(grid_seconds.ravel(), source_seconds, data[axis].to_numpy(np.float64))
            error = np.abs(expected - valid.sel(axis=axis).values.ravel()).max()
            assert error <= 1e-3, f"{pid} {axis}: {error * 1000:.2f} milli-g"


def test_corrupt_blocks_are_skipped_and_counted(ingested):
    _, store, _ = ingested
    row = open_store(str(store)).participants.loc["GGIRread__ax3_testfile_corrupt_blocks_0_13_14_142_143_144"]
    assert row["read_errors"] > 0 and row["valid_windows"] > 0


def test_device_metadata_lands_in_the_table(ingested):
    _, store, _ = ingested
    table = open_store(str(store)).participants
    assert table.at["skdh__ax3_sample", "device_rate"] == 200
    assert table.at["GGIR__actigraph_testfile", "device"] == "Actigraph"
    assert table.at["skdh__gnactv_sample", "device"] == "GENEActiv"
    assert (table["source_size"] > 0).all() and (table["source_hash"].str.len() == 32).all()


def test_a_rerun_ingests_nothing_new(ingested, tmp_path):
    raw, store, _ = ingested
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    before = _snapshot(copy)
    report = ingest([raw], str(copy), options=ProcessingOptions(), workers=2, progress=False)
    assert report.written == []
    assert sorted(report.unchanged) == sorted(name.split(".")[0] for name in GOOD_DEVICE_FILES)
    assert len(report.failed) == len(BAD_FILES)
    assert _snapshot(copy) == before


def _snapshot(store) -> dict[str, bytes]:
    """Every chunk and shard file's bytes, plus the table, for an exact before/after comparison."""
    files = {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file() and p.name != "zarr.json"}
    group = zarr.open_group(str(store), mode="r")
    files["status"] = group["status"][:].tobytes()
    return files
