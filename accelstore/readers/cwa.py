"""Axivity ``.cwa`` (and ``.cwa.gz``) files read with Numba, exactly as actipy 3.8 reads them.

The fast path of ingest for the UK Biobank format (docs/architecture.md, "Ingest"). :func:`read_cwa` returns what
``actipy.read_device(path, lowpass_hz=None, calibrate_gravity=False, detect_nonwear=False,
resample_hz=None)`` returns — the parse of actipy's ``AxivityReader.java``, then its
``quality_control`` — sample for sample and bit for bit: the same blocks skipped and counted in
``ReadErrors``, the same timestamps, float32 values and info dict (less its wear-time keys, see
below). It starts no JVM and builds no DataFrame. The file is read ``CHUNK_BLOCKS`` at a time, twice (count the samples, then decode
them into arrays of exactly that length), so the only memory the size of the recording is the
output arrays.

What the Java does, and so what is done here:

- The file is a sequence of 512-byte blocks. Blocks that do not start with "AX" (the "MD"
  header, padding) are passed over without a word.
- A data block is malformed — skipped and counted in ``ReadErrors`` — when its 16-bit words do
  not sum to 0 (checked only when its rate code is not 0), it has fewer than three axes, an
  unsupported packing, no positive sample rate, or a time stamp that is not a real date-time. A
  sample count beyond the payload's capacity is capped and counted; the block is kept.
- A block's start: the time stamp's whole second, minus its ``timestampOffset`` samples at the
  nominal rate (the 15-bit fraction of a second is ignored). It ends ``samples / rate`` later.
  A block that starts less than 1 s after the previous one ended (or before it) is moved to
  start there; its samples are spread evenly from its start to its own end. Each time is
  truncated to whole milliseconds.
- Values: packed samples hold three 10-bit mantissas and a shared 2-bit exponent, unpacked ones
  16-bit integers (AX6: gyroscope first, then acceleration); either is divided by the unit in
  the top three bits of the light field (256 counts per g by default). Temperature is the
  block's, in °C, on every sample (held here as runs, :class:`~accelstore.run_lengths.RunLengths`).
- Fatal (``ValueError`` with the Java's message): no data block, a partial block at the end of
  the file before any sample, a block whose layout (AX3 / AX6) differs from the first's. A
  partial block after samples ends the reading and counts one read error.
- Quality control: samples whose time is not after every earlier one are dropped, adding
  ``ceil(non-increasing steps / rate)`` to ``ReadErrors``. Its wear-time keys
  (``WearTime(days)``, ``NumInterrupts``, ``Covers24hOK``) are not computed here: they need the
  non-wear kernel, which lies above the readers, so the processing layer adds them (the
  recording's ``wear_time_deferred``).
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from numba import njit

from accelstore.run_lengths import RunLengths

BLOCK_BYTES = 512
CHUNK_BLOCKS = 16_384
"""Blocks read at a time (8 MiB): the reader's one buffer besides its output arrays."""

NO_DATA_BLOCK = "No valid CWA data block found"
PARTIAL_BLOCK = "Unexpected partial CWA block"

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86_400
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH = datetime(1970, 1, 1)

_PAYLOAD_AT = 30
_PAYLOAD_BYTES = 480
_AX6_ACCELERATION_AT = 6  # AX6 samples: gyroscope x, y, z, then acceleration x, y, z

NOT_DATA, MALFORMED, DATA = 0, 1, 2
AX3, AX6 = 0, 1
LAYOUT_NAMES = ("AX3", "AX6")
NO_LAYOUT = -1
BEFORE_ANY_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True)
class CwaData:
    """A .cwa file's samples on the device clock and actipy's info dict for it."""

    time_ns: np.ndarray  # int64 (N,), ns since 1970 on the naive device clock, increasing
    x: np.ndarray  # float32 (N,) in g
    y: np.ndarray
    z: np.ndarray
    temperature: RunLengths  # °C: each block's value on its samples
    info: dict[str, Any]


class _Header(NamedTuple):
    """What a block's header says; the fields after ``status`` mean something for DATA only."""

    status: int  # NOT_DATA, MALFORMED or DATA
    layout: int  # AX3 or AX6
    packed: bool  # 3 × 10 bits + exponent in 32 bits, or 16 bits per axis
    bytes_per_sample: int
    samples: int  # capped at the payload's capacity
    capped: bool  # the declared count exceeded the capacity
    rate: np.float32  # Hz
    start_s: float  # s since 1970
    temperature: np.float32  # °C
    unit: np.float32  # counts per g: a power of two


