"""Reading one file and processing it: actipy's low-pass, gravity calibration and non-wear steps
on numpy arrays (docs/architecture.md, "Ingest").

:func:`read_recording` is what ingest calls for each file: a reader's samples, as read
(:func:`accelstore.readers.read_file`), screened for what the store cannot hold, then processed
by the chosen engine. The numba engine is the fast path of ingest. Each of its steps reproduces
the actipy 3.8 function it names — thresholds, acceptance rules, NaN handling and the keys it
adds to the info dict — so that the store's participant table reads the same whichever path
produced it; ``tests/test_processing.py`` holds the two paths to each other. The samples are
processed in place in the reader's own x, y, z column arrays (float32): besides them, only one
group of low-pass chunks (~96 MB) and per-window statistics are held at a time; the temperature
is held as runs (:class:`~accelstore.run_lengths.RunLengths`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import signal

from accelstore.kernels import calibration, nonwear
from accelstore.kernels.calibration import (
    MAX_ITERATIONS,
    apply_calibration,
    fit_gravity,
    sphere_errors,
    step_window_means,
    window_moments,
)
from accelstore.kernels.lowpass import filtfilt_chunks
from accelstore.kernels.nonwear import stationary_runs, wear_summary
from accelstore.kernels.resample import out_of_range_samples
from accelstore.readers import CorruptFileError, ProcessingOptions, Recording, read_file
from accelstore.readers.output_capture import captured_output
from accelstore.readers.recording import axes_of
from accelstore.run_lengths import RunLengths

if TYPE_CHECKING:
    from accelstore.readers.cwa import SampleBuffers

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

LOWPASS_ORDER = 8
LOWPASS_CHUNK = 1_000_000
"""actipy filters 1M samples at a time with ``LOWPASS_LEEWAY`` extra samples on each side, so
samples near a chunk edge differ from filtering the whole recording at once — by ~1e-9 g, as the
filter's transient has died out within 100 samples. The same chunks are used here (the paths
then agree to the bit)."""
LOWPASS_LEEWAY = 100
LOWPASS_GROUP = 4
"""Chunks filtered side by side: 12 float64 columns, ~96 MB of scratch."""

STATIONARY_WINDOW_NS = 10 * NS_PER_SECOND
STATIONARY_STD_G = 0.015
CALIB_MIN_WINDOWS = 50
CALIB_MAX_WINDOWS = 100_000
CALIB_CUBE_G = 0.3
CALIB_ERROR_TOL_G = 0.01
NONWEAR_PATIENCE_NS = 90 * 60 * NS_PER_SECOND
WEAR_MAX_STEP_NS = NS_PER_SECOND
COVERAGE_MIN_FRACTION = 0.01

UNPROCESSED = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)

Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


def read_recording(
    path: str | os.PathLike, options: ProcessingOptions = ProcessingOptions(), buffers: SampleBuffers | None = None
) -> Recording:
    """Read and process one file: actipy's low-pass, calibration and non-wear steps, no resampling.

    The samples as read (with the actipy engine, a device file's as actipy's read call processed
    them) are screened before the steps run: ``info["OutOfRangeSamples"]`` counts the samples
    beyond the store's ±32.767 g, whose windows the resampler leaves invalid rather than clip
    them; and the wear-time keys a reader left to this layer (``Recording.wear_time_deferred``)
    are computed, unless non-wear detection will compute them over the samples it leaves.
    A bad file raises the reader's :class:`~accelstore.readers.ReaderError`; a ``ValueError``
    from the steps (too few samples to low-pass filter, say), which actipy raises inside its read
    call, is a :class:`~accelstore.readers.CorruptFileError` naming the file.

    ``buffers``: where the Numba ``.cwa`` reader puts the samples (see :class:`~accelstore.readers.cwa.SampleBuffers`);
    the recording's arrays are then views of them, valid until the buffers are next used.
    """
    recording = read_file(path, options, buffers)
    screened = {"OutOfRangeSamples": out_of_range_samples(*recording.axes)}
    if recording.wear_time_deferred and not options.detect_nonwear:
        screened |= wear_info(recording.time.view(np.int64), recording.axes)
    recording = dataclasses.replace(recording, info={**recording.info, **screened})
    try:
        return _process(recording, options)
    except ValueError as error:
        raise CorruptFileError(recording.path, f"{type(error).__name__}: {error}") from None


def read_raw(path: str | os.PathLike) -> Recording:
    """A file's samples as the device recorded them (in g, unfiltered, uncalibrated, no NaN).

    :func:`read_recording` with every step off, so a bad file raises the same typed
    :class:`~accelstore.readers.ReaderError` and ``info`` is complete: actipy's quality control
    has run (samples with non-increasing times dropped; ``ReadErrors``, ``WearTime(days)``… in
    it). The recording carries the device's temperature, so ``process_recording(read_raw(path))``
    calibrates with actipy's per-axis temperature term, as ``actipy.read_device`` does.
    """
    return read_recording(path, UNPROCESSED)


def _process(recording: Recording, options: ProcessingOptions) -> Recording:
    """The engine's steps on a recording, unless actipy ran them as it read the file."""
    if recording.processed_on_read:
        return recording
    if options.engine == "actipy":
        return _actipy_process(recording, options)
    return process_recording(recording, options)


