"""CSV tables (``time,x,y,z[,annotation]``, optionally gzipped) → :class:`~accelstore.readers.Recording`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from accelstore.readers.csv_times import csv_times
from accelstore.readers.errors import (
    BadTimeError,
    BadValueError,
    EmptyFileError,
    UnsupportedFormatError,
    is_environment_error,
    parser_failure,
)
from accelstore.readers.options import ProcessingOptions
from accelstore.readers.recording import Recording
from accelstore.readers.span import check_span


def read_csv_table(path: Path, options: ProcessingOptions) -> Recording:
    """A ``time,x,y,z[,annotation]`` table, by the rules of :func:`~accelstore.readers.csv_times.csv_times`
    and :func:`_csv_axes`; the samples as read, whatever the engine.

    Rows with a non-finite x, y or z (inf, -inf, NaN, an empty cell) are absent samples: dropped
    before anything else, so that the low-pass cannot spread them over their neighbours, and
    counted in ``info["NonFiniteSamples"]``. Values beyond float32's range (±3.4e38 g) become
    infinite and are dropped with them. The rows are then put in time order.
    """
    frame = _load_csv(path)
    time_ns, offset = csv_times(path, frame["time"], options)
    axes = _csv_axes(path, frame)
    finite = np.isfinite(axes[0]) & np.isfinite(axes[1]) & np.isfinite(axes[2])
    kept = np.flatnonzero(finite)
    non_finite = len(finite) - len(kept)
    if len(kept) < 2:
        dropped = f" ({non_finite} with a non-finite x, y or z dropped)" if non_finite else ""
        raise EmptyFileError(path, f"fewer than two samples{dropped}")
    order = kept[np.argsort(time_ns[kept], kind="stable")]
    time_ns = time_ns[order]
    sample_rate = _infer_sample_rate(time_ns)
    if not np.isfinite(sample_rate):
        raise BadTimeError(path, "the times do not advance: the median step between samples is zero")
    check_span(path, time_ns, options.max_span_days)
    time_ns.flags.writeable = False  # as actipy's times are: the kernels are compiled for read-only ones
    annotation = frame["annotation"].to_numpy(dtype=object)[order] if "annotation" in frame.columns else None
    return Recording(
        path=path,
        time=time_ns.view("datetime64[ns]"),
        axes=tuple(axis[order] for axis in axes),
        sample_rate=sample_rate,
        device="CSV",
        device_id="",
        info={"SampleRate": sample_rate, "Device": "CSV", "DeviceID": "", "UtcOffset": offset, "NonFiniteSamples": non_finite},
        annotation=annotation,
    )


def _load_csv(path: Path) -> pd.DataFrame:
    """The table with its ``time``, ``x``, ``y``, ``z`` columns checked to be there."""
    try:
        frame = pd.read_csv(path, low_memory=False)
    except Exception as error:  # pandas' parser and the decompressors: see readers.errors
        if is_environment_error(error):
            raise
        raise parser_failure(path, error) from None
    missing = [c for c in ("time", "x", "y", "z") if c not in frame.columns]
    if missing:
        raise UnsupportedFormatError(path, f"CSV lacks column(s) {', '.join(missing)}; expected time,x,y,z")
    if len(frame) < 2:
        raise EmptyFileError(path, "fewer than two samples")
    return frame


def _csv_axes(path: Path, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z as float32 arrays; a cell that is not a number is a :class:`BadValueError`.

    Empty cells and the spellings pandas reads as NaN or infinity are numbers here (non-finite
    ones, dropped by the caller as absent samples); anything else is refused, naming the first
    row holding one and its column.
    """
    columns, first_bad = [], None
    for name in ("x", "y", "z"):
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            raise BadValueError(path, f"column '{name}' holds true/false values, not accelerations")
        if not pd.api.types.is_numeric_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce")
            bad = np.flatnonzero(numbers.isna().to_numpy() & column.notna().to_numpy())
            if len(bad) and (first_bad is None or bad[0] < first_bad[0]):
                first_bad = (int(bad[0]), name, column.iloc[bad[0]])
            column = numbers
        columns.append(column)
    if first_bad is not None:
        row, name, value = first_bad
        raise BadValueError(path, f"non-numeric '{name}' value {value!r} in data row {row + 1}")
    with np.errstate(over="ignore"):  # beyond float32: infinite, dropped as absent
        return tuple(np.ascontiguousarray(c.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float32) for c in columns)


def _infer_sample_rate(time_ns: np.ndarray) -> float:
    """The rate from the median interval between samples, ignoring gaps between bouts."""
    step = np.median(np.diff(time_ns))
    return float(round(1e9 / step, 3)) if step > 0 else float("nan")

