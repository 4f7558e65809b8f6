"""The readers layer: raw device files and CSV tables → numpy arrays in g on the device clock, plus metadata.

Readers only read (docs/architecture.md, "Ingest"): :func:`read_file` returns a file's samples
as read in a :class:`Recording`, or raises a :class:`ReaderError` whose one-line message names
the file and the cause. Processing them (low-pass, calibration, non-wear) is the layer above's;
nothing here imports it or the kernels. The modules, one concern each:

- :mod:`~accelstore.readers.errors`: the error types, and what a parser's exception says about a file;
- :mod:`~accelstore.readers.options`: :class:`ProcessingOptions`;
- :mod:`~accelstore.readers.recording`: :class:`Recording`;
- :mod:`~accelstore.readers.formats`, :mod:`~accelstore.readers.files`: a path's format, kind and digest;
- :mod:`~accelstore.readers.dispatch`: :func:`read_file`, which sends a file to its reader;
- :mod:`~accelstore.readers.devices`, :mod:`~accelstore.readers.device_checks`,
  :mod:`~accelstore.readers.output_capture`: device files through actipy, or the Numba
  :mod:`~accelstore.readers.cwa` reader;
- :mod:`~accelstore.readers.csv_table`, :mod:`~accelstore.readers.csv_times`: CSV tables and their times;
- :mod:`~accelstore.readers.span`, :mod:`~accelstore.readers.clock`: the span check, and times in messages;
- :mod:`~accelstore.readers.discovery`, :mod:`~accelstore.readers.annotations`: which inputs to read, and labels;
- :mod:`~accelstore.readers.sources`: a source that is a URL (``s3://…``): listing, and a local copy to read.
"""

from accelstore.readers.dispatch import read_file
from accelstore.readers.errors import (
    AmbiguousTimeError,
    BadTimeError,
    BadValueError,
    CorruptFileError,
    EmptyFileError,
    ReaderError,
    SpanTooLongError,
    TruncatedFileError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from accelstore.readers.files import file_digest, non_regular_kind
from accelstore.readers.formats import DEVICE_SUFFIXES, SUPPORTED_SUFFIXES, TABLE_SUFFIXES, file_format, is_supported
from accelstore.readers.options import CSV_TIME_UNITS, ProcessingOptions
from accelstore.readers.recording import Recording

__all__ = [
    "CSV_TIME_UNITS",
    "DEVICE_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TABLE_SUFFIXES",
    "AmbiguousTimeError",
    "BadTimeError",
    "BadValueError",
    "CorruptFileError",
    "EmptyFileError",
    "ProcessingOptions",
    "ReaderError",
    "Recording",
    "SpanTooLongError",
    "TruncatedFileError",
    "UnreadableInputError",
    "UnsupportedFormatError",
    "file_digest",
    "file_format",
    "is_supported",
    "non_regular_kind",
    "read_file",
]
