"""One ingest task: read, process and write one raw file's participant (docs/architecture.md, "Ingest").

A worker runs :func:`ingest_file` for each :class:`FileTask` the driver (:mod:`accelstore.pipelines.ingest`)
submits: it writes the participant's shards and returns a small :class:`FileResult`, which the
driver turns into the participant's table row.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accelstore import processing
from accelstore import store as layout
from accelstore.grid import WINDOW_SECONDS, WINDOWS_PER_DAY
from accelstore.kernels import resample
from accelstore.kernels import window_labels as label_kernels
from accelstore.kernels.resample import resample_windows, window_stats
from accelstore.kernels.window_labels import window_labels
from accelstore.readers import ProcessingOptions, ReaderError, Recording, cwa
from accelstore.readers.annotations import annotation_codes
from accelstore.readers.sources import Source, SourceChangedError, source_file
from accelstore.store import ParticipantWriter, day_span, recorded_days, summarise_days

UK_BIOBANK_NAME = re.compile(r"^(\d{7})_\d+_\d+_\d+$")


def participant_id(path: str | os.PathLike, id_pattern: str | None = None) -> str:
    """The file name without its extensions, the eid for UK Biobank names, or ``id_pattern``'s group 1."""
    name = Path(path).name
    if id_pattern is not None:
        match = re.search(id_pattern, name)
        if match is None or not match.groups():
            raise ValueError(f"--id-pattern {id_pattern!r} does not match (or has no group) in '{name}'")
        pid = match.group(1) or ""
    else:
        stem = name.split(".", 1)[0]
        uk_biobank = UK_BIOBANK_NAME.match(stem)
        pid = uk_biobank.group(1) if uk_biobank else stem
    if not pid.strip():
        raise ValueError(f"'{name}' gives an empty participant id" + (f" (--id-pattern {id_pattern!r})" if id_pattern else ""))
    return pid


@dataclass(frozen=True)
class LabelSpec:
    """How a labelled ingest turns annotations into codes: the store's classes and the label map."""

    classes: tuple[str, ...]
    label_map: tuple[tuple[str, str], ...] | None = None

    def codes(self, annotation: np.ndarray) -> np.ndarray:
        return annotation_codes(annotation, self.classes, dict(self.label_map) if self.label_map is not None else None)


@dataclass(frozen=True)
class FileTask:
    path: Source  # a local path, or a URL (str)
    participant: str
    row: int
    store: str
    options: ProcessingOptions
    expected: tuple[int, str] | None = None  # (size, hash) of the complete row: skip when equal, else check it reads
    clear_stale: bool = False  # the row may hold shards of an earlier attempt
    labels: LabelSpec | None = None  # labelled ingest: window labels from the file's annotations


@dataclass
class FileResult:
    task: FileTask
    outcome: str  # "written", "unchanged", "changed" (and reads), "too_long", "failed"
    size: int = 0
    digest: str = ""
    windows_needed: int = 0
    row_fields: dict = field(default_factory=dict)
    day_valid_windows: np.ndarray | None = None
    day_std_sum: np.ndarray | None = None
    error: str = ""
    message: str = ""