class _Cursor(NamedTuple):
    """Decoding state carried from one chunk of blocks to the next."""

    kept: int  # samples written to the output: those later than every sample before them
    previous_ns: int  # time of the last sample decoded, BEFORE_ANY_TIME before the first
    latest_ns: int  # latest time decoded, BEFORE_ANY_TIME before the first
    non_increasing: int  # samples not later than the one decoded before them
    last_block_end_s: float  # where the previous data block ended (the Java's lastBlockTime); 0 before any
    rate: float  # the last data block's rate: the Java's SampleRate
    runs: int  # temperature runs written

    @classmethod
    def start(cls) -> _Cursor:
        return cls(0, BEFORE_ANY_TIME, BEFORE_ANY_TIME, 0, 0.0, 0.0, 0)


class SampleBuffers:
    """Output arrays that :func:`read_cwa` reuses from one file to the next.

    A week at 100 Hz is ~1.2 GB of output (time, x, y, z). Fresh arrays for every file mean
    faulting in fresh pages every time, which costs as much as decoding them (and, where the
    kernel compacts memory for huge pages, several times more); a worker that reads file after
    file keeps these and touches its memory once. They grow to the longest recording seen, and are exactly its size.
    Arrays returned from them are overwritten by the next read.
    """

    def __init__(self) -> None:
        self._columns: list[np.ndarray] = []

    def columns(self, n_samples: int) -> tuple[np.ndarray, ...]:
        """time (int64) and x, y, z (float32) arrays of ``n_samples``: views of the buffers."""
        if not self._columns:
            self._columns = list(_new_columns(n_samples))
        elif len(self._columns[0]) < n_samples:
            try:  # grown in place (realloc), so that the pages already touched are kept
                for i in range(len(self._columns)):  # by index: a loop variable's reference fails numpy's check
                    self._columns[i].resize(n_samples)
            except ValueError:  # views of an earlier read are still alive: they keep the old buffers
                self._columns = list(_new_columns(n_samples))
        return tuple(column[:n_samples] for column in self._columns)


def _new_columns(n_samples: int) -> tuple[np.ndarray, ...]:
    return (np.empty(n_samples, dtype=np.int64),) + tuple(np.empty(n_samples, dtype=np.float32) for _ in range(3))


def read_cwa(path: str | os.PathLike, buffers: SampleBuffers | None = None) -> CwaData:
    """Read an Axivity ``.cwa`` or ``.cwa.gz`` file as actipy does with all processing off.

    With ``buffers``, the arrays returned are views of them, overwritten by the next
    ``read_cwa`` given the same buffers. ``info`` is actipy's without its wear-time keys
    (``WearTime(days)``, ``NumInterrupts``, ``Covers24hOK``: see the module docstring). Raises ``ValueError`` with a one-line cause (the Java parser's
    message where it has one) when the file holds no readable data; ``OSError`` when it cannot
    be opened.
    """
    with _opened(Path(path)) as file:
        device_id = _device_id(file)
        time_ns, x, y, z, temperature, cursor, read_errors = _read_blocks(file, buffers)
    info: dict[str, Any] = {
        "Filename": os.fspath(path),
        "Filesize(MB)": round(os.path.getsize(path) / (1024 * 1024), 1),
        "Device": "Axivity",
        "DeviceID": device_id,
        "ReadOK": 1,
        "ReadErrors": read_errors + _quality_errors(cursor.non_increasing, cursor.rate),
        "SampleRate": cursor.rate,
    }
    info |= _quality_info(time_ns)
    return CwaData(time_ns, x, y, z, temperature, info)


@contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """The file, or for ``.gz`` its content decompressed into an anonymous temporary file."""
    if not path.name.lower().endswith(".gz"):
        with open(path, "rb") as file:
            yield file
        return
    with tempfile.TemporaryFile() as content:
        try:
            with gzip.open(path, "rb") as compressed:
                shutil.copyfileobj(compressed, content, CHUNK_BLOCKS * BLOCK_BYTES)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"cannot decompress: {error}") from None
        yield content


