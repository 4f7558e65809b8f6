"""Bad CSV input, values beyond the store's range and implausible spans: each a typed one-line error
or a documented reading, never a guess, a clipped value or a blanked file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from accelstore import open_store
from accelstore.cli import main
from accelstore.pipelines.ingest import ingest
from accelstore.processing import read_recording
from accelstore.readers import (
    AmbiguousTimeError,
    BadTimeError,
    BadValueError,
    ProcessingOptions,
    ReaderError,
    SpanTooLongError,
)
from helpers import signal

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
START = pd.Timestamp("2024-03-01 08:00:00")


def raw(**fields) -> ProcessingOptions:
    return ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False, **fields)


def times(n: int = 500, start: pd.Timestamp = START, step_ms: int = 20) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq=f"{step_ms}ms").as_unit("ns")


def write(path: Path, time_column, xyz: np.ndarray | None = None) -> Path:
    """A time,x,y,z CSV with the time column exactly as given (strings or numbers)."""
    n = len(time_column)
    xyz = np.tile([0.1, -0.2, 1.0], (n, 1)) if xyz is None else xyz
    pd.DataFrame({"time": list(time_column), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}).to_csv(path, index=False)
    return path


def refused(path: Path, error: type[ReaderError], options: ProcessingOptions = RAW) -> str:
    """The one-line message of the error reading ``path`` raises, checked to name the file."""
    with pytest.raises(error) as caught:
        read_recording(path, options)
    message = str(caught.value)
    assert type(caught.value) is error and message.startswith(f"{path}: {error.kind}: ") and "\n" not in message
    return message


# ---------------------------------------------------------------- UTC offsets: the local clock is kept


@pytest.mark.parametrize(
    "suffix, offset", [("+01:00", "+01:00"), ("-05:30", "-05:30"), ("+0100", "+01:00"), ("Z", "+00:00"), ("", "")]
)
def test_a_utc_offset_keeps_the_local_wall_time_and_is_recorded(tmp_path, suffix, offset):
    expected = times()
    path = write(tmp_path / "a.csv", expected.strftime("%Y-%m-%d %H:%M:%S.%f") + suffix)
    recording = read_recording(path, RAW)
    np.testing.assert_array_equal(recording.time, expected.to_numpy())  # 08:00 stays 08:00, not shifted to UTC
    assert recording.info["UtcOffset"] == offset


def test_clocks_put_forward_keep_each_samples_local_time_and_the_first_offset(tmp_path):
    before, after = times(250), times(250, START + pd.Timedelta("1h") + pd.Timedelta(seconds=5))
    text = list(before.strftime("%Y-%m-%dT%H:%M:%S.%f+01:00")) + list(after.strftime("%Y-%m-%dT%H:%M:%S.%f+02:00"))
    recording = read_recording(write(tmp_path / "spring.csv", text), RAW)
    np.testing.assert_array_equal(recording.time, before.append(after).to_numpy())  # an hour's gap in local time
    assert recording.info["UtcOffset"] == "+01:00"


def test_clocks_put_back_with_samples_either_side_are_refused(tmp_path):
    before, after = times(250), times(250, START - pd.Timedelta("1h") + pd.Timedelta(seconds=5))
    text = list(before.strftime("%Y-%m-%d %H:%M:%S.%f+02:00")) + list(after.strftime("%Y-%m-%d %H:%M:%S.%f+01:00"))
    message = refused(write(tmp_path / "autumn.csv", text), AmbiguousTimeError)
    assert "from +02:00 to +01:00" in message and "data row 251" in message and "07:00:05" in message


def test_an_offset_on_some_times_only_is_refused(tmp_path):
    text = list(times(250).strftime("%Y-%m-%d %H:%M:%S.%f+01:00")) + list(times(250, START + pd.Timedelta("10s")).strftime("%Y-%m-%d %H:%M:%S.%f"))
    assert "data row 251" in refused(write(tmp_path / "some.csv", text), AmbiguousTimeError)


@pytest.mark.parametrize("layout", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M"])
def test_iso_8601_is_read_without_options(tmp_path, layout):
    step_ms = 60_000 if layout.endswith("%M") else 1_000 if layout.endswith("%S") else 20
    expected = times(step_ms=step_ms)
    recording = read_recording(write(tmp_path / "iso.csv", expected.strftime(layout)), RAW)
    np.testing.assert_array_equal(recording.time, expected.to_numpy())


# ---------------------------------------------------------------- numeric (epoch) times need a unit


def test_numeric_times_without_a_unit_are_refused(tmp_path):
    epoch_ms = times().asi8 // 1_000_000
    assert "--csv-time-unit" in refused(write(tmp_path / "epoch.csv", epoch_ms), AmbiguousTimeError)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("as_float", [False, True], ids=["integers", "floats"])
def test_numeric_times_with_their_unit_are_the_local_clock(tmp_path, unit, as_float):
    expected = times(step_ms=1000 if unit == "s" and not as_float else 20)
    per_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    numbers = expected.asi8 / per_ns if as_float else expected.asi8 // per_ns
    if as_float and unit == "ns":
        numbers = numbers.astype(np.float64)
    recording = read_recording(write(tmp_path / "epoch.csv", numbers), raw(csv_time_unit=unit))
    tolerance_ns = 256 if as_float and unit == "ns" else 0  # a float64 of 1.7e18 holds ns to 256
    assert np.abs(recording.time.astype(np.int64) - expected.asi8).max() <= tolerance_ns
    assert recording.info["UtcOffset"] == ""


def test_milliseconds_read_as_nanoseconds_give_1970_and_a_warning(tmp_path, caplog):
    epoch_ms = times().asi8 // 1_000_000
    path = write(tmp_path / "epoch.csv", epoch_ms)
    as_ms = read_recording(path, raw(csv_time_unit="ms"))
    assert as_ms.time[0] == np.datetime64("2024-03-01T08:00:00") and as_ms.time[1] - as_ms.time[0] == np.timedelta64(20, "ms")
    with caplog.at_level(logging.WARNING, logger="accelstore.readers"):
        as_ns = read_recording(path, raw(csv_time_unit="ns"))
    assert as_ns.time[0] == np.datetime64(1_709_280_000_000, "ns") and as_ns.time[1] - as_ns.time[0] == np.timedelta64(20, "ns")
    assert "csv-time-unit" in caplog.text
    assert "beyond the datetime range in unit 's'" in refused(path, BadTimeError, raw(csv_time_unit="s"))


def test_a_unit_must_be_one_of_the_four():
    with pytest.raises(ValueError, match="csv_time_unit"):
        ProcessingOptions(csv_time_unit="minutes")


# ---------------------------------------------------------------- day/month orders are never guessed


def test_an_ambiguous_day_month_order_is_refused_and_read_with_a_format(tmp_path):
    expected = times(500, pd.Timestamp("2024-04-03 10:00:00"), step_ms=1000)  # 3 April: 03/04 and 04/03 both valid
    path = write(tmp_path / "dm.csv", expected.strftime("%d/%m/%Y %H:%M:%S"))
    message = refused(path, AmbiguousTimeError)
    assert "'%d/%m/%Y %H:%M:%S'" in message and "'%m/%d/%Y %H:%M:%S'" in message and "either way" in message
    day_first = read_recording(path, raw(csv_time_format="%d/%m/%Y %H:%M:%S"))
    np.testing.assert_array_equal(day_first.time, expected.to_numpy())
    month_first = read_recording(path, raw(csv_time_format="%m/%d/%Y %H:%M:%S"))
    assert month_first.time[0] == np.datetime64("2024-03-04T10:00:00")


def test_a_day_month_order_a_day_above_12_settles_is_still_refused_naming_its_format(tmp_path):
    expected = times(500, pd.Timestamp("2024-03-13 10:00:00"))
    path = write(tmp_path / "dm13.csv", expected.strftime("%d/%m/%Y %H:%M:%S.%f"))
    message = refused(path, AmbiguousTimeError)
    assert "day-first" in message and "'%d/%m/%Y %H:%M:%S.%f'" in message
    recording = read_recording(path, raw(csv_time_format="%d/%m/%Y %H:%M:%S.%f"))
    np.testing.assert_array_equal(recording.time, expected.to_numpy())


def test_other_text_formats_need_a_format(tmp_path):
    path = write(tmp_path / "words.csv", times(step_ms=1000).strftime("%b %d %Y %H:%M:%S"))
    assert "not ISO-8601" in refused(path, AmbiguousTimeError)
    recording = read_recording(path, raw(csv_time_format="%b %d %Y %H:%M:%S"))
    assert recording.time[0] == np.datetime64("2024-03-01T08:00:00")


def test_a_format_with_changing_offsets_keeps_local_times(tmp_path):
    before, after = times(250), times(250, START + pd.Timedelta("1h") + pd.Timedelta(seconds=5))
    text = list(before.strftime("%d/%m/%Y %H:%M:%S.%f +0100")) + list(after.strftime("%d/%m/%Y %H:%M:%S.%f +0200"))
    recording = read_recording(write(tmp_path / "f.csv", text), raw(csv_time_format="%d/%m/%Y %H:%M:%S.%f %z"))
    np.testing.assert_array_equal(recording.time, before.append(after).to_numpy())
    assert recording.info["UtcOffset"] == "+01:00"


# ---------------------------------------------------------------- bad rows


def test_an_unparseable_time_names_the_first_bad_row(tmp_path):
    text = list(times().strftime("%Y-%m-%d %H:%M:%S.%f"))
    text[7], text[9] = "yesterday", "never"
    assert "'yesterday' in data row 8" in refused(write(tmp_path / "t.csv", text), BadTimeError)
    text[7] = None
    assert "missing time in data row 8" in refused(write(tmp_path / "t.csv", text), BadTimeError)


def test_a_non_numeric_value_names_the_column_and_first_bad_row(tmp_path):
    xyz = np.tile([0.0, 0.0, 1.0], (500, 1)).astype(object)
    xyz[5, 1], xyz[9, 0] = "abc", "x"
    message = refused(write(tmp_path / "v.csv", times().strftime("%Y-%m-%d %H:%M:%S.%f"), xyz), BadValueError)
    assert message.endswith("non-numeric 'y' value 'abc' in data row 6")


# ---------------------------------------------------------------- non-finite and out-of-range samples, through ingest


def _signal_csv(path: Path, seconds: float = 600.0, rate: float = 50.0) -> tuple[pd.DatetimeIndex, np.ndarray]:
    time = pd.date_range("2024-03-01 10:00:00", periods=int(seconds * rate), freq=pd.Timedelta(seconds=1 / rate)).as_unit("ns")
    xyz = signal((time - time[0].normalize()).total_seconds().to_numpy())
    return time, xyz


def _to_csv(path: Path, time: pd.DatetimeIndex, xyz: np.ndarray) -> None:
    frame = pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M:%S.%f"), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    frame.to_csv(path, index=False, float_format="%.6f")


def test_non_finite_rows_are_a_gap_not_a_blank_file(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    time, xyz = _signal_csv(raw_dir / "P1.csv")
    gap = (time >= pd.Timestamp("2024-03-01 10:05:00")) & (time < pd.Timestamp("2024-03-01 10:05:01.2"))  # 60 rows, in window 30
    xyz[gap, 0] = np.inf
    xyz[np.flatnonzero(gap)[:3], 2] = -np.inf
    xyz[100, 1] = np.nan  # one lone absent sample: interpolated across (0.04 s)
    _to_csv(raw_dir / "P1.csv", time, xyz)
    recording = read_recording(raw_dir / "P1.csv")  # default processing: the low-pass would spread an inf everywhere
    assert recording.info["NonFiniteSamples"] == 61 and len(recording.time) == len(time) - 61
    assert all(np.isfinite(axis).all() for axis in recording.axes)
    store = tmp_path / "s.zarr"
    assert ingest([raw_dir], str(store), scheduler="synchronous", progress=False).written == ["P1"]
    valid = open_store(str(store)).windows("P1").valid.values
    assert len(valid) == 60 and np.flatnonzero(~valid).tolist() == [30]


def test_samples_beyond_the_int16_range_invalidate_their_windows_and_are_counted(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    time, xyz = _signal_csv(raw_dir / "P2.csv")
    spike = (time >= pd.Timestamp("2024-03-01 10:03:25")) & (time < pd.Timestamp("2024-03-01 10:03:25.1"))  # 5 rows, window 20
    xyz[spike, 1] = 40.0
    xyz[np.flatnonzero(spike)[0], 2] = -33.0
    _to_csv(raw_dir / "P2.csv", time, xyz)
    assert read_recording(raw_dir / "P2.csv").info["OutOfRangeSamples"] == 5
    store = tmp_path / "s.zarr"
    assert ingest([raw_dir], str(store), scheduler="synchronous", progress=False).written == ["P2"]
    windows = open_store(str(store)).windows("P2")
    valid = windows.valid.values
    assert np.flatnonzero(~valid).tolist() == [20]
    acc = windows.values  # float32 g, NaN where absent
    assert np.isnan(acc[~valid]).all()  # the invalid window holds the fill, not a clipped 32.767 g
    assert np.abs(acc[valid]).max() < 2.0  # and no valid window holds a clipped value either


# ---------------------------------------------------------------- implausible spans


def test_a_span_beyond_the_limit_is_refused_with_its_largest_gap(tmp_path):
    first, second = times(500, pd.Timestamp("2019-01-01 10:00:00")), times(500, pd.Timestamp("2024-01-01 10:00:00"))
    path = write(tmp_path / "long.csv", first.append(second).strftime("%Y-%m-%d %H:%M:%S.%f"))
    message = refused(path, SpanTooLongError)
    assert "spans 1826.0 days (limit 60" in message and "largest gap 1826.0 days after 2019-01-01 10:00:09" in message
    assert len(read_recording(path, raw(max_span_days=2000)).time) == 1000


@pytest.mark.parametrize("name", ["GGIRread__ax3_testfile.cwa", "GGIR__actigraph_testfile.gt3x"])
def test_the_span_limit_holds_for_device_files(devices_dir, name):
    message = refused(devices_dir / name, SpanTooLongError, raw(max_span_days=1 / 1440))  # one minute
    assert "(limit 0.000694444" in message and "largest gap" in message and " after 20" in message


# ---------------------------------------------------------------- the command line


def test_the_ingest_command_passes_the_csv_and_span_options(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    write(raw_dir / "E1.csv", times(3000).asi8 // 1_000_000)  # epoch ms, one minute
    store = str(tmp_path / "s.zarr")
    common = ["-q", "ingest", str(raw_dir), "-o", store, "--scheduler", "synchronous", "--no-calibrate", "--no-nonwear"]
    without_unit = CliRunner().invoke(main, common)
    assert without_unit.exit_code == 1 and "0 written" in without_unit.output
    assert open_store(store).failures.loc[str(raw_dir / "E1.csv"), "error"] == "ambiguous time"
    too_long = CliRunner().invoke(main, common + ["--csv-time-unit", "ms", "--max-span-days", "0.0001"])
    assert too_long.exit_code == 1
    assert open_store(store).failures.loc[str(raw_dir / "E1.csv"), "error"] == "too long"
    run = CliRunner().invoke(main, common + ["--csv-time-unit", "ms"])
    assert run.exit_code == 0, run.output
    assert open_store(store).windows("E1").valid.values.sum() == 6
    assert open_store(store).participant("E1")["day0"] == pd.Timestamp("2024-03-01")
