"""Which inputs an ingest reads, and which of them cannot be read at all.

Folders are searched recursively for files of a supported format (dotfiles skipped, other
formats logged and ignored); files named directly are taken whatever their name, so that the
reader can say why one is unsupported. What cannot be read at all — a folder that cannot be
listed, a broken symbolic link, a FIFO, a socket, a device, a file without read permission — is
returned as a typed :class:`~accelstore.readers.UnreadableInputError` instead of being skipped
in silence or, for a FIFO, blocking the run: entries are only ever ``stat``-ed here, never opened.
In a folder, only entries whose name has a supported format are candidates, so a socket or a
broken link called ``notes.txt`` is ignored like any other unsupported file; an unreadable
sub-folder is always reported, as it may hold recordings.

An input that is a URL (``s3://bucket/prefix``) is listed through fsspec by
:func:`accelstore.readers.sources.discover_url` under the same rules: a prefix gives its objects
of a supported format, an object named directly is taken, and one that cannot be listed or found
is an :class:`~accelstore.readers.UnreadableInputError` naming the URL.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from accelstore.readers import (
    ReaderError,
    UnreadableInputError,
    is_supported,
    non_regular_kind,
)
from accelstore.readers.sources import Source, discover_url, is_url

__all__ = ["discover"]

log = logging.getLogger(__name__)


def discover(inputs: Sequence[str | os.PathLike]) -> tuple[list[Source], list[ReaderError]]:
    """The files to ingest from ``inputs`` (folders or files, local or URLs), and the inputs that
    cannot be read.

    Files: resolved absolute paths, and URL strings for URL inputs, each folder's sorted, in the
    order of ``inputs``. Errors: one :class:`~accelstore.readers.UnreadableInputError` per
    unreadable input, its ``path`` absolute but not resolved (a broken link has nothing to
    resolve to), or the URL.
    """
    files: list[Source] = []
    errors: list[ReaderError] = []
    for item in inputs:
        if is_url(item):
            found, failed = discover_url(item)
        else:
            local, failed = _discover_one(Path(item))
            found = [path.resolve() for path in local]
        files += found
        errors += failed
    return files, errors


def _discover_one(item: Path) -> tuple[list[Path], list[ReaderError]]:
    try:
        mode = os.stat(item).st_mode
    except OSError as error:
        return [], [_unreadable(item, error)]
    if stat.S_ISDIR(mode):
        return _search_folder(item)
    failure = _failure_of_file(item, mode)
    return ([], [failure]) if failure else ([item], [])


def _search_folder(folder: Path) -> tuple[list[Path], list[ReaderError]]:
    """Supported regular files under ``folder``, and what under it cannot be read.

    ``os.walk`` does not follow symbolic links to folders (as ``Path.rglob`` did not before);
    a sub-folder it cannot list is reported through ``onerror`` instead of being passed over.
    """
    errors: list[ReaderError] = []
    candidates: list[Path] = []
    for parent, _, names in os.walk(folder, onerror=lambda error: errors.append(_unreadable(Path(error.filename), error))):
        candidates += [Path(parent, name) for name in names if not name.startswith(".")]
    files, ignored = [], []
    for path in sorted(candidates):
        if not is_supported(path):
            ignored.append(path)
            continue
        failure = _failure_of_entry(path)
        if failure is None:
            files.append(path)
        else:
            errors.append(failure)
    if ignored:
        log.info("ignoring %d file(s) of no supported format in %s, e.g. %s", len(ignored), folder, ignored[0].name)
    return files, sorted(errors, key=lambda error: error.path)


def _failure_of_entry(path: Path) -> ReaderError | None:
    """Why a folder entry cannot be read, or None: ``stat`` follows its link but opens nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return _unreadable(path, error)
    return _failure_of_file(path, mode)


def _failure_of_file(path: Path, mode: int) -> ReaderError | None:
    """Why a path that is not a folder cannot be read, or None when it is a readable regular file."""
    if not stat.S_ISREG(mode):
        return UnreadableInputError(_absolute(path), f"not a regular file: {non_regular_kind(mode)}")
    if not os.access(path, os.R_OK):
        return UnreadableInputError(_absolute(path), "permission denied: the file cannot be read")
    return None


def _unreadable(path: Path, error: OSError) -> UnreadableInputError:
    """The error for a path ``stat`` or ``scandir`` failed on, naming a broken link as such."""
    if isinstance(error, FileNotFoundError) and os.path.islink(path):
        return UnreadableInputError(_absolute(path), f"broken symbolic link to '{os.readlink(path)}'")
    what = "folder cannot be listed: " if isinstance(error, PermissionError) and os.path.isdir(path) else ""
    return UnreadableInputError(_absolute(path), f"{what}{error.strerror or error}")


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))
