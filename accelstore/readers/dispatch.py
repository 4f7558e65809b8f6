"""Which reader a file goes to, after the checks every file gets: :func:`read_file`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from accelstore.readers.csv_table import read_csv_table
from accelstore.readers.device_checks import check_geneactiv, check_gt3x
from accelstore.readers.devices import read_actipy_device, read_numba_cwa
from accelstore.readers.errors import EmptyFileError, UnsupportedFormatError
from accelstore.readers.files import check_regular_file
from accelstore.readers.formats import SUPPORTED_SUFFIXES, file_format
from accelstore.readers.options import ProcessingOptions
from accelstore.readers.recording import Recording

if TYPE_CHECKING:
    from accelstore.readers.cwa import SampleBuffers


def read_file(
    path: str | os.PathLike, options: ProcessingOptions = ProcessingOptions(), buffers: SampleBuffers | None = None
) -> Recording:
    """Read one file's samples as recorded (no resampling), or raise a :class:`~accelstore.readers.ReaderError`.

    The samples are not processed, except with ``options.engine`` "actipy" for device files,
    which actipy processes inside its read call. ``options`` also says how to read CSV times and
    the longest span allowed. ``buffers``: where the Numba ``.cwa`` reader puts the samples (see
    :class:`~accelstore.readers.cwa.SampleBuffers`); the recording's arrays are then views of
    them, valid until the buffers are next used.
    """
    path = Path(path)
    check_regular_file(path)
    if path.stat().st_size == 0:
        raise EmptyFileError(path, "the file has zero bytes")
    fmt = file_format(path)
    if fmt not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(path, f"'{fmt or path.name}' is not one of {', '.join(SUPPORTED_SUFFIXES)}")
    if fmt == ".csv":
        return read_csv_table(path, options)
    if fmt == ".cwa" and options.engine == "numba":
        return read_numba_cwa(path, options, buffers)
    if fmt == ".bin":
        check_geneactiv(path)
    if fmt == ".gt3x":
        check_gt3x(path)
    return read_actipy_device(path, options)
