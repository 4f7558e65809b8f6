"""Ingest's second round: a recording longer than the window axis grows it; a changed file is redone."""

from __future__ import annotations

import numpy as np

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.readers import ProcessingOptions
from helpers import write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)


def test_a_recording_longer_than_the_window_axis_grows_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "A.csv", "2024-01-01 23:59:00", "2024-01-02 00:01:00")  # day 0 and day 1
    store = tmp_path / "s.zarr"
    report = ingest([raw], str(store), options=RAW, max_days=1, workers=1, progress=False)
    assert report.written == ["A"]
    opened = open_store(str(store))
    assert opened.group["acc"].shape[1] == 2 * 8640 and opened.group["day_valid_windows"].shape[1] == 2
    windows = opened.windows("A")
    assert windows.sizes["window"] == 12 and bool(windows["valid"].all())


def test_a_changed_file_is_redone_and_its_stale_days_cleared(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "B.csv", "2024-01-01 23:58:00", "2024-01-02 00:02:00")
    store = tmp_path / "s.zarr"
    assert ingest([raw], str(store), options=RAW, scheduler="synchronous", progress=False).written == ["B"]
    assert (store / "acc" / "c" / "0" / "1" / "0" / "0").is_file()  # a shard for day 1

    write_csv(raw / "B.csv", "2024-01-01 22:00:00", "2024-01-01 22:03:00")  # same name, other content
    report = ingest([raw], str(store), options=RAW, scheduler="synchronous", progress=False)
    assert report.written == ["B"] and report.unchanged == []
    opened = open_store(str(store))
    windows = opened.windows("B")
    assert windows["time"].values[0] == np.datetime64("2024-01-01T22:00:00") and windows.sizes["window"] == 18
    assert not (store / "acc" / "c" / "0" / "1" / "0" / "0").is_file()  # day 1 of the old recording is gone
    assert int(opened.group["valid"][0, :].sum()) == opened.participants.at["B", "valid_windows"] == 18