def _device_id(file: BinaryIO) -> int | str:
    """actipy's DeviceID: the low 16 bits of the serial number in the "MD" header."""
    file.seek(0)
    head = file.read(7)
    if len(head) == 7 and head.startswith(b"MD"):
        return int.from_bytes(head[5:7], "little")
    return "unknown"


def _read_blocks(file: BinaryIO, buffers: SampleBuffers | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, RunLengths, _Cursor, int]:
    """The parse: time, x, y, z, temperature (non-increasing times dropped), the final cursor, ReadErrors."""
    n_blocks, partial_bytes = divmod(os.fstat(file.fileno()).st_size, BLOCK_BYTES)
    buffer = np.empty((max(1, min(CHUNK_BLOCKS, n_blocks)), BLOCK_BYTES), dtype=np.uint8)
    layout, read_errors, n_samples = _count_samples(file, n_blocks, buffer)
    if layout == NO_LAYOUT:
        raise ValueError(PARTIAL_BLOCK if partial_bytes else NO_DATA_BLOCK)
    if partial_bytes:
        if n_samples == 0:
            raise ValueError(PARTIAL_BLOCK)
        read_errors += 1  # the Java stops there: "Stopping at truncated CWA data"
    columns = buffers.columns(n_samples) if buffers is not None else _new_columns(n_samples)
    run_starts, run_values = np.empty(n_blocks, dtype=np.int64), np.empty(n_blocks, dtype=np.float32)
    cursor = _Cursor.start()
    for chunk in _chunks(file, n_blocks, buffer):
        cursor = _decode_blocks(chunk, *columns, run_starts, run_values, cursor)
    temperature = RunLengths(run_starts[: cursor.runs].copy(), run_values[: cursor.runs].copy(), cursor.kept)
    if buffers is not None:
        return *(column[: cursor.kept] for column in columns), temperature, cursor, read_errors
    for column in columns:
        column.resize(cursor.kept, refcheck=False)  # shrinks in place: nothing else refers to them
    return *columns, temperature, cursor, read_errors


def _count_samples(file: BinaryIO, n_blocks: int, buffer: np.ndarray) -> tuple[int, int, int]:
    """The first data block's layout (NO_LAYOUT if none), the blocks' ReadErrors and their samples."""
    layout, read_errors, n_samples = NO_LAYOUT, 0, 0
    for chunk in _chunks(file, n_blocks, buffer):
        layout, changed, chunk_errors, chunk_samples = _scan_blocks(chunk, layout)
        if changed != NO_LAYOUT:
            raise ValueError(f"CWA axis layout changes from {LAYOUT_NAMES[layout]} to {LAYOUT_NAMES[changed]}")
        read_errors += chunk_errors
        n_samples += chunk_samples
    return layout, read_errors, n_samples


def _chunks(file: BinaryIO, n_blocks: int, buffer: np.ndarray) -> Iterator[np.ndarray]:
    """The file's whole blocks from its start, as ``(k, 512)`` views of ``buffer`` (refilled each time)."""
    file.seek(0)
    for first in range(0, n_blocks, len(buffer)):
        chunk = buffer[: min(len(buffer), n_blocks - first)]
        if file.readinto(chunk.reshape(-1)) != chunk.nbytes:
            raise ValueError("the file shrank while it was read")
        yield chunk


def _quality_errors(non_increasing: int, rate: float) -> int:
    """actipy's ``quality_control``: a read error per second's worth of non-increasing times."""
    return math.ceil(non_increasing / rate) if non_increasing else 0


def _quality_info(time_ns: np.ndarray) -> dict[str, Any]:
    """The rest of actipy's ``quality_control`` keys but its wear-time ones, with its arithmetic (so equal to the bit)."""
    if len(time_ns) == 0:  # a file whose data blocks hold no sample
        return {"StartTime": None, "EndTime": None, "NumTicks": 0, "DataSpan(days)": 0}
    span_days = int(time_ns[-1] - time_ns[0]) / NS_PER_SECOND / SECONDS_PER_DAY
    return {
        "StartTime": _clock_time(time_ns[0]),
        "EndTime": _clock_time(time_ns[-1]),
        "NumTicks": len(time_ns),
        "DataSpan(days)": span_days,
    }


