"""Device files → :class:`~accelstore.readers.Recording`: through actipy, or ``.cwa`` through the Numba reader.

With the "actipy" engine, actipy's read call runs its processing steps itself; otherwise the
samples are returned as read. Either way the span is checked (:func:`~accelstore.readers.span.check_span`).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from accelstore.readers.errors import (
    CorruptFileError,
    EmptyFileError,
    TruncatedFileError,
    is_environment_error,
    parser_failure,
    says_truncated,
)
from accelstore.readers.options import ProcessingOptions
from accelstore.readers.output_capture import captured_output
from accelstore.readers.recording import Recording, axes_of
from accelstore.readers.span import check_span
from accelstore.run_lengths import RunLengths

if TYPE_CHECKING:
    from accelstore.readers.cwa import SampleBuffers

log = logging.getLogger(__name__)


def read_actipy_device(path: Path, options: ProcessingOptions) -> Recording:
    """A ``.cwa``, ``.gt3x`` or ``.bin`` file read by ``actipy.read_device``, running ``options.actipy_steps``."""
    import actipy

    steps = options.actipy_steps
    with captured_output() as output:
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
        except Exception as error:  # actipy's Python side (zipfile, struct, asserts…): see readers.errors
            if is_environment_error(error):
                raise
            raise parser_failure(path, error) from None
    for line in output.text().splitlines():
        if line.strip():
            log.debug("%s: actipy: %s", path.name, line.strip())
    if len(data) == 0:
        raise EmptyFileError(path, "no samples could be read")
    time = data.index.to_numpy(dtype="datetime64[ns]")
    check_span(path, time.view(np.int64), options.max_span_days)
    return Recording(
        path=path,
        time=time,
        axes=axes_of(data),
        sample_rate=float(info.get("SampleRate", np.nan)),
        device=str(info.get("Device", "")),
        device_id=str(info.get("DeviceID", "")),
        info=info,
        temperature=RunLengths.of(data["temperature"].to_numpy()) if "temperature" in data else None,
        processed_on_read=options.engine == "actipy",
    )


def read_numba_cwa(path: Path, options: ProcessingOptions, buffers: SampleBuffers | None) -> Recording:
    """:func:`accelstore.readers.cwa.read_cwa`: what actipy reads, without its JVM and DataFrame.

    The wear-time keys are left to processing (``wear_time_deferred``).
    """
    from accelstore.readers.cwa import read_cwa

    try:
        data = read_cwa(path, buffers)
    except ValueError as error:  # the Java parser's message, as on actipy's path (or gzip's, cut short)
        raise (TruncatedFileError if says_truncated(str(error)) else CorruptFileError)(path, str(error)) from None
    except Exception as error:  # see readers.errors
        if is_environment_error(error):
            raise
        raise parser_failure(path, error) from None
    if len(data.time_ns) == 0:
        raise EmptyFileError(path, "no samples could be read")
    # Read-only, as actipy's are: the processing kernels are compiled (warm_up) for read-only ones.
    data.time_ns.flags.writeable = False
    check_span(path, data.time_ns, options.max_span_days)
    return Recording(
        path=path,
        time=data.time_ns.view("datetime64[ns]"),
        axes=(data.x, data.y, data.z),
        sample_rate=float(data.info["SampleRate"]),
        device=data.info["Device"],
        device_id=str(data.info["DeviceID"]),
        info=data.info,
        temperature=data.temperature,
        wear_time_deferred=True,
    )


def _java_error(text: str) -> str:
    """The cause from actipy's Java parser output ('Error reading FILE: CAUSE')."""
    for line in text.splitlines():
        if line.startswith("Error reading") and ": " in line:
            return line.split(": ", 1)[1]
    lines = [line for line in text.splitlines() if "Exception" in line]
    return lines[0] if lines else ""
