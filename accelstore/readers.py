"""Raw device files → numpy arrays in g plus metadata, through actipy (``.cwa``: Numba, by default).

Every failure to read becomes a :class:`ReaderError` whose one-line message names the file and
the cause; nothing here raises a bare traceback for a bad file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from accelstore.cwa import SampleBuffers
    from accelstore.steps import Steps

log = logging.getLogger(__name__)

DEVICE_SUFFIXES = (".cwa", ".gt3x", ".bin")
TABLE_SUFFIXES = (".csv",)
SUPPORTED_SUFFIXES = DEVICE_SUFFIXES + TABLE_SUFFIXES


class ReaderError(Exception):
    """A file that cannot be ingested; ``str()`` is one line naming the file and the cause."""

    kind = "unreadable"

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.path}: {self.kind}: {self.cause}")


class UnsupportedFormatError(ReaderError):
    kind = "unsupported format"


class EmptyFileError(ReaderError):
    kind = "empty file"


class TruncatedFileError(ReaderError):
    kind = "truncated file"


class CorruptFileError(ReaderError):
    kind = "corrupt file"


@dataclass(frozen=True)
class ProcessingOptions:
    """actipy's processing steps, each switchable (``None`` disables the low-pass).

    ``engine``: "numba" runs the steps of :mod:`accelstore.processing` on the reader's arrays;
    "actipy" lets actipy run its own (the reference path).
    """

    lowpass_hz: float | None = 20.0
    calibrate: bool = True
    detect_nonwear: bool = True
    engine: str = "numba"

    @property
    def actipy_steps(self) -> ProcessingOptions:
        """The steps actipy itself is to run: all of them with the actipy engine, none otherwise."""
        return self if self.engine == "actipy" else ProcessingOptions(None, False, False, self.engine)


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

    ``buffers``: where the Numba ``.cwa`` reader puts the samples (see :class:`~accelstore.cwa.SampleBuffers`);
    the recording's arrays are then views of them, valid until the buffers are next used.
    """
    path = Path(path)
    if not path.is_file():
        raise ReaderError(path, "no such file")
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
    return _read_device(path, options)


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
        except (ValueError, UnicodeDecodeError, EOFError, OSError, KeyError, IndexError) as error:
            raise CorruptFileError(path, f"{type(error).__name__}: {error}") from None
    for line in output.text().splitlines():
        if line.strip():
            log.debug("%s: actipy: %s", path.name, line.strip())
    if len(data) == 0:
        raise EmptyFileError(path, "no samples could be read")
    recording = Recording(
        path=path,
        time=data.index.to_numpy(dtype="datetime64[ns]"),
        axes=_axes_of(data),
        sample_rate=float(info.get("SampleRate", np.nan)),
        device=str(info.get("Device", "")),
        device_id=str(info.get("DeviceID", "")),
        info=info,
    )
    temperature = data["temperature"].to_numpy() if "temperature" in data else None
    del data  # the frame's other columns (light, gyroscope) are not needed while processing
    return _process(recording, options, temperature)


def _read_cwa(path: Path, options: ProcessingOptions, buffers: SampleBuffers | None) -> Recording:
    """:func:`accelstore.cwa.read_cwa`: what actipy reads, without its JVM and DataFrame."""
    from accelstore.cwa import read_cwa

    try:
        # non-wear detection recomputes the wear-time keys on the processed samples
        data = read_cwa(path, buffers, wear_time=not options.detect_nonwear)
    except ValueError as error:  # the Java parser's message, as on actipy's path
        raise CorruptFileError(path, str(error)) from None
    except OSError as error:
        raise CorruptFileError(path, f"{type(error).__name__}: {error}") from None
    if len(data.time_ns) == 0:
        raise EmptyFileError(path, "no samples could be read")
    # Read-only, as actipy's are: the processing kernels are compiled (warm_up) for read-only ones.
    data.time_ns.flags.writeable = False
    recording = Recording(
        path=path,
        time=data.time_ns.view("datetime64[ns]"),
        axes=(data.x, data.y, data.z),
        sample_rate=float(data.info["SampleRate"]),
        device=data.info["Device"],
        device_id=str(data.info["DeviceID"]),
        info=data.info,
    )
    return _process(recording, options, data.temperature)


def _read_csv(path: Path, options: ProcessingOptions) -> Recording:
    import actipy

    try:
        frame = pd.read_csv(path, low_memory=False)
    except (ValueError, UnicodeDecodeError, EOFError, OSError, pd.errors.ParserError) as error:
        raise CorruptFileError(path, f"{type(error).__name__}: {error}") from None
    missing = [c for c in ("time", "x", "y", "z") if c not in frame.columns]
    if missing:
        raise UnsupportedFormatError(path, f"CSV lacks column(s) {', '.join(missing)}; expected time,x,y,z")
    if len(frame) < 2:
        raise EmptyFileError(path, "fewer than two samples")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(frame["time"]), name="time").as_unit("ns")
    except (ValueError, TypeError) as error:
        raise CorruptFileError(path, f"unparseable time column: {error}") from None
    order = np.argsort(index.asi8, kind="stable")
    data = pd.DataFrame(frame[["x", "y", "z"]].to_numpy(dtype=np.float32)[order], index=index[order], columns=["x", "y", "z"])
    sample_rate = _infer_sample_rate(index.asi8[order])
    steps = options.actipy_steps
    with _captured_output():
        data, info = actipy.process(
            data,
            sample_rate,
            lowpass_hz=steps.lowpass_hz or None,
            calibrate_gravity=steps.calibrate,
            detect_nonwear=steps.detect_nonwear,
            resample_hz=None,
            verbose=False,
        )
    info.update({"SampleRate": sample_rate, "Device": "CSV", "DeviceID": ""})
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
    if not head.startswith(b"Device Identity") or b"GENEActiv" not in head:
        first_line = head.split(b"\n", 1)[0][:40].decode("ascii", "replace").strip()
        raise UnsupportedFormatError(path, f"not a GENEActiv .bin file (header starts '{first_line}')")
    declared = re.search(rb"Number of Pages:\s*(\d+)", head)
    if declared is None:
        raise CorruptFileError(path, "GENEActiv header has no 'Number of Pages'")
    pages = _count_occurrences(path, _GENEACTIV_PAGE)
    if pages < int(declared.group(1)):
        raise TruncatedFileError(path, f"header declares {int(declared.group(1))} pages, the file holds {pages}")


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
