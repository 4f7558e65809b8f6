"""Queries by time: exact window ranges, gaps as invalid windows, fsspec URLs, the lazy dataset,
choosing participants, the CLI."""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.readers import ProcessingOptions
from accelstore.store import Status
from helpers import run_cli, signal, write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
GAP = ("2024-03-02 00:01:00", "2024-03-02 00:02:30")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """P1 crosses midnight with a 90-s gap; P2 starts on another day."""
    raw = tmp_path_factory.mktemp("csv")
    write_csv(raw / "P1.csv", "2024-03-01 23:58:00", "2024-03-02 00:05:00", gaps=(GAP,))
    write_csv(raw / "P2.csv", "2024-03-05 12:00:00", "2024-03-05 12:03:00", rate=25)
    path = raw.parent / "query.zarr"
    report = ingest([raw], str(path), options=RAW, workers=1, progress=False)
    assert report.ok
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Rows that are not data: A and C complete, B a file that fails (its row marked failed),
    and rows reserved but never used."""
    raw = tmp_path_factory.mktemp("mixed")
    write_csv(raw / "A.csv", "2024-03-01 10:00:00", "2024-03-01 10:02:00", rate=25)
    (raw / "B.csv").write_text("time,x,y,z\nnot a time,1,2,3\n")
    write_csv(raw / "C.csv", "2024-03-03 23:59:00", "2024-03-04 00:01:00", rate=25)
    path = raw.parent / "mixed.zarr"
    report = ingest([raw], str(path), options=RAW, scheduler="synchronous", reserve=6, progress=False)
    assert sorted(report.written) == ["A", "C"] and list(report.failed) == [str(raw / "B.csv")]
    group = zarr.open_group(str(path), mode="r")
    ids, status = group["id"][:].tolist(), group["status"][:].tolist()
    assert status[ids.index("B")] == Status.FAILED and status.count(Status.EMPTY) == 3  # what the tests rely on
    return path


def test_participants_table_knows_day0_and_extent(store):
    table = open_store(str(store)).participants
    assert table.at["P1", "day0"] == pd.Timestamp("2024-03-01")
    assert table.at["P1", "first_window"] == (23 * 3600 + 58 * 60) // 10
    assert table.at["P1", "n_days"] == 2 and table.at["P2", "n_days"] == 1
    assert table.at["P2", "device_rate"] == 25


def test_query_returns_exactly_the_range_with_gaps_invalid(store):
    windows = open_store(str(store)).windows("P1", "2024-03-02 00:00:00", "2024-03-02 00:03:00")
    expected_times = pd.date_range("2024-03-02 00:00:00", "2024-03-02 00:02:50", freq="10s")
    np.testing.assert_array_equal(windows["time"].values, expected_times.to_numpy())
    in_gap = (expected_times >= pd.Timestamp(GAP[0])) & (expected_times < pd.Timestamp(GAP[1]))
    np.testing.assert_array_equal(windows["valid"].values, ~in_gap)
    assert windows.dtype == np.float32 and windows.dims == ("window", "axis", "sample")
    assert np.isnan(windows.values[in_gap]).all()


def test_values_are_the_signal_at_the_grid_points_in_g(store):
    windows = open_store(str(store)).windows("P1", "2024-03-01 23:58:00", "2024-03-02 00:01:00")
    assert windows.sizes["window"] == 18 and bool(windows["valid"].all())
    seconds = (windows["time"].values[:, None] - np.datetime64("2024-03-01")) / np.timedelta64(1, "s") + np.arange(300) / 30
    expected = signal(seconds.ravel()).reshape(18, 300, 3).transpose(0, 2, 1)
    np.testing.assert_allclose(windows.values, expected, atol=1e-3)


def test_query_between_window_boundaries_includes_partly_covered_windows(store):
    windows = open_store(str(store)).windows("P1", "2024-03-01 23:58:05", "2024-03-01 23:58:21")
    assert windows["time"].values[0] == np.datetime64("2024-03-01T23:58:00") and windows.sizes["window"] == 3


def test_default_range_is_the_whole_recording(store):
    windows = open_store(str(store)).windows("P2")
    assert windows["time"].values[0] == np.datetime64("2024-03-05T12:00:00")
    # at 25 Hz the last sample (12:02:59.96) falls short of the last grid point (12:02:59.967)
    assert windows.sizes["window"] == 18 and windows["valid"].values.tolist() == [True] * 17 + [False]


def test_unknown_participant_is_a_key_error_naming_the_store(store):
    with pytest.raises(KeyError, match="P9"):
        open_store(str(store)).windows("P9")


def test_time_zone_aware_query_is_refused(store):
    with pytest.raises(ValueError, match="time zone"):
        open_store(str(store)).windows("P1", pd.Timestamp("2024-03-02", tz="UTC"))


def test_store_opens_from_an_fsspec_url(store):
    memory = fsspec.filesystem("memory")
    memory.put(str(store), "/copied.zarr", recursive=True)
    remote = open_store("memory://copied.zarr")
    local = open_store(str(store))
    xr.testing.assert_identical(remote.windows("P1", GAP[0], GAP[1]), local.windows("P1", GAP[0], GAP[1]))


def test_dataset_is_lazy_float32_g_and_agrees_with_windows(store):
    opened = open_store(str(store))
    ds = opened.dataset
    assert ds["acc"].dtype == np.float32 and ds["acc"].chunks is None
    assert not ds["acc"].variable._in_memory
    row = int(opened.participants.at["P1", "row"])
    first = int(opened.participants.at["P1", "first_window"])
    from_dataset = ds["acc"].sel(participant="P1").isel(window=slice(first, first + 6)).values
    np.testing.assert_array_equal(from_dataset, opened.windows("P1").values[:6])
    assert int(ds["row"].sel(participant="P1")) == row
    dask_view = opened.to_dataset(dask=True)
    assert dask_view["acc"].chunks[1][0] == 8640


def test_dataset_holds_only_the_complete_participants_indexed_by_id(mixed):
    opened = open_store(str(mixed))
    assert opened.shape[0] == 6  # six rows, two of them data
    for ds in (opened.dataset, opened.to_dataset(dask=True)):
        assert ds["participant"].values.tolist() == ["A", "C"]
        assert all(ds[name].sizes["participant"] == 2 for name in ("acc", "valid", "std", "enmo", "day_valid_windows", "day_std_sum"))
        assert ds["row"].values.tolist() == opened.participants["row"].tolist()
        assert ds["day0"].values.tolist() == opened.participants["day0"].to_numpy().tolist()
        assert "status" not in ds.coords and "B" not in ds.indexes["participant"]
        for pid in ("A", "C"):
            windows = opened.windows(pid)
            recorded = ds.sel(participant=pid).isel(window=slice(int(windows["window"][0]), int(windows["window"][-1]) + 1))
            np.testing.assert_array_equal(recorded["acc"].values, windows.values)
            np.testing.assert_array_equal(recorded["valid"].values, windows["valid"].values)
            assert int(ds["day_valid_windows"].sel(participant=pid).sum()) == opened.participants.at[pid, "valid_windows"] > 0


def test_select_gives_the_named_complete_participants_once_each_in_the_order_given(mixed):
    opened = open_store(str(mixed))
    assert opened.select().index.tolist() == ["A", "C"]
    assert opened.select(["C", "A", "C"]).index.tolist() == ["C", "A"]
    assert opened.select("C").index.tolist() == ["C"] and opened.select([]).empty
    assert opened.select(["C"]).at["C", "row"] == opened.participant("C")["row"]
    with pytest.raises(KeyError, match=r"participants 'B', 'Z' are not in .*mixed.zarr \(or not completely ingested\)"):
        opened.select(["A", "B", "Z"])  # B: a failed file's row, Z: unknown
    with pytest.raises(KeyError, match="participant 'B' is not in"):
        opened.participant("B")


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".nc"])
def test_cli_query_saves_each_format(store, tmp_path, suffix):
    out = tmp_path / f"P1{suffix}"
    run = run_cli("query", str(store), "P1", "--start", "2024-03-02 00:00:00", "--end", "2024-03-02 00:01:30", "-o", str(out))
    assert run.exit_code == 0, run.output
    expected = open_store(str(store)).windows("P1", "2024-03-02 00:00:00", "2024-03-02 00:01:30")
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), expected.values)
    elif suffix == ".nc":
        saved = xr.load_dataarray(out)
        np.testing.assert_array_equal(saved.values, expected.values)
        np.testing.assert_array_equal(saved["valid"].values.astype(bool), expected["valid"].values)
    else:
        frame = pd.read_csv(out, parse_dates=["time"])
        assert len(frame) == expected.size // 3
        assert frame["time"].iloc[301] == pd.Timestamp("2024-03-02 00:00:10.033333333")
        np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy()[:300], expected.values[0].T, atol=5e-4)


def test_cli_exit_status_for_unknown_participant_and_non_store(store, tmp_path):
    unknown = run_cli("query", str(store), "P9", "-o", str(tmp_path / "x.npy"))
    assert unknown.exit_code == 1 and "P9" in unknown.stderr
    not_a_store = run_cli("info", str(tmp_path))
    assert not_a_store.exit_code == 2 and str(tmp_path) in not_a_store.stderr


def test_cli_info_reports_the_counts(store):
    run = run_cli("info", str(store), "--json")
    import json

    summary = json.loads(run.stdout)
    assert summary["participants"] == 2
    assert summary["valid_hours"] == pytest.approx((7 * 6 - 9 + 17) * 10 / 3600)
    assert summary["bytes_stored"] > 0 and summary["failures"] == 0
