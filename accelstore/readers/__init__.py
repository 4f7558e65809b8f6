"""Raw device files → numpy arrays in g plus metadata, through actipy (``.cwa``: Numba, by default).

Every failure to read becomes a :class:`ReaderError` whose one-line message names the file and
the cause; nothing here raises a bare traceback for a bad file. The parsers fed a file's bytes
(actipy's, the Numba ``.cwa`` reader, pandas' CSV reader) raise a zoo of exception types on
corrupt input; whatever they raise is about the file and becomes a :class:`CorruptFileError` or
:class:`TruncatedFileError` (``MemoryError`` excepted). The code after them is not wrapped so:
a bug in it still surfaces as itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from accelstore.kernels.resample import out_of_range_samples

if TYPE_CHECKING:
    from accelstore.readers.cwa import SampleBuffers
    from accelstore.run_lengths import Steps

log = logging.getLogger(__name__)

DEVICE_SUFFIXES = (".cwa", ".gt3x", ".bin")
TABLE_SUFFIXES = (".csv",)
SUPPORTED_SUFFIXES = DEVICE_SUFFIXES + TABLE_SUFFIXES

NS_PER_DAY = 86_400 * 1_000_000_000
CSV_TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
"""Nanoseconds per unit of a CSV's numeric (epoch) times, by ``--csv-time-unit``."""


class ReaderError(Exception):
    """A file that cannot be ingested; ``str()`` is one line naming the file and the cause."""

    kind = "unreadable"

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.path}: {self.kind}: {self.cause}")

    def __reduce__(self) -> tuple:
        """Rebuilt from (path, cause), so that it crosses process boundaries (Dask workers) intact."""
        return type(self), (self.path, self.cause)


class UnsupportedFormatError(ReaderError):
    kind = "unsupported format"


class EmptyFileError(ReaderError):
    kind = "empty file"


class TruncatedFileError(ReaderError):
    kind = "truncated file"


class CorruptFileError(ReaderError):
    kind = "corrupt file"


class UnreadableInputError(ReaderError):
    """An input that cannot be opened as a file at all: a broken link, a FIFO, a socket, a device,
    a folder that cannot be listed. Found by :mod:`accelstore.readers.discovery` without opening it."""

    kind = "unreadable input"


class AmbiguousTimeError(ReaderError):
    """A CSV whose times cannot be read without guessing: numbers with no unit, day/month orders,
    formats other than ISO-8601, or a UTC-offset change that makes local times repeat. The message
    says which option settles it."""

    kind = "ambiguous time"


class BadTimeError(CorruptFileError):
    """A CSV time that is missing, unparseable or out of range; the message names the first such row."""

    kind = "bad time"


class BadValueError(CorruptFileError):
    """A CSV x, y or z value that is not a number; the message names the column and the first such row."""

    kind = "bad value"


class SpanTooLongError(ReaderError):
    """A recording longer than ``max_span_days`` from first to last sample: almost always a clock
    that jumped (a corrupt time stamp, a device reset), whose windows would fill years of store.
    The message gives the span and where the largest gap is."""

    kind = "too long"


@dataclass(frozen=True)
class ProcessingOptions:
    """actipy's processing steps, each switchable (``None`` disables the low-pass), and how to read input.

    ``engine``: "numba" runs the steps of :mod:`accelstore.processing` on the reader's arrays;
    "actipy" lets actipy run its own (the reference path).
    ``csv_time_unit``: the unit ("s", "ms", "us", "ns") of a CSV's numeric (epoch) times, which
    are refused without it; they are taken as the device's local clock.
    ``csv_time_format``: a ``strptime`` format for a CSV's text times; without it only ISO-8601
    is read.
    ``max_span_days``: a recording spanning more days than this, first to last sample, is refused
    (:class:`SpanTooLongError`); ``math.inf`` disables the check.
    """

    lowpass_hz: float | None = 20.0
    calibrate: bool = True
    detect_nonwear: bool = True
    engine: str = "numba"
    csv_time_unit: str | None = None
    csv_time_format: str | None = None
    max_span_days: float = 60.0

    def __post_init__(self) -> None:
        if self.csv_time_unit is not None and self.csv_time_unit not in CSV_TIME_UNITS:
            raise ValueError(f"csv_time_unit {self.csv_time_unit!r} is not one of {', '.join(CSV_TIME_UNITS)}")
        if not self.max_span_days > 0:
            raise ValueError(f"max_span_days must be positive, not {self.max_span_days!r}")

    @property
    def actipy_steps(self) -> ProcessingOptions:
        """The steps actipy itself is to run: all of them with the actipy engine, none otherwise."""
        if self.engine == "actipy":
            return self
        return dataclasses.replace(self, lowpass_hz=None, calibrate=False, detect_nonwear=False)


