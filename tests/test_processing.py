"""The numba processing path against actipy's own steps, on real files and synthetic recordings.

The reference is actipy itself: ``actipy.processing``'s ``lowpass``, ``calibrate_gravity`` (with
its coefficients) and ``flag_nonwear``, run in the order ``actipy.read_device`` runs them, on the
same raw samples. Tolerances are the issue's: offsets and scales within 0.005, non-wear agreeing
on at least 99 % of minutes, values within 2 milli-g at every device sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from accelstore.processing import process_arrays, process_recording, read_raw, read_recording
from accelstore.readers import CorruptFileError, ProcessingOptions, UnsupportedFormatError
from helpers import GOOD_DEVICE_FILES, UNSUPPORTED_FILE

NS_PER_MINUTE = 60_000_000_000
COEFFICIENT_TOL = 0.005
SLOPE_T_TOL = 1e-4  # g/°C
VALUE_TOL_G = 0.002
TABLE_KEYS = ("CalibOK", "CalibNumSamples", "NumNonwearEpisodes", "LowpassOK")


def _actipy_steps(frame: pd.DataFrame, sample_rate: float) -> tuple[np.ndarray, dict]:
    """actipy's low-pass, calibration and non-wear, as read_device runs them, on a copy of ``frame``."""
    from actipy import processing

    data, info = frame.copy(), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Skipping calibration: insufficient stationary samples"
        for step in (
            lambda d: processing.lowpass(d, sample_rate, 20),
            lambda d: processing.calibrate_gravity(d, return_coeffs=True),
            processing.flag_nonwear,
        ):
            data, step_info = step(data)
            info.update(step_info)
    return data[["x", "y", "z"]].to_numpy(dtype=np.float32), info