def _actipy_process(recording: Recording, options: ProcessingOptions) -> Recording:
    """``actipy.process`` on samples read without actipy: CSV tables, which carry no temperature."""
    import actipy

    index = pd.DatetimeIndex(recording.time, name="time")
    data = pd.DataFrame(dict(zip("xyz", recording.axes)), index=index, copy=False)
    with captured_output():
        data, info = actipy.process(
            data,
            recording.sample_rate,
            lowpass_hz=options.lowpass_hz or None,
            calibrate_gravity=options.calibrate,
            detect_nonwear=options.detect_nonwear,
            resample_hz=None,
            verbose=False,
        )
    return dataclasses.replace(
        recording, time=data.index.to_numpy(dtype="datetime64[ns]"), axes=axes_of(data), info={**recording.info, **info}
    )


def process_recording(raw: Recording, options: ProcessingOptions = ProcessingOptions()) -> Recording:
    """``raw`` processed by :func:`process_arrays` with its temperature, consuming it: its axis arrays are overwritten.

    The reader's axes are pandas' read-only views of arrays nothing else holds once the reader has
    returned; they are made writeable rather than copied (a copy only where numpy refuses).
    """
    axes = tuple(_writeable(axis) for axis in raw.axes)
    axes, info = process_arrays(raw.time.view(np.int64), axes, raw.sample_rate, options, raw.temperature)
    return dataclasses.replace(raw, axes=axes, info={**raw.info, **info})


def _writeable(array: np.ndarray) -> np.ndarray:
    try:
        array.flags.writeable = True
    except ValueError:
        return array.copy()
    return array


def process_arrays(
    time_ns: np.ndarray,
    axes: Axes,
    sample_rate: float,
    options: ProcessingOptions = ProcessingOptions(),
    temperature: np.ndarray | RunLengths | None = None,
) -> tuple[Axes, dict[str, Any]]:
    """actipy's low-pass, calibration and non-wear steps, as ``options`` switch them, in place.

    ``time_ns``: int64 (N,) ns, increasing; ``axes``: x, y, z, each float32 (N,) in g, writeable,
    overwritten and returned; ``temperature``: °C per sample (float32 (N,), or its runs) where
    the device records it (actipy then fits a temperature coefficient per axis). Returns the axes
    (NaN in non-wear) and the info keys the actipy steps would add.
    """
    info: dict[str, Any] = {}
    if len(time_ns) == 0:
        return axes, info
    if options.lowpass_hz:
        info.update(lowpass(axes, sample_rate, options.lowpass_hz))
    if options.calibrate:
        info.update(calibrate_gravity(time_ns, axes, temperature))
    if options.detect_nonwear:
        info.update(flag_nonwear(time_ns, axes))
    return axes, info