@dataclass
class Recording:
    """One file's samples on the device clock (naive local time) with what is known about it."""

    path: Path
    time: np.ndarray  # datetime64[ns], increasing
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, z: float32 (N,) in g; NaN where non-wear
    sample_rate: float
    device: str
    device_id: str
    info: dict[str, Any] = field(default_factory=dict)
    annotation: np.ndarray | None = None  # labelled CSVs only: one string per sample

    @property
    def xyz(self) -> np.ndarray:
        """The axes as one (N, 3) array (a copy: the hot path uses ``axes``)."""
        return np.stack(self.axes, axis=1)


def _axes_of(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame's own x, y, z column arrays as contiguous float32: no copy when they already are."""
    return tuple(np.ascontiguousarray(data[axis].to_numpy(), dtype=np.float32) for axis in ("x", "y", "z"))


def file_format(path: str | os.PathLike) -> str:
    """The format suffix of ``path`` ('.cwa', '.csv', …), ignoring a trailing '.gz'."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def is_supported(path: str | os.PathLike) -> bool:
    return file_format(path) in SUPPORTED_SUFFIXES


def file_digest(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    """The first 128 bits of the SHA-256 of the file's bytes (hex): with the size, what tells a
    re-run a file is unchanged. SHA-256 rather than BLAKE2b because CPUs hash it in hardware
    (about 3× faster here, which counts on every file of a cohort)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_size):
            digest.update(block)
    return digest.hexdigest()[:32]


def read_recording(
    path: str | os.PathLike, options: ProcessingOptions = ProcessingOptions(), buffers: SampleBuffers | None = None
) -> Recording:
    """Read and process one file: actipy's low-pass, calibration and non-wear steps, no resampling.

    ``buffers``: where the Numba ``.cwa`` reader puts the samples (see :class:`~accelstore.readers.cwa.SampleBuffers`);
    the recording's arrays are then views of them, valid until the buffers are next used.
    Every format's samples are screened once read, before processing (:func:`_screen`): a span
    over ``options.max_span_days`` is refused, and ``info["OutOfRangeSamples"]`` counts the
    samples beyond the store's ±32.767 g.
    """
    path = Path(path)
    _check_regular_file(path)
    if path.stat().st_size == 0:
        raise EmptyFileError(path, "the file has zero bytes")
    fmt = file_format(path)
    if fmt not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(path, f"'{fmt or path.name}' is not one of {', '.join(SUPPORTED_SUFFIXES)}")
    if fmt == ".csv":
        return _read_csv(path, options)
    if fmt == ".cwa" and options.engine == "numba":
        return _read_cwa(path, options, buffers)
    if fmt == ".bin":
        _check_geneactiv(path)
    if fmt == ".gt3x":
        _check_gt3x(path)
    return _read_device(path, options)


def non_regular_kind(mode: int) -> str:
    """What a ``stat`` mode that is not a regular file's is, in words (for one-line messages)."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_regular_file(path: Path) -> None:
    """Refuse anything but an existing regular file before opening it: opening a FIFO blocks."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise UnreadableInputError(path, f"broken symbolic link to '{os.readlink(path)}'") from None
        raise UnreadableInputError(path, "no such file") from None
    except OSError as error:
        raise UnreadableInputError(path, error.strerror or str(error)) from None
    if not stat.S_ISREG(mode):
        raise UnreadableInputError(path, f"not a regular file: {non_regular_kind(mode)}")


def _parser_failure(path: Path, error: Exception) -> ReaderError:
    """What a parser's exception on a file's bytes says about the file: cut short, or corrupt."""
    cause = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, EOFError) or _says_truncated(str(error)):
        return TruncatedFileError(path, cause)
    return CorruptFileError(path, cause)


