"""Readers: real device files through actipy, CSV, and a typed one-line error for every bad file.

The readers only read: their samples are the file's, whatever processing the options ask for,
and importing them loads neither the processing layer nor the kernels.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from accelstore.pipelines.ingest_task import participant_id
from accelstore.readers import (
    CorruptFileError,
    EmptyFileError,
    ProcessingOptions,
    TruncatedFileError,
    UnsupportedFormatError,
    read_file,
)
from helpers import GOOD_DEVICE_FILES, TRUNCATED_FILE, UNSUPPORTED_FILE

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)


@pytest.mark.parametrize("name", GOOD_DEVICE_FILES)
def test_real_files_read_as_g_on_the_device_clock(devices_dir, name):
    recording = read_file(devices_dir / name, RAW)
    assert recording.xyz.dtype == np.float32 and recording.xyz.shape[1] == 3
    assert len(recording.time) == len(recording.xyz) > 100
    assert np.all(np.diff(recording.time.astype(np.int64)) > 0)
    still_norm = np.median(np.linalg.norm(recording.xyz, axis=1))
    assert 0.5 < still_norm < 2.0  # gravity dominates: values are in g, not milli-g or m/s²
    assert recording.device in ("Axivity", "GENEActiv", "Actigraph")


def test_reader_matches_independent_decode(devices_dir):
    reference = np.load(devices_dir / "reference" / "skdh__ax3_data.npz")
    recording = read_file(devices_dir / "skdh__ax3_sample.cwa", RAW)
    assert recording.sample_rate == pytest.approx(float(np.ravel(reference["fs"])[0]), rel=0.01)
    assert recording.xyz.shape == reference["accel"].shape
    np.testing.assert_allclose(recording.xyz, reference["accel"], atol=1e-3)
    reference_time = reference["time"] - reference["time"][0]
    our_time = (recording.time - recording.time[0]) / np.timedelta64(1, "s")
    np.testing.assert_allclose(our_time, reference_time, atol=2e-3)


def test_unsupported_genea_file_is_named_and_typed(devices_dir):
    with pytest.raises(UnsupportedFormatError) as caught:
        read_file(devices_dir / UNSUPPORTED_FILE)
    message = str(caught.value)
    assert UNSUPPORTED_FILE in message and "\n" not in message and "GENEActiv" in message


def test_truncated_geneactiv_file_is_refused(devices_dir):
    with pytest.raises(TruncatedFileError) as caught:
        read_file(devices_dir / TRUNCATED_FILE)
    assert TRUNCATED_FILE in str(caught.value) and "222048" in str(caught.value)


def test_zero_byte_and_random_bytes_files(tmp_path):
    empty = tmp_path / "empty.cwa"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError, match=re.escape("empty.cwa")):
        read_file(empty)
    noise = tmp_path / "noise.cwa"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 70_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptFileError) as caught:
        read_file(noise)
    assert "noise.cwa" in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_extension_is_unsupported(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=re.escape("notes.txt")):
        read_file(other)


def test_csv_reader_keeps_values_and_annotation(tmp_path):
    time = pd.date_range("2024-03-01 10:00:00", periods=2000, freq="20ms")
    rng = np.random.default_rng(1)
    xyz = rng.normal(0, 0.1, (2000, 3)).astype(np.float32)
    labels = np.where(np.arange(2000) < 1000, "walk", "sit")
    path = tmp_path / "P07.csv.gz"
    pd.DataFrame({"time": time, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "annotation": labels}).to_csv(path, index=False)
    recording = read_file(path, RAW)
    assert recording.sample_rate == pytest.approx(50.0)
    np.testing.assert_allclose(recording.xyz, xyz, atol=1e-6)
    assert list(recording.annotation[[0, 1999]]) == ["walk", "sit"]


def test_csv_without_xyz_columns_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,a,b\n2024-01-01 00:00:00,1,2\n")
    with pytest.raises(UnsupportedFormatError, match=r"bad\.csv.*x, y, z"):
        read_file(path)


@pytest.mark.parametrize(
    "name, pattern, expected",
    [
        ("P01.csv.gz", None, "P01"),
        ("1000123_90001_0_0.cwa", None, "1000123"),
        ("1000123_90001_0_0.cwa.gz", None, "1000123"),
        ("subject-17_wrist.cwa", r"subject-(\d+)", "17"),
    ],
)
def test_participant_id_from_file_name(name, pattern, expected):
    assert participant_id(name, pattern) == expected


def test_id_pattern_that_does_not_match_names_the_file():
    with pytest.raises(ValueError, match=re.escape("other.cwa")):
        participant_id("other.cwa", r"subject-(\d+)")


def test_reader_errors_survive_pickling_as_between_dask_workers():
    import pickle

    from accelstore.readers import SpanTooLongError

    error = pickle.loads(pickle.dumps(SpanTooLongError("/data/P1.csv", "spans 90 days")))
    assert type(error) is SpanTooLongError and str(error) == "/data/P1.csv: too long: spans 90 days" and error.path == "/data/P1.csv"


def test_importing_the_readers_loads_neither_processing_nor_the_kernels():
    """The readers lie below the kernels and processing (docs/architecture.md): a fresh interpreter shows it."""
    probe = (
        "import sys, accelstore.readers, accelstore.readers.cwa, accelstore.readers.discovery, accelstore.readers.annotations; "
        "print(sorted(m for m in sys.modules if m.startswith(('accelstore.processing', 'accelstore.kernels'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


@pytest.mark.parametrize("name", ["skdh__ax3_sample.cwa", "skdh__gnactv_sample.bin"])
def test_readers_return_the_samples_as_read_with_the_temperature(devices_dir, name):
    """The default options ask for every processing step: the reader leaves them all to processing."""
    import actipy

    expected, _ = actipy.read_device(
        str(devices_dir / name), lowpass_hz=None, calibrate_gravity=False, detect_nonwear=False, resample_hz=None, verbose=False
    )
    recording = read_file(devices_dir / name, ProcessingOptions())
    assert not recording.processed_on_read
    np.testing.assert_array_equal(recording.time, expected.index.to_numpy(dtype="datetime64[ns]"))
    np.testing.assert_array_equal(recording.xyz, expected[["x", "y", "z"]].to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(recording.temperature.expand(), expected["temperature"].to_numpy(dtype=np.float32))
    assert "OutOfRangeSamples" not in recording.info and "CalibOK" not in recording.info


def test_the_actipy_engine_processes_device_files_as_it_reads_them(devices_dir):
    recording = read_file(devices_dir / "skdh__gnactv_sample.bin", ProcessingOptions(engine="actipy"))
    assert recording.processed_on_read and "CalibOK" in recording.info and "LowpassOK" in recording.info