def _numba_steps(
    frame: pd.DataFrame, sample_rate: float, options: ProcessingOptions = ProcessingOptions()
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``process_arrays`` on copies of ``frame``'s columns; returns time (ns), xyz (N, 3) and info."""
    time_ns = frame.index.to_numpy(dtype="datetime64[ns]").view(np.int64)
    axes = tuple(frame[axis].to_numpy(dtype=np.float32, copy=True) for axis in "xyz")
    temperature = frame["temperature"].to_numpy(dtype=np.float32, copy=True) if "temperature" in frame else None
    axes, info = process_arrays(time_ns, axes, sample_rate, options, temperature)
    return time_ns, np.stack(axes, axis=1), info


def _nonwear_minutes(time_ns: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Per minute from the first sample: True where most of its samples are NaN (non-wear)."""
    minute = (time_ns - time_ns[0]) // NS_PER_MINUTE
    missing = np.bincount(minute, weights=np.isnan(xyz).any(axis=1))
    return missing > np.bincount(minute) / 2


def _calibration(info: dict) -> dict[str, float]:
    """Offsets, scales and temperature coefficients (identity where calibration was not applied)."""
    identity = {"Intercept": 0.0, "Slope": 1.0, "SlopeT": 0.0}
    keys = {f"Calib{axis}{name}": value for axis in "xyz" for name, value in identity.items()}
    return {key: float(info.get(key, value)) for key, value in keys.items()}


def _assert_paths_agree(time_ns, ours, our_info, reference, reference_info):
    assert set(our_info) == set(reference_info)
    for key in TABLE_KEYS:
        assert our_info.get(key) == reference_info.get(key), key
    for key, value in _calibration(reference_info).items():
        tolerance = SLOPE_T_TOL if key.endswith("SlopeT") else COEFFICIENT_TOL
        assert _calibration(our_info)[key] == pytest.approx(value, abs=tolerance), key
    assert our_info["CalibErrorAfter(mg)"] == pytest.approx(reference_info["CalibErrorAfter(mg)"], abs=0.1, nan_ok=True)
    for key in ("WearTime(days)", "NonwearTime(days)"):
        assert our_info[key] == pytest.approx(reference_info[key], abs=1 / 1440), key  # a minute

    agreeing = _nonwear_minutes(time_ns, ours) == _nonwear_minutes(time_ns, reference)
    assert agreeing.mean() >= 0.99
    both = np.isfinite(ours).all(axis=1) & np.isfinite(reference).all(axis=1)
    assert both.any()
    assert np.abs(ours[both] - reference[both]).max() <= VALUE_TOL_G


# ---------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def raw_frames(devices_dir):
    """Each good file's raw samples (temperature included) as actipy reads them, read once."""
    import actipy

    frames = {}
    for name in GOOD_DEVICE_FILES:
        frames[name] = actipy.read_device(
            str(devices_dir / name), lowpass_hz=None, calibrate_gravity=False, detect_nonwear=False,
            resample_hz=None, verbose=False,
        )
    return frames


@pytest.mark.parametrize("name", GOOD_DEVICE_FILES)
def test_real_file_processed_as_actipy_processes_it(raw_frames, name):
    frame, raw_info = raw_frames[name]
    reference, reference_info = _actipy_steps(frame, raw_info["SampleRate"])
    time_ns, ours, our_info = _numba_steps(frame, raw_info["SampleRate"])
    _assert_paths_agree(time_ns, ours, our_info, reference, reference_info)


@pytest.mark.parametrize("name", ["skdh__ax3_sample.cwa", "GGIR__actigraph_testfile.gt3x"])
def test_read_raw_then_process_gives_what_actipy_read_device_gives(devices_dir, name):
    """The numba route of ingest against actipy's own processing of the same file."""
    import actipy

    raw = read_raw(devices_dir / name)
    ours = process_recording(raw)
    assert all(ours_axis is raw_axis for ours_axis, raw_axis in zip(ours.axes, raw.axes))  # in place, no copy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference, reference_info = actipy.read_device(str(devices_dir / name), resample_hz=None, verbose=False)
    np.testing.assert_array_equal(ours.time, reference.index.to_numpy(dtype="datetime64[ns]"))
    reference_xyz = reference[["x", "y", "z"]].to_numpy()
    assert np.isnan(ours.xyz).sum() == np.isnan(reference_xyz).sum()
    assert np.nanmax(np.abs(ours.xyz - reference_xyz)) <= VALUE_TOL_G
    for key in ("CalibOK", "CalibErrorAfter(mg)", "WearTime(days)", "NonwearTime(days)", "NumNonwearEpisodes"):
        assert ours.info[key] == pytest.approx(reference_info[key], nan_ok=True), key


def test_read_raw_raises_the_readers_typed_error(devices_dir):
    with pytest.raises(UnsupportedFormatError):
        read_raw(devices_dir / UNSUPPORTED_FILE)


def _spiked_csv(path, n: int = 3000, rate: int = 100) -> None:
    """A still CSV at ``rate`` Hz with one sample of 40 g on x: beyond the store's ±32.767 g as read, not once low-passed."""
    time = pd.date_range("2024-03-01 10:00", periods=n, freq=pd.Timedelta(seconds=1 / rate)).as_unit("ns")
    xyz = np.tile([0.0, 0.0, 1.0], (n, 1))
    xyz[n // 2, 0] = 40.0
    frame = pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M:%S.%f"), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("engine", ["numba", "actipy"])
def test_out_of_range_samples_are_counted_as_read_before_either_engine_processes_them(tmp_path, engine):
    path = tmp_path / "spike.csv"
    _spiked_csv(path)
    recording = read_recording(path, ProcessingOptions(calibrate=False, detect_nonwear=False, engine=engine))
    assert recording.info["OutOfRangeSamples"] == 1 and recording.info["LowpassOK"] == 1
    assert np.abs(recording.xyz).max() < 32.767  # the low-pass spread the spike: counted after it, it would be 0


@pytest.mark.parametrize("engine", ["numba", "actipy"])
def test_a_value_error_from_either_engines_steps_is_a_corrupt_file_naming_it(tmp_path, engine):
    path = tmp_path / "short.csv"
    _spiked_csv(path, n=20)  # too few samples to low-pass filter
    with pytest.raises(CorruptFileError, match=r"short\.csv: corrupt file: ValueError: "):
        read_recording(path, ProcessingOptions(calibrate=False, detect_nonwear=False, engine=engine))


# ---------------------------------------------------------------- synthetic recordings


def test_synthetic_day_with_calibration_error_and_nonwear_processed_as_actipy():
    from accelstore import synth

    recording = synth.synthesize_signal(1.0, seed=6)  # a device ~12 mg off the sphere: the fit runs
    offsets = np.rint(recording.time * 1e9).astype(np.int64).astype("timedelta64[ns]")
    index = pd.DatetimeIndex(recording.start + offsets, name="time")
    frame = pd.DataFrame(recording.xyz, index=index, columns=["x", "y", "z"])
    frame["temperature"] = np.where(recording.activity == synth.NONWEAR, 22.0, 32.0).astype(np.float32)
    reference, reference_info = _actipy_steps(frame, recording.rate)
    assert reference_info["CalibNumIters"] > 0 and reference_info["CalibOK"] == 1  # fitted and applied
    assert reference_info["NumNonwearEpisodes"] >= 1
    time_ns, ours, our_info = _numba_steps(frame, recording.rate)
    _assert_paths_agree(time_ns, ours, our_info, reference, reference_info)


RATE = 100
SEGMENT_S = 300
NONWEAR_S = 2 * 3600
OFFSET_G = np.array([0.03, -0.02, 0.01])
SCALE = np.array([1.02, 0.98, 1.01])
TEMPERATURE_G_PER_C = np.array([0.0008, -0.0005, 0.0003])


def _known_distortion_recording() -> tuple[pd.DataFrame, tuple[float, float]]:
    """~6 h at 100 Hz: 5-min still periods in 24 orientations between 5-min moves, and a 2-h non-wear.

    The true signal (gravity in g, 3 mg noise when still, a 2 Hz 0.3 g oscillation when moving,
    nothing at all during non-wear, which has moves on both sides) is distorted as
    ``SCALE * true + OFFSET_G + TEMPERATURE_G_PER_C * temperature`` with the temperature stepping
    between 24 and 34 °C (22 °C off the wrist). Returns the frame and the non-wear episode in
    seconds from its start.
    """
    rng = np.random.default_rng(7)
    orientations = np.concatenate([np.eye(3), -np.eye(3), rng.normal(size=(18, 3))])
    orientations /= np.linalg.norm(orientations, axis=1, keepdims=True)
    segment = RATE * SEGMENT_S
    oscillation = 0.3 * np.sin(2 * np.pi * 2.0 * np.arange(segment) / RATE)[:, None] * np.array([1.0, -1.0, 0.5])
    pieces, temperatures = [], []
    for i, orientation in enumerate(orientations):
        if i == len(orientations) // 2:
            pieces.append(orientation + oscillation)
            temperatures.append(np.full(segment, 30.0))
            nonwear_start = sum(len(p) for p in pieces) / RATE
            table = np.array([0.1, 0.2, -0.97]) / np.linalg.norm([0.1, 0.2, -0.97])
            pieces.append(np.repeat(table[None, :], NONWEAR_S * RATE, axis=0))
            temperatures.append(np.full(NONWEAR_S * RATE, 22.0))
        pieces.append(orientation + oscillation)
        pieces.append(orientation + rng.normal(0, 0.003, (segment, 3)))
        temperatures.append(np.full(2 * segment, rng.uniform(24, 34)))
    true = np.concatenate(pieces)
    temperature = np.concatenate(temperatures)
    measured = SCALE * true + OFFSET_G + TEMPERATURE_G_PER_C * temperature[:, None]
    time = pd.Timestamp("2024-03-01 10:00") + pd.to_timedelta(np.arange(len(true)) * (10**9 // RATE), unit="ns")
    frame = pd.DataFrame(measured.astype(np.float32), index=pd.DatetimeIndex(time, name="time"), columns=list("xyz"))
    frame["temperature"] = temperature.astype(np.float32)
    return frame, (nonwear_start, nonwear_start + NONWEAR_S)


def test_known_offset_scale_and_temperature_coefficient_are_recovered():
    frame, (nonwear_start, nonwear_end) = _known_distortion_recording()
    reference, reference_info = _actipy_steps(frame, RATE)
    time_ns, ours, our_info = _numba_steps(frame, RATE)
    _assert_paths_agree(time_ns, ours, our_info, reference, reference_info)

    # the calibration inverts the distortion: true = (measured − offset − β·T) / scale
    assert our_info["CalibOK"] == 1
    fitted = _calibration(our_info)
    for k, axis in enumerate("xyz"):
        assert fitted[f"Calib{axis}Slope"] == pytest.approx(1 / SCALE[k], abs=COEFFICIENT_TOL)
        assert fitted[f"Calib{axis}Intercept"] == pytest.approx(-OFFSET_G[k] / SCALE[k], abs=COEFFICIENT_TOL)
        assert fitted[f"Calib{axis}SlopeT"] == pytest.approx(-TEMPERATURE_G_PER_C[k] / SCALE[k], abs=SLOPE_T_TOL)

    seconds = (time_ns - time_ns[0]) / 1e9
    true_nonwear = (seconds >= nonwear_start) & (seconds < nonwear_end)
    minute = (seconds // 60).astype(np.int64)
    true_minutes = np.bincount(minute, weights=true_nonwear) > np.bincount(minute) / 2
    assert (_nonwear_minutes(time_ns, ours) == true_minutes).mean() >= 0.99
    assert our_info["NumNonwearEpisodes"] == 1
    assert our_info["NonwearTime(days)"] * 86400 == pytest.approx(NONWEAR_S, abs=60)


def test_nonwear_across_time_gaps_and_missing_values_matches_actipy():
    """actipy forward-fills NaN, leaves empty windows non-stationary and flags both ends of a run."""
    rate = 25
    n = 4 * 3600 * rate
    rng = np.random.default_rng(5)
    xyz = np.tile(np.float32([0.0, 0.0, 1.0]), (n, 1)) + rng.normal(0, 0.002, (n, 3)).astype(np.float32)
    moving = slice(2 * 3600 * rate, 2 * 3600 * rate + 600 * rate)  # 10 min of movement splits two still runs
    xyz[moving] += np.sin(np.arange(600 * rate) / 3.0)[:, None].astype(np.float32) * 0.2
    xyz[30_000 : 30_000 + 12 * rate, 1] = np.nan  # 12 s of one axis missing: a whole window, filled forward
    time_ns = np.arange(n, dtype=np.int64) * (10**9 // rate)
    time_ns[3 * 3600 * rate :] += 95 * 10**9  # a 95-s recording gap splits the second run in two
    index = pd.DatetimeIndex(time_ns.astype("datetime64[ns]"), name="time")
    frame = pd.DataFrame(xyz, index=index, columns=list("xyz"))

    from actipy import processing

    reference, reference_info = processing.flag_nonwear(frame.copy())
    _, ours, our_info = _numba_steps(frame, rate, ProcessingOptions(lowpass_hz=None, calibrate=False))
    assert reference_info["NumNonwearEpisodes"] >= 1
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference[["x", "y", "z"]].to_numpy()))
    for key, value in reference_info.items():
        assert our_info[key] == pytest.approx(value), key


def test_lowpass_is_skipped_when_nyquist_is_not_above_the_cutoff():
    time_ns = np.arange(3000, dtype=np.int64) * (10**9 // 40)
    axes = tuple(np.random.default_rng(1).normal(size=(3, 3000)).astype(np.float32))
    unchanged = np.stack(axes)
    _, info = process_arrays(time_ns, axes, 40.0, ProcessingOptions(calibrate=False, detect_nonwear=False))
    assert info == {"LowpassOK": 0}
    np.testing.assert_array_equal(np.stack(axes), unchanged)


def test_lowpass_treats_a_sample_with_any_axis_missing_as_actipy_does():
    """Filtered as 0 on all three axes, NaN on all three after; across actipy's 1M-sample chunk edges.

    5,000,300 samples: chunk 0 is filtered alone, chunks 1–4 side by side (one group), the short
    chunk 5 alone; the edges at 1M and 5M are between groups, the one at 3M inside a group.
    """
    from actipy import processing

    n = 5_000_300
    rng = np.random.default_rng(2)
    xyz = (rng.normal(0, 0.3, (n, 3)) + [0.0, 0.0, 1.0]).astype(np.float32)
    xyz[999_900:1_000_040, 0] = np.nan  # straddles the chunk edge at 1,000,000
    xyz[2_999_990:3_000_003, 1] = np.nan  # and the one at 3,000,000
    xyz[500:510, 2] = np.nan
    xyz[-5:, 0] = np.nan
    index = pd.date_range("2024-03-01", periods=n, freq="10ms", name="time")
    frame = pd.DataFrame(xyz, index=index, columns=list("xyz"))
    reference = processing.lowpass(frame.copy(), 100.0, 20)[0].to_numpy()
    _, ours, info = _numba_steps(frame, 100.0, ProcessingOptions(calibrate=False, detect_nonwear=False))
    assert info == {"LowpassOK": 1, "LowpassCutoff(Hz)": 20.0}
    for missing in (slice(999_900, 1_000_040), slice(2_999_990, 3_000_003), slice(500, 510), slice(n - 5, n)):
        assert np.isnan(ours[missing]).all()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_temperature_runs_give_the_per_sample_window_means_exactly():
    """A block-wise temperature held as runs: the same window means as over its samples, NaN included."""
    from accelstore.kernels.calibration import step_window_means, window_moments
    from accelstore.run_lengths import RunLengths

    rng = np.random.default_rng(4)
    per_block = np.round(rng.uniform(20, 35, 3000), 2).astype(np.float32)
    per_block[100:103] = np.nan
    per_block[500:520] = per_block[499]  # equal neighbours merge into one run
    samples = np.repeat(per_block, rng.integers(80, 121, per_block.size))
    runs = RunLengths.of(samples)
    assert len(runs.starts) < per_block.size + 3 * 120  # at most one run per block, and per NaN sample
    np.testing.assert_array_equal(runs.expand(), samples)
    time_ns = np.cumsum(rng.choice([10_000_000, 10_000_000, 2_000_000_000], samples.size)).astype(np.int64)
    n_windows = int((time_ns[-1] - time_ns[0]) // 10**10) + 1
    expected, _ = window_moments(time_ns, samples, 10**10, n_windows, False)
    np.testing.assert_array_equal(step_window_means(time_ns, runs.starts, runs.values, 10**10, n_windows), expected)
