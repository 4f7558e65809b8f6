"""A CSV's time column → int64 ns on the device's local clock: the rules of :func:`csv_times`.

A file is never read by a guess: times that could be read more than one way (numbers without a
unit, day/month orders, offsets that make local times repeat) are refused with a message saying
which option settles them.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from accelstore.readers.clock import clock_text
from accelstore.readers.errors import AmbiguousTimeError, BadTimeError
from accelstore.readers.options import CSV_TIME_UNITS, ProcessingOptions

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})\b")
_TIME_AND_OFFSET = re.compile(r"^(?P<local>.*?\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?\s*$")
_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2})?$")
_DAY_MONTH_ROWS_EXAMINED = 1_000_000


def csv_times(path: Path, column: pd.Series, options: ProcessingOptions) -> tuple[np.ndarray, str]:
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
        log.warning("%s: numeric times in unit '%s' start at %s; is --csv-time-unit right?", path.name, unit, clock_text(int(time_ns.min())))


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
            f"{_format_offset(int(offsets_sorted[k + 1]))} (data row {order[k + 1] + 1}, {clock_text(local_sorted[k + 1])}): "
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