def _says_truncated(message: str) -> bool:
    """Whether a parser's message says the input ended early (gzip's, actipy's stream reader's…)."""
    return any(words in message.lower() for words in ("truncat", "ended unexpectedly", "ended before"))


def _is_environment_error(error: Exception) -> bool:
    """An error about this machine rather than the file (no ``java``, out of memory): not the file's failure."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, FileNotFoundError) and error.filename in ("java", b"java")


def _read_device(path: Path, options: ProcessingOptions) -> Recording:
    import actipy

    steps = options.actipy_steps
    with _captured_output() as output:
        try:
            data, info = actipy.read_device(
                str(path),
                lowpass_hz=steps.lowpass_hz or None,
                calibrate_gravity=steps.calibrate,
                detect_nonwear=steps.detect_nonwear,
                resample_hz=None,
                verbose=False,
            )
        except subprocess.CalledProcessError:
            raise CorruptFileError(path, _java_error(output.text()) or "the device parser failed") from None
        except Exception as error:  # actipy's Python side (zipfile, struct, asserts…): see the module docstring
            if _is_environment_error(error):
                raise
            raise _parser_failure(path, error) from None
    for line in output.text().splitlines():
        if line.strip():
            log.debug("%s: actipy: %s", path.name, line.strip())
    if len(data) == 0:
        raise EmptyFileError(path, "no samples could be read")
    time = data.index.to_numpy(dtype="datetime64[ns]")
    axes = _axes_of(data)
    recording = Recording(
        path=path,
        time=time,
        axes=axes,
        sample_rate=float(info.get("SampleRate", np.nan)),
        device=str(info.get("Device", "")),
        device_id=str(info.get("DeviceID", "")),
        info={**info, **_screen(path, time.view(np.int64), axes, options)},
    )
    temperature = data["temperature"].to_numpy() if "temperature" in data else None
    del data  # the frame's other columns (light, gyroscope) are not needed while processing
    return _process(recording, options, temperature)


def _read_cwa(path: Path, options: ProcessingOptions, buffers: SampleBuffers | None) -> Recording:
    """:func:`accelstore.readers.cwa.read_cwa`: what actipy reads, without its JVM and DataFrame."""
    from accelstore.readers.cwa import read_cwa

    try:
        # non-wear detection recomputes the wear-time keys on the processed samples
        data = read_cwa(path, buffers, wear_time=not options.detect_nonwear)
    except ValueError as error:  # the Java parser's message, as on actipy's path (or gzip's, cut short)
        raise (TruncatedFileError if _says_truncated(str(error)) else CorruptFileError)(path, str(error)) from None
    except Exception as error:  # see the module docstring
        if _is_environment_error(error):
            raise
        raise _parser_failure(path, error) from None
    if len(data.time_ns) == 0:
        raise EmptyFileError(path, "no samples could be read")
    # Read-only, as actipy's are: the processing kernels are compiled (warm_up) for read-only ones.
    data.time_ns.flags.writeable = False
    axes = (data.x, data.y, data.z)
    recording = Recording(
        path=path,
        time=data.time_ns.view("datetime64[ns]"),
        axes=axes,
        sample_rate=float(data.info["SampleRate"]),
        device=data.info["Device"],
        device_id=str(data.info["DeviceID"]),
        info={**data.info, **_screen(path, data.time_ns, axes, options)},
    )
    return _process(recording, options, data.temperature)


def _read_csv(path: Path, options: ProcessingOptions) -> Recording:
    """A ``time,x,y,z[,annotation]`` table, by the rules of :func:`_csv_times` and :func:`_csv_axes`.

    Rows with a non-finite x, y or z (inf, -inf, NaN, an empty cell) are absent samples: dropped
    before anything else, so that the low-pass cannot spread them over their neighbours, and
    counted in ``info["NonFiniteSamples"]``. Values beyond float32's range (±3.4e38 g) become
    infinite and are dropped with them. The rows are then put in time order.
    """
    import actipy

    frame = _load_csv(path)
    time_ns, offset = _csv_times(path, frame["time"], options)
    axes = _csv_axes(path, frame)
    finite = np.isfinite(axes[0]) & np.isfinite(axes[1]) & np.isfinite(axes[2])
    kept = np.flatnonzero(finite)
    non_finite = len(finite) - len(kept)
    if len(kept) < 2:
        dropped = f" ({non_finite} with a non-finite x, y or z dropped)" if non_finite else ""
        raise EmptyFileError(path, f"fewer than two samples{dropped}")
    order = kept[np.argsort(time_ns[kept], kind="stable")]
    time_ns = time_ns[order]
    axes = tuple(axis[order] for axis in axes)
    sample_rate = _infer_sample_rate(time_ns)
    if not np.isfinite(sample_rate):
        raise BadTimeError(path, "the times do not advance: the median step between samples is zero")
    screened = _screen(path, time_ns, axes, options)
    index = pd.DatetimeIndex(time_ns.view("datetime64[ns]"), name="time")
    data = pd.DataFrame(dict(zip("xyz", axes)), index=index, copy=False)
    del axes
    steps = options.actipy_steps
    with _captured_output():
        try:
            data, info = actipy.process(
                data,
                sample_rate,
                lowpass_hz=steps.lowpass_hz or None,
                calibrate_gravity=steps.calibrate,
                detect_nonwear=steps.detect_nonwear,
                resample_hz=None,
                verbose=False,
            )
        except ValueError as error:  # as in _process: e.g. too few samples to low-pass filter
            raise CorruptFileError(path, f"{type(error).__name__}: {error}") from None
    info.update(screened)
    info.update({"SampleRate": sample_rate, "Device": "CSV", "DeviceID": "", "UtcOffset": offset, "NonFiniteSamples": non_finite})
    annotation = frame["annotation"].to_numpy(dtype=object)[order] if "annotation" in frame.columns else None
    recording = Recording(
        path=path,
        time=data.index.to_numpy(dtype="datetime64[ns]"),
        axes=_axes_of(data),
        sample_rate=sample_rate,
        device="CSV",
        device_id="",
        info=info,
        annotation=annotation,
    )
    return _process(recording, options, None)


def _load_csv(path: Path) -> pd.DataFrame:
    """The table with its ``time``, ``x``, ``y``, ``z`` columns checked to be there."""
    try:
        frame = pd.read_csv(path, low_memory=False)
    except Exception as error:  # pandas' parser and the decompressors: see the module docstring
        if _is_environment_error(error):
            raise
        raise _parser_failure(path, error) from None
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


# ---------------------------------------------------------------- CSV times

_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})\b")
_TIME_AND_OFFSET = re.compile(r"^(?P<local>.*?\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?\s*$")
_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2})?$")
_DAY_MONTH_ROWS_EXAMINED = 1_000_000


def _csv_times(path: Path, column: pd.Series, options: ProcessingOptions) -> tuple[np.ndarray, str]:
    """The time column as int64 ns on the device's local clock (naive), in file order, and its UTC offset.

    The store keeps each device's local clock, so the rules never shift a time:

    - numbers are epoch times in ``options.csv_time_unit`` (refused without it: seconds and
      milliseconds cannot be told apart safely), taken as the local clock;
    - text is ISO-8601 (``YYYY-MM-DD``, then ``T`` or a space and ``hh:mm[:ss[.f…]]``, then an
      optional ``Z`` or ``±hh[:mm]`` offset) or, with ``options.csv_time_format``, that
      ``strptime`` format. Anything else is refused (:class:`AmbiguousTimeError`), day/month
      orders included — even where a day above 12 would settle the order: a file is never read by
      a guess, and the message says which order the file looks like;
    - an offset does not move a time: ``08:00+01:00`` is stored as 08:00, and the offset is
      returned ("+01:00"; "" when the times carry none). Offsets may change within a file (a
      daylight-saving change): each sample keeps its own local time and the earliest sample's
      offset is returned — unless the change makes local times repeat (clocks going back an hour
      with samples on both sides), which is refused, as the store's one clock would hold those
      times twice. Some times with an offset and others without are refused too.

    A missing or unparseable time, or an epoch beyond the datetime range, is a :class:`BadTimeError`
    naming the first such data row (1 = the row after the header).
    """
    if pd.api.types.is_bool_dtype(column):
        raise BadTimeError(path, f"the time column holds true/false values (data row 1: {column.iloc[0]!r})")
    if pd.api.types.is_numeric_dtype(column):
        if options.csv_time_unit is not None or options.csv_time_format is None:
            return _epoch_times(path, column.to_numpy(), options.csv_time_unit), ""
        column = column.astype(str)  # digits read by a format, e.g. '%Y%m%d%H%M%S'
    first = column.dropna()
    if first.empty:
        raise BadTimeError(path, "the time column is empty")
    sample = str(first.iloc[0])
    if options.csv_time_format is None and _NUMBER.match(sample):
        if options.csv_time_unit is None:
            raise _unit_needed(path, sample)
        numbers = pd.to_numeric(column, errors="coerce")
        _raise_on_bad_times(path, numbers.isna().to_numpy(), column, "a number")
        return _epoch_times(path, numbers.to_numpy(), options.csv_time_unit), ""
    fmt = options.csv_time_format or "ISO8601"
    local_ns, offsets = _parse_text_times(path, column, fmt)
    bad = local_ns == np.iinfo(np.int64).min
    if options.csv_time_format is None and bad[column.notna().to_numpy()].all():
        raise _unrecognised_format(path, column, sample)
    expected = f"in the format {fmt!r}" if options.csv_time_format else "ISO-8601 (YYYY-MM-DD hh:mm:ss)"
    _raise_on_bad_times(path, bad, column, expected)
    if isinstance(offsets, np.ndarray):
        return local_ns, _check_offset_changes(path, local_ns, offsets)
    return local_ns, "" if offsets is None else _format_offset(offsets)


def _raise_on_bad_times(path: Path, bad: np.ndarray, column: pd.Series, expected: str) -> None:
    """A :class:`BadTimeError` for the first row in ``bad``, if any."""
    rows = np.flatnonzero(bad)
    if len(rows):
        value = column.iloc[rows[0]]
        if pd.isna(value):
            raise BadTimeError(path, f"missing time in data row {rows[0] + 1}")
        raise BadTimeError(path, f"time {str(value)!r} in data row {rows[0] + 1} is not {expected}")


def _unit_needed(path: Path, example: object) -> AmbiguousTimeError:
    return AmbiguousTimeError(
        path, f"the times are numbers (data row 1: {example}); pass --csv-time-unit s|ms|us|ns to say which unit they count"
    )


def _epoch_times(path: Path, values: np.ndarray, unit: str | None) -> np.ndarray:
    """Numeric times in ``unit`` as int64 ns on the device's local clock.

    Integers are exact. Floats are exact to what a float64 of their size can hold, and rounded to
    the power of ten above that: ``1709280000.02`` s (a double ~0.02 µs off) is 08:00:00.020 exactly.
    """
    if unit is None:
        raise _unit_needed(path, values[0].item() if len(values) else "")
    factor = CSV_TIME_UNITS[unit]
    limit = np.iinfo(np.int64).max // factor - 1
    if values.dtype.kind in "iu":
        beyond = values > limit if values.dtype.kind == "u" else np.abs(values) > limit
        _raise_beyond(path, values, beyond, unit)
        time_ns = values.astype(np.int64) * factor
    else:
        time_ns = _float_epoch_ns(path, values.astype(np.float64), factor, limit, unit)
    _warn_if_implausible(path, time_ns, unit)
    return time_ns


def _float_epoch_ns(path: Path, values: np.ndarray, factor: int, limit: int, unit: str) -> np.ndarray:
    missing = np.isnan(values)
    if missing.any():
        raise BadTimeError(path, f"missing time in data row {np.flatnonzero(missing)[0] + 1}")
    _raise_beyond(path, values, ~(np.abs(values) <= limit), unit)
    whole = np.floor(values)
    time_ns = whole.astype(np.int64) * factor + np.rint((values - whole) * factor).astype(np.int64)
    resolution_ns = float(np.spacing(np.abs(values).max())) * factor
    if resolution_ns > 1:
        quantum = 10 ** math.ceil(math.log10(resolution_ns))
        time_ns = (time_ns + quantum // 2) // quantum * quantum
    return time_ns


def _raise_beyond(path: Path, values: np.ndarray, beyond: np.ndarray, unit: str) -> None:
    rows = np.flatnonzero(beyond)
    if len(rows):
        raise BadTimeError(
            path, f"time {values[rows[0]].item()} in data row {rows[0] + 1} is beyond the datetime range in unit '{unit}' (is the unit right?)"
        )


def _warn_if_implausible(path: Path, time_ns: np.ndarray, unit: str) -> None:
    """Epochs read in the wrong unit mostly land near 1970: say so (the data are still what was asked)."""
    first = np.datetime64(int(time_ns.min()), "ns")
    if not np.datetime64("1990-01-01") <= first < np.datetime64("2100-01-01"):
        log.warning("%s: numeric times in unit '%s' start at %s; is --csv-time-unit right?", path.name, unit, _clock(int(time_ns.min())))


def _parse_text_times(path: Path, column: pd.Series, fmt: str) -> tuple[np.ndarray, np.ndarray | int | None]:
    """Local times (int64 ns, ``iNaT`` where unparseable) and their UTC offsets in minutes.

    Offsets: ``None`` (none in the file), one int (all the same), or an array (they change:
    pandas refuses those, so the offsets are split off the text and parsed apart).
    """
    try:
        parsed = pd.to_datetime(column, format=fmt, errors="coerce")
    except ValueError as error:
        if "Mixed timezones" not in str(error):
            raise BadTimeError(path, f"the times cannot be parsed with {fmt!r}: {error}") from None
        return _parse_changing_offsets(path, column, fmt)
    offset = None
    if parsed.dt.tz is not None:
        first_valid = parsed.first_valid_index()
        offset = int(parsed[first_valid].utcoffset().total_seconds() // 60)
        parsed = parsed.dt.tz_localize(None)
    return _as_ns(path, column, parsed), offset


def _as_ns(path: Path, column: pd.Series, parsed: pd.Series) -> np.ndarray:
    """Parsed times (any resolution, NaT where unparseable) as int64 ns; beyond ns's 1677–2262 is a bad time."""
    index = pd.DatetimeIndex(parsed)
    beyond = np.flatnonzero(np.asarray((index < pd.Timestamp.min) | (index > pd.Timestamp.max), dtype=bool))
    if len(beyond):
        row = int(beyond[0])
        raise BadTimeError(path, f"time {str(column.iloc[row])!r} in data row {row + 1} is beyond the datetime range (1677-2262)")
    return index.as_unit("ns").asi8.copy()