def lowpass(axes: Axes, sample_rate: float, cutoff_hz: float) -> dict[str, Any]:
    """``actipy.processing.lowpass``: zero-phase order-8 Butterworth, in place.

    Skipped (``LowpassOK`` 0) when the Nyquist frequency is not above the cutoff. A sample with
    any axis NaN is filtered as 0 on all three axes and comes out NaN on all three. The filter is
    scipy's ``sosfiltfilt`` (odd padding, steady-state initial conditions) run by
    :func:`~accelstore.kernels.lowpass.filtfilt_chunks` in actipy's chunks.
    """
    if sample_rate / 2 <= cutoff_hz:
        return {"LowpassOK": 0}
    sos = signal.butter(LOWPASS_ORDER, cutoff_hz / (sample_rate / 2), btype="lowpass", output="sos")
    taps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    padlen = 3 * taps  # sosfiltfilt's default
    if len(axes[0]) <= padlen:
        raise ValueError(f"{len(axes[0])} samples are too few to low-pass filter (more than {padlen} needed)")
    filtfilt_chunks(*axes, sos, signal.sosfilt_zi(sos), padlen, LOWPASS_CHUNK, LOWPASS_LEEWAY, LOWPASS_GROUP)
    return {"LowpassOK": 1, "LowpassCutoff(Hz)": cutoff_hz}