def ingest_file(task: FileTask) -> FileResult:
    """Read, process and write one file's participant. Bad input is a 'failed' result, not an exception."""
    read = _read(task)
    if isinstance(read, FileResult):
        return read
    recording, size, digest = read
    if task.labels is not None and recording.annotation is None:
        message = f"{task.path}: no annotations: labelled ingest needs a CSV with an 'annotation' column"
        return FileResult(task, "failed", size=size, digest=digest, error="unlabelled", message=message)
    if task.expected is not None:  # a complete row's file changed and reads: the driver redoes the row
        return FileResult(task, "changed", size=size, digest=digest)

    day0 = recording.time[0].astype("datetime64[D]")
    day0_ns = np.int64(day0.astype("datetime64[ns]").astype(np.int64))
    time_ns = recording.time.view(np.int64)
    first_window = int((time_ns[0] - day0_ns) // (WINDOW_SECONDS * 10**9))
    n_windows = int((time_ns[-1] - day0_ns) // (WINDOW_SECONDS * 10**9)) + 1
    writer = ParticipantWriter(task.store, task.row)
    if n_windows > writer.n_windows:
        return FileResult(task, "too_long", size=size, digest=digest, windows_needed=n_windows)

    arrays = layout.WINDOW_ARRAYS + ((layout.LABEL_ARRAY,) if task.labels is not None else ())
    rows = {spec.name: np.full(writer.n_windows, spec.fill, dtype=spec.dtype) for spec in arrays}
    if task.labels is not None:
        codes = task.labels.codes(recording.annotation)
        samples_per_window = round(recording.sample_rate * WINDOW_SECONDS)
    days_with_data = recorded_days(first_window, n_windows)
    for day in range(writer.n_windows // WINDOWS_PER_DAY):
        if day not in days_with_data:
            if task.clear_stale:
                writer.clear_day(day)
            continue
        acc, valid = resample_windows(time_ns, day0_ns, *recording.axes, day * WINDOWS_PER_DAY, WINDOWS_PER_DAY)
        writer.write_day(day, acc)
        span = day_span(day)
        rows["valid"][span] = valid
        rows["std"][span], rows["enmo"][span] = window_stats(acc, valid)
        if task.labels is not None:
            rows["label"][span] = window_labels(
                time_ns, day0_ns, codes, len(task.labels.classes), day * WINDOWS_PER_DAY, WINDOWS_PER_DAY, samples_per_window
            )
    writer.write_windows(**rows)
    day_valid, day_std = summarise_days(rows["valid"], rows["std"])

    info = recording.info
    row_fields = {
        "day0": int(day0.astype("datetime64[s]").astype(np.int64)),
        "first_window": first_window,
        "n_windows": n_windows,
        "device": recording.device,
        "device_id": recording.device_id,
        "source": str(task.path),
        "source_size": size,
        "source_hash": digest,
        "utc_offset": str(info.get("UtcOffset", "")),
        "device_rate": recording.sample_rate,
        "calibrated": int(bool(info.get("CalibOK", 0))),
        "calib_error_mg": float(info.get("CalibErrorAfter(mg)", np.nan)),
        "read_errors": int(info.get("ReadErrors", 0)),
        "non_finite_samples": int(info.get("NonFiniteSamples", 0)),
        "out_of_range_samples": int(info.get("OutOfRangeSamples", 0)),
        "wear_days": float(info.get("WearTime(days)", np.nan)),
        "valid_windows": int(day_valid.sum()),
        "stored_bytes": writer.stored_bytes(),
    }
    return FileResult(task, "written", size, digest, n_windows, row_fields, day_valid, day_std)


def _read(task: FileTask) -> FileResult | tuple[Recording, int, str]:
    """The task's file read and processed, with its size and digest; or the result that ends the
    task there: unchanged, unreadable, changed while it was read, or the reader's failure.

    A URL is read from a local copy (:func:`~accelstore.readers.sources.source_file`), deleted
    once read; reader errors name the URL, not the copy.
    """
    try:
        with source_file(task.path) as source:
            size, digest = source.size, source.digest
            if task.expected == (size, digest):
                return FileResult(task, "unchanged", size=size, digest=digest)
            try:
                recording = processing.read_recording(source.path, task.options, _thread_buffers())
                changed = source.changed()
            except ReaderError as error:
                error = source.named(error)
                return FileResult(task, "failed", size=size, digest=digest, error=error.kind, message=str(error))
            except OSError as error:
                return _unreadable(task, error, size, digest)
    except SourceChangedError:
        return _changed(task)
    except OSError as error:
        return _unreadable(task, error)
    return _changed(task, size, digest) if changed else (recording, size, digest)


def _changed(task: FileTask, size: int = 0, digest: str = "") -> FileResult:
    message = f"{task.path}: changed while it was being read; run ingest again"
    return FileResult(task, "failed", size=size, digest=digest, error="changed while reading", message=message)


def _unreadable(task: FileTask, error: OSError, size: int = 0, digest: str = "") -> FileResult:
    message = f"{task.path}: unreadable: {error.strerror or error}"
    return FileResult(task, "failed", size=size, digest=digest, error="unreadable", message=message)


_buffers_of_thread = threading.local()


def _thread_buffers() -> cwa.SampleBuffers:
    """This thread's reader buffers: kept from task to task, one set per worker thread."""
    if not hasattr(_buffers_of_thread, "cwa"):
        _buffers_of_thread.cwa = cwa.SampleBuffers()
    return _buffers_of_thread.cwa


def warm_up() -> None:
    """Prepare a process for ingest tasks: compile every kernel they run, and no huge pages.

    The kernels: the .cwa reader, resampling and the Numba processing steps. Huge pages: numpy
    asks the kernel for them (``madvise``) on every large array, and where the kernel then
    compacts memory to find them (transparent huge pages with ``defrag=madvise``, a common
    default) a worker's first week of samples took 3–6 s to fault in instead of ~1 s here. The
    setting is numpy's, for the whole process.
    """
    set_huge_pages = getattr(np._core.multiarray, "_set_madvise_hugepage", None)
    if set_huge_pages is not None:
        set_huge_pages(False)
    cwa.warm_up()
    resample.warm_up()
    label_kernels.warm_up()
    processing.warm_up()