def _parse_changing_offsets(path: Path, column: pd.Series, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Text times whose UTC offsets differ from row to row: local part and offset parsed apart."""
    local_fmt = fmt
    if fmt != "ISO8601":
        if not fmt.rstrip().endswith("%z"):
            raise AmbiguousTimeError(path, f"the UTC offsets change within the file, which is read only with '%z' last in --csv-time-format (not {fmt!r})")
        local_fmt = fmt.rstrip()[:-2].rstrip()
    parts = column.astype(object).str.extract(_TIME_AND_OFFSET)
    local_ns = _as_ns(path, column, pd.to_datetime(parts["local"], format=local_fmt, errors="coerce"))
    without = np.flatnonzero(parts["offset"].isna().to_numpy() & (local_ns != np.iinfo(np.int64).min))
    if len(without):
        raise AmbiguousTimeError(
            path, f"some times carry a UTC offset and some do not (data row {without[0] + 1}: {column.iloc[without[0]]!r})"
        )
    minutes = {text: _offset_minutes(text) for text in parts["offset"].dropna().unique()}
    offsets = parts["offset"].map(minutes).fillna(0).to_numpy(dtype=np.int64)
    return local_ns, offsets


def _offset_minutes(text: str) -> int:
    """'Z', '+01', '+0100' or '-05:30' as minutes east of UTC."""
    if text == "Z":
        return 0
    match = _OFFSET.match(text)
    minutes = int(match["hours"]) * 60 + int(match["minutes"] or 0)
    return -minutes if match["sign"] == "-" else minutes


def _format_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _check_offset_changes(path: Path, local_ns: np.ndarray, offsets: np.ndarray) -> str:
    """The earliest sample's offset, once sure no offset change makes local times repeat.

    In true (UTC) order, local time must still increase wherever the offset changes: clocks put
    forward leave a gap, which is fine; clocks put back with samples on both sides repeat up to
    an hour of local times, which the store's one clock cannot hold.
    """
    utc_ns = local_ns - offsets * 60_000_000_000
    order = np.argsort(utc_ns, kind="stable")
    local_sorted, offsets_sorted = local_ns[order], offsets[order]
    repeats = (np.diff(local_sorted) <= 0) & (offsets_sorted[1:] != offsets_sorted[:-1])
    if repeats.any():
        k = int(np.flatnonzero(repeats)[0])
        raise AmbiguousTimeError(
            path,
            f"local times repeat where the UTC offset changes from {_format_offset(int(offsets_sorted[k]))} to "
            f"{_format_offset(int(offsets_sorted[k + 1]))} (data row {order[k + 1] + 1}, {_clock(local_sorted[k + 1])}): "
            "the device clock would hold those times twice",
        )
    changes = np.unique(offsets)
    log.info("%s: UTC offset changes within the file (%s); each sample keeps its local time", path.name, ", ".join(map(_format_offset, changes)))
    return _format_offset(int(offsets_sorted[0]))


def _unrecognised_format(path: Path, column: pd.Series, sample: str) -> AmbiguousTimeError:
    """Why text times that are not ISO-8601 are refused, with the format they look like."""
    match = _DAY_MONTH.match(sample)
    if match is None:
        return AmbiguousTimeError(
            path, f"time {sample!r} (data row 1) is not ISO-8601 (YYYY-MM-DD hh:mm:ss[.f][±hh:mm]); pass --csv-time-format to read it"
        )
    rows = column.dropna().iloc[:_DAY_MONTH_ROWS_EXAMINED].astype(object)
    fields = rows.str.extract(_DAY_MONTH)
    first, second = (pd.to_numeric(fields[k], errors="coerce") for k in (0, 2))
    day_first, month_first = _day_month_format(sample, match, True), _day_month_format(sample, match, False)
    if (first > 12).any() and not (second > 12).any():
        row = int(np.argmax(first.to_numpy() > 12)) + 1
        hint = f"it looks day-first (data row {row} starts above 12), which is read only with --csv-time-format '{day_first}'"
    elif (second > 12).any() and not (first > 12).any():
        row = int(np.argmax(second.to_numpy() > 12)) + 1
        hint = f"it looks month-first (data row {row} has a second field above 12), which is read only with --csv-time-format '{month_first}'"
    else:
        hint = f"every row reads either way: pass --csv-time-format, '{day_first}' or '{month_first}'"
    return AmbiguousTimeError(path, f"time {sample!r} (data row 1) has its day and month in an order ISO-8601 does not fix; {hint}")


def _day_month_format(sample: str, match: re.Match, day_first: bool) -> str:
    """The ``strptime`` format ``sample`` has, read day-first or month-first (a hint for the message)."""
    separator = match[2]
    date = separator.join(("%d", "%m") if day_first else ("%m", "%d")) + separator + ("%Y" if len(match[4]) == 4 else "%y")
    rest = sample[match.end():].strip()
    if not rest:
        return date
    clock = "%H:%M:%S" if rest.count(":") >= 2 else "%H:%M"
    if re.search(r":\d{2}[.,]\d", rest):
        clock += ".%f"
    return f"{date} {clock}"


# ---------------------------------------------------------------- every format


def _screen(path: Path, time_ns: np.ndarray, axes: tuple[np.ndarray, ...], options: ProcessingOptions) -> dict[str, Any]:
    """Checks on a file's samples as read, before the expensive steps: its span, and values the store cannot hold.

    Returns ``OutOfRangeSamples``: samples with an axis beyond ±32.767 g (the store's int16
    milli-g), whose windows the resampler leaves invalid rather than clip them. With the actipy
    engine the samples have been processed already (actipy reads and processes in one call).
    """
    _check_span(path, time_ns, options.max_span_days)
    return {"OutOfRangeSamples": out_of_range_samples(*axes)}


def _check_span(path: Path, time_ns: np.ndarray, max_days: float) -> None:
    """Refuse a recording longer than ``max_days`` (times are increasing), saying where its largest gap is."""
    if len(time_ns) < 2:
        return
    span_ns = int(time_ns[-1]) - int(time_ns[0])
    if span_ns <= max_days * NS_PER_DAY:
        return
    gaps = np.diff(time_ns)
    k = int(np.argmax(gaps))
    raise SpanTooLongError(
        path,
        f"spans {span_ns / NS_PER_DAY:.1f} days (limit {max_days:g}, --max-span-days); "
        f"largest gap {_duration(int(gaps[k]))} after {_clock(time_ns[k])}",
    )


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds:.3g} s"


def _clock(ns: int | np.integer) -> str:
    """A device-clock time in ns as 'YYYY-MM-DD hh:mm:ss' (to the second, as a message wants)."""
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


def _process(recording: Recording, options: ProcessingOptions, temperature: np.ndarray | Steps | None) -> Recording:
    """The numba engine's steps on a recording read unprocessed (the actipy engine's ran in actipy)."""
    if options.engine == "actipy":
        return recording
    from accelstore.processing import process_recording

    try:
        return process_recording(recording, options, temperature)
    except ValueError as error:  # what actipy's steps raise inside read_device, e.g. too few samples
        raise CorruptFileError(recording.path, f"{type(error).__name__}: {error}") from None


def _infer_sample_rate(time_ns: np.ndarray) -> float:
    """The rate from the median interval between samples, ignoring gaps between bouts."""
    step = np.median(np.diff(time_ns))
    return float(round(1e9 / step, 3)) if step > 0 else float("nan")


_GENEACTIV_PAGE = b"Recorded Data"


def _check_geneactiv(path: Path) -> None:
    """actipy reads any '.bin' as GENEActiv; refuse other formats and truncated files up front."""
    with open(path, "rb") as f:
        head = f.read(4096)
    signature = b"Device Identity"
    if (head.startswith(signature) or signature.startswith(head)) and len(head) < 4096 and _GENEACTIV_PAGE not in head:
        raise TruncatedFileError(path, f"the file ends inside its GENEActiv header, after {len(head)} bytes")
    if not head.startswith(b"Device Identity") or b"GENEActiv" not in head:
        first_line = head.split(b"\n", 1)[0][:40].decode("ascii", "replace").strip()
        raise UnsupportedFormatError(path, f"not a GENEActiv .bin file (header starts '{first_line}')")
    declared = re.search(rb"Number of Pages:\s*(\d+)", head)
    if declared is None:
        raise CorruptFileError(path, "GENEActiv header has no 'Number of Pages'")
    pages = _count_occurrences(path, _GENEACTIV_PAGE)
    if pages < int(declared.group(1)):
        raise TruncatedFileError(path, f"header declares {int(declared.group(1))} pages, the file holds {pages}")


def _check_gt3x(path: Path) -> None:
    """A ``.gt3x`` is a ZIP archive; refuse one that is not, or whose end (its directory) is cut off.

    actipy asserts as much (``AssertionError: Cannot get device id``); this says what is wrong.
    """
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        raise TruncatedFileError(path, "the ZIP archive of a .gt3x file has no central directory: the file was cut short")
    raise CorruptFileError(path, f"not a ZIP archive, as a .gt3x file is (it starts {head!r})")


def _count_occurrences(path: Path, needle: bytes, block_size: int = 1 << 22) -> int:
    count, tail = 0, b""
    with open(path, "rb") as f:
        while block := f.read(block_size):
            data = tail + block
            count += data.count(needle)
            tail = data[-(len(needle) - 1):]  # too short to hold a match: nothing counted twice
    return count


def _java_error(text: str) -> str:
    """The cause from actipy's Java parser output ('Error reading FILE: CAUSE')."""
    for line in text.splitlines():
        if line.startswith("Error reading") and ": " in line:
            return line.split(": ", 1)[1]
    lines = [l for l in text.splitlines() if "Exception" in l]
    return lines[0] if lines else ""


class _Output:
    """What was written to stdout/stderr; readable inside the block and after it."""

    def __init__(self, file: Any):
        self._file = file
        self._text: str | None = None

    def text(self) -> str:
        if self._text is not None:
            return self._text
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def close(self) -> None:
        self._text = self.text()


@contextlib.contextmanager
def _captured_output() -> Iterator[_Output]:
    """Capture file descriptors 1 and 2, where actipy and its Java parser write their messages.

    Safe in ingest's one-thread-per-process workers; the text is logged at debug level and the
    parser's error line becomes the cause of a :class:`ReaderError`.
    """
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        output = _Output(sink)
        try:
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            output.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