def calibrate_gravity(time_ns: np.ndarray, axes: Axes, temperature: np.ndarray | RunLengths | None = None) -> dict[str, Any]:
    """``actipy.processing.calibrate_gravity`` (with ``return_coeffs``), applied in place when it succeeds.

    Fits on the means of stationary 10-s windows (every axis's std < 15 mg), at most the first
    100,000; needs at least 50 of them, with some beyond ±0.3 g on both sides of every axis, and
    an initial mean error of 10 mg or more (below that the device is already calibrated:
    ``CalibOK`` 1, nothing changed); accepted when the error after is below 10 mg.
    """
    n_windows = int((time_ns[-1] - time_ns[0]) // STATIONARY_WINDOW_NS) + 1
    moments = [window_moments(time_ns, axis, STATIONARY_WINDOW_NS, n_windows, False) for axis in axes]
    means = np.stack([mean for mean, _ in moments], axis=1)
    still = np.all(np.stack([std for _, std in moments], axis=1) < STATIONARY_STD_G, axis=1)
    selected = still & np.isfinite(means).all(axis=1) & (np.linalg.norm(means, axis=1) > 1e-8)
    if temperature is not None:
        temperature = temperature if isinstance(temperature, RunLengths) else RunLengths.of(temperature)
        temperature_means = step_window_means(time_ns, temperature.starts, temperature.values, STATIONARY_WINDOW_NS, n_windows)
        selected &= np.isfinite(temperature_means)
        temperature_means = temperature_means[selected][:CALIB_MAX_WINDOWS]
    means = means[selected][:CALIB_MAX_WINDOWS]
    info: dict[str, Any] = {"CalibNumSamples": len(means)}
    if len(means) < CALIB_MIN_WINDOWS:
        return info | {"CalibErrorBefore(mg)": np.nan, "CalibErrorAfter(mg)": np.nan, "CalibOK": 0}
    error_before = sphere_errors(means, np.empty(len(means)))
    info["CalibErrorBefore(mg)"] = error_before * 1000
    if (means.max(axis=0) < CALIB_CUBE_G).any() or (means.min(axis=0) > -CALIB_CUBE_G).any():
        return info | {"CalibErrorAfter(mg)": error_before * 1000, "CalibNumIters": 0, "CalibOK": 0}
    if error_before < CALIB_ERROR_TOL_G:
        return info | {"CalibErrorAfter(mg)": error_before * 1000, "CalibNumIters": 0, "CalibOK": 1}

    use_temperature = temperature is not None
    covariate = temperature_means if use_temperature else np.zeros(len(means))
    intercept, slope, slope_t, error_after, iterations = fit_gravity(means, covariate, use_temperature)
    info |= {"CalibErrorAfter(mg)": error_after * 1000, "CalibNumIters": iterations}
    if error_after >= CALIB_ERROR_TOL_G or iterations >= MAX_ITERATIONS:
        return info | {"CalibOK": 0}

    intercept, slope, slope_t = (c.astype(np.float32) for c in (intercept, slope, slope_t))
    runs = temperature if use_temperature else RunLengths.of(np.zeros(0))
    apply_calibration(*axes, intercept, slope, runs.starts, runs.values, slope_t, use_temperature)
    info["CalibOK"] = 1
    coefficients = {"Intercept": intercept, "Slope": slope} | ({"SlopeT": slope_t} if use_temperature else {})
    for name, values in coefficients.items():
        info |= {f"Calib{axis}{name}": float(value) for axis, value in zip("xyz", values)}
    return info


def flag_nonwear(time_ns: np.ndarray, axes: Axes) -> dict[str, Any]:
    """``actipy.processing.flag_nonwear``: stationary runs lasting over 90 minutes become NaN, in place.

    As in actipy, a run of ``n`` windows starting at ``t`` lasts ``(n − 1) × 10 s`` and the samples
    in ``[t, t + (n − 1) × 10 s]`` (both ends included) are flagged. Also recomputes
    ``WearTime(days)``, ``NumInterrupts`` and ``Covers24hOK`` over the remaining samples.
    """
    firsts, counts = stationary_runs(time_ns, *axes, STATIONARY_WINDOW_NS, STATIONARY_STD_G)
    durations_ns = (counts - 1) * STATIONARY_WINDOW_NS
    nonwear = durations_ns > NONWEAR_PATIENCE_NS
    for begin_ns, duration_ns in zip(time_ns[0] + firsts[nonwear] * STATIONARY_WINDOW_NS, durations_ns[nonwear]):
        begin = np.searchsorted(time_ns, begin_ns, side="left")
        end = np.searchsorted(time_ns, begin_ns + duration_ns, side="right")
        for axis in axes:
            axis[begin:end] = np.nan
    return {
        "NonwearTime(days)": int(durations_ns[nonwear].sum()) / NS_PER_DAY,
        "NumNonwearEpisodes": int(nonwear.sum()),
        **wear_info(time_ns, axes),
    }


def wear_info(time_ns: np.ndarray, axes: Axes) -> dict[str, Any]:
    """actipy's ``WearTime(days)``, ``NumInterrupts`` and ``Covers24hOK`` for samples with no NaN axis."""
    worn_ns, interruptions, hour_samples, hour_present = wear_summary(time_ns, *axes, WEAR_MAX_STEP_NS)
    recorded = hour_samples > 0
    covers_day = recorded.all() and bool(
        np.all(hour_present[recorded] / hour_samples[recorded] >= COVERAGE_MIN_FRACTION)
    )
    return {
        "WearTime(days)": worn_ns / NS_PER_SECOND / 86_400,  # actipy's order of operations, to the last bit
        "NumInterrupts": int(interruptions),
        "Covers24hOK": int(covers_day),
    }


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel the steps use, for the arrays ingest passes.

    The reader's time is a read-only view, which Numba compiles for apart from a writeable
    array; the run below passes it so, on a signal on which every step runs.
    """
    calibration.warm_up()
    nonwear.warm_up()
    lowpass(tuple(np.zeros(100, dtype=np.float32) for _ in range(3)), 100.0, 20.0)
    rate = 25  # 20 s still in each of 26 orientations, the device off by 5 % and 20 mg
    directions = np.array([d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)], dtype=np.float64)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    gravity = np.repeat(directions, 20 * rate, axis=0) * 1.05 + 0.02
    time_ns = np.arange(len(gravity), dtype=np.int64) * (NS_PER_SECOND // rate)
    temperature = np.linspace(20.0, 30.0, len(gravity), dtype=np.float32)
    time_ns.flags.writeable = False
    axes = tuple(np.ascontiguousarray(column, dtype=np.float32) for column in gravity.T)
    process_arrays(time_ns, axes, rate, ProcessingOptions(lowpass_hz=None), temperature)