def _clock_time(time_ns: np.int64) -> str:
    return (_EPOCH + timedelta(microseconds=int(time_ns) // 1000)).strftime(TIME_FORMAT)


def warm_up() -> None:
    """Compile (or load from Numba's cache) the reader's kernels, for the array types it passes."""
    blocks = np.zeros((1, BLOCK_BYTES), dtype=np.uint8)
    _scan_blocks(blocks, NO_LAYOUT)
    time_ns = np.zeros(1, dtype=np.int64)
    axis = np.zeros(1, dtype=np.float32)
    _decode_blocks(blocks, time_ns, axis, axis, axis, time_ns, axis, _Cursor.start())


# --- kernels -------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _scan_blocks(blocks, layout):
    """Count the samples and malformed blocks of a chunk, as the Java writes them.

    ``layout``: that of the file's first data block, NO_LAYOUT while none has been seen. Returns
    (that layout, the layout of a block that differs from it or NO_LAYOUT — the Java stops
    there —, the chunk's ReadErrors, its samples).
    """
    read_errors = 0
    n_samples = 0
    for b in range(blocks.shape[0]):
        header = _block_header(blocks[b])
        if header.status == MALFORMED:
            read_errors += 1
        elif header.status == DATA:
            if layout == NO_LAYOUT:
                layout = header.layout
            elif header.layout != layout:
                return layout, header.layout, read_errors, n_samples
            read_errors += header.capped
            n_samples += header.samples
    return layout, NO_LAYOUT, read_errors, n_samples


@njit(cache=True, nogil=True)
def _decode_blocks(blocks, time_ns, x, y, z, run_starts, run_values, cursor):
    """Decode a chunk's samples into the outputs from ``cursor.kept`` on; return the new cursor.

    Times as the Java's ``BlockDecoder.write`` computes them, operation for operation (double
    precision where it uses doubles, single where floats), truncated to milliseconds. Only samples
    later than every earlier one are written (actipy's quality control).
    """
    kept, previous_ns, latest_ns, non_increasing, last_block_end_s, rate, runs = cursor
    for b in range(blocks.shape[0]):
        block = blocks[b]
        header = _block_header(block)
        if header.status != DATA:
            continue
        start_s = header.start_s
        end_s = start_s + np.float32(header.samples) / header.rate
        if last_block_end_s != 0 and start_s - last_block_end_s < 1.0:
            start_s = last_block_end_s
        last_block_end_s = end_s
        rate = header.rate
        span_s = end_s - start_s
        first_sample_at = _PAYLOAD_AT + (_AX6_ACCELERATION_AT if header.layout == AX6 else 0)
        per_unit = np.float32(1.0) / header.unit  # exact: the unit is a power of two
        kept_before = kept
        for i in range(header.samples):
            t_ns = int((start_s + i * span_s / header.samples) * 1000.0) * 1_000_000
            if t_ns <= previous_ns:
                non_increasing += 1
            previous_ns = t_ns
            if t_ns <= latest_ns:
                continue
            latest_ns = t_ns
            at = first_sample_at + header.bytes_per_sample * i
            if header.packed:
                raw_x, raw_y, raw_z = _packed_sample(block, at)
            else:
                raw_x, raw_y, raw_z = _unpacked_sample(block, at)
            time_ns[kept] = t_ns
            x[kept] = np.float32(raw_x) * per_unit
            y[kept] = np.float32(raw_y) * per_unit
            z[kept] = np.float32(raw_z) * per_unit
            kept += 1
        # the block's temperature on its samples kept: a new run unless it equals the last one
        if kept > kept_before and (runs == 0 or run_values[runs - 1] != header.temperature):
            run_starts[runs], run_values[runs] = kept_before, header.temperature
            runs += 1
    return _Cursor(kept, previous_ns, latest_ns, non_increasing, last_block_end_s, rate, runs)


@njit(cache=True, nogil=True)
def _block_header(block):
    """The Java's ``DataBlock.parse`` of one 512-byte block."""
    if block[0] != ord("A") or block[1] != ord("X"):
        return _not_data(NOT_DATA)
    rate_code = np.int64(block[24])
    if rate_code != 0 and not _words_sum_to_zero(block):
        return _not_data(MALFORMED)
    n_axes = np.int64(block[25]) >> 4
    packing = np.int64(block[25]) & 0x0F
    if n_axes < 3:
        return _not_data(MALFORMED)
    layout = AX6 if n_axes >= 6 else AX3
    if packing == 2:
        bytes_per_sample = 2 * n_axes
    elif packing == 0 and n_axes == 3:
        bytes_per_sample = 4
    else:
        return _not_data(MALFORMED)
    declared = _u16(block, 28)
    capacity = _PAYLOAD_BYTES // bytes_per_sample
    if rate_code == 0:
        rate = np.float32(_i16(block, 26))
        offset_s = np.float32(0.0)
    else:
        rate = np.float32(3200.0) / np.float32(1 << (15 - (rate_code & 15)))
        offset_s = np.float32(-_i16(block, 26)) / rate  # timestampOffset: samples before the stamp
    seconds = _epoch_seconds(_u16(block, 14) | (_u16(block, 16) << 16))
    if not rate > 0 or seconds < 0:
        return _not_data(MALFORMED)
    whole_s = math.floor(offset_s)
    start_s = float(seconds + whole_s) + float(offset_s - np.float32(whole_s))
    light = _u16(block, 18)
    temperature = np.float32(((_u16(block, 20) & 0x3FF) * 150.0 - 20500.0) / 1000.0)
    unit = np.float32(1 << (8 + ((light >> 13) & 0x07)))
    return _Header(
        DATA, layout, packing == 0, bytes_per_sample, min(declared, capacity), declared > capacity,
        rate, start_s, temperature, unit,
    )


@njit(cache=True, nogil=True)
def _not_data(status):
    return _Header(status, NO_LAYOUT, False, 0, 0, False, np.float32(0.0), 0.0, np.float32(0.0), np.float32(1.0))


@njit(cache=True, nogil=True)
def _packed_sample(block, at):
    """Acceleration in counts from 32 bits: x, y, z in 10-bit two's complement, a 2-bit exponent."""
    word = _u16(block, at) | (_u16(block, at + 2) << 16)
    exponent = word >> 30
    return (
        _signed_10_bits(word) << exponent,
        _signed_10_bits(word >> 10) << exponent,
        _signed_10_bits(word >> 20) << exponent,
    )


@njit(cache=True, nogil=True)
def _unpacked_sample(block, at):
    """Acceleration in counts from three little-endian 16-bit integers."""
    return _i16(block, at), _i16(block, at + 2), _i16(block, at + 4)


@njit(cache=True, nogil=True)
def _signed_10_bits(value):
    """The low 10 bits as two's complement (branch-free: signs of noisy samples are unpredictable)."""
    return ((value & 0x3FF) ^ 0x200) - 0x200


@njit(cache=True, nogil=True)
def _u16(block, at):
    return np.int64(block[at]) | (np.int64(block[at + 1]) << 8)


@njit(cache=True, nogil=True)
def _i16(block, at):
    return (_u16(block, at) ^ 0x8000) - 0x8000


@njit(cache=True, nogil=True)
def _words_sum_to_zero(block):
    """The CWA checksum: the block's 256 little-endian 16-bit words sum to 0 modulo 2**16."""
    words = block.view(np.uint16)  # the host's byte order: little-endian on x86 and ARM
    total = np.uint32(0)
    for i in range(words.shape[0]):
        total += words[i]
    return total & 0xFFFF == 0


@njit(cache=True, nogil=True)
def _epoch_seconds(stamp):
    """Seconds since 1970 of a packed CWA date-time (as UTC, i.e. naive), or -1 if it is no real one.

    Java's ``LocalDateTime.of`` refuses month 0 or 13–15, day 0 or past the month's end (leap
    years counted), hour ≥ 24, minute or second ≥ 60; the year (2000–2063) is always valid.
    """
    year = ((stamp >> 26) & 0x3F) + 2000
    month = (stamp >> 22) & 0x0F
    day = (stamp >> 17) & 0x1F
    hour = (stamp >> 12) & 0x1F
    minute = (stamp >> 6) & 0x3F
    second = stamp & 0x3F
    if month < 1 or month > 12 or day < 1 or day > _days_in_month(year, month):
        return -1
    if hour > 23 or minute > 59 or second > 59:
        return -1
    return _days_since_1970(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second


@njit(cache=True, nogil=True)
def _days_in_month(year, month):
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


@njit(cache=True, nogil=True)
def _days_since_1970(year, month, day):
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's ``days_from_civil``)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468
