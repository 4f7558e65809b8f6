"""Where a raw file comes from: a local path, or an fsspec URL (``s3://bucket/key``, ``gs://…``).

Discovery lists a URL "folder" (a prefix) as it walks a local folder (:func:`discover_url`), and
an ingest task reads its file through :func:`source_file`. The readers need a local file (actipy's
are Java programs that open a path), so a URL's object is copied into a temporary folder, hashed
from the same bytes as they arrive (one download), read from there and deleted afterwards. The
object's version (size, ETag, modification time: whatever its store reports) is taken before and
after the copy; if it differs, the copy may mix two versions and :class:`SourceChangedError` says
so, as a local file's size and modification time changing while it is read does.

A URL source keeps its URL (normalised: ``s3a://`` reads as ``s3://``) as its name everywhere: in
the store's ``source`` column, in reports and in the messages of reader errors. A local source
stays a :class:`~pathlib.Path`. Credentials and endpoints come from the storage's own
configuration (for S3, the usual ``AWS_*`` variables or files), never from the URL or the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelstore.readers.errors import ReaderError, UnreadableInputError
from accelstore.readers.files import file_digest, stream_digest
from accelstore.readers.formats import is_supported

__all__ = ["Source", "SourceChangedError", "SourceFile", "as_source", "discover_url", "is_url", "source_file"]

log = logging.getLogger(__name__)

Source = Path | str
"""A raw file: a local path, or a URL string."""

_VERSION_KEYS = ("size", "ETag", "etag", "LastModified", "mtime", "created", "VersionId", "generation")
"""Fields of an fsspec ``info`` that change when an object is replaced (each store has some)."""

_COPY_BLOCK = 16 << 20
"""Bytes per request when copying an object: few requests, and no read-ahead buffer on top."""


class SourceChangedError(ReaderError):
    """The object changed while it was copied: what was read may mix two versions."""

    kind = "changed while reading"


def is_url(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a URL (``scheme://…``) rather than a local path."""
    return isinstance(source, str) and "://" in source


def as_source(text: str) -> Source:
    """A source as recorded in the store (its ``source`` column) back as what discovery returns."""
    return text if is_url(text) else Path(text)


def discover_url(url: str) -> tuple[list[str], list[ReaderError]]:
    """The objects to ingest under ``url`` (a prefix: every object of a supported format under it,
    sorted, names starting with '.' skipped) or ``url`` itself (an object, taken whatever its name,
    so that the reader says why one is unsupported); or why it cannot be read."""
    try:
        fs, path = _filesystem(url)
        info = _fresh_info(fs, path)
        if info["type"] != "directory":
            return [fs.unstrip_protocol(path)], []
        found = fs.find(path, detail=True)
    except Exception as error:  # storage clients raise more than OSError: no credentials, an endpoint that does not answer
        return [], [UnreadableInputError(url, _why(error))]
    names = sorted(name for name, entry in found.items() if entry.get("type") == "file" and not name.rsplit("/", 1)[-1].startswith("."))
    ignored = [name for name in names if not is_supported(name)]
    if ignored:
        log.info("ignoring %d object(s) of no supported format under %s, e.g. %s", len(ignored), url, ignored[0].rsplit("/", 1)[-1])
    return [fs.unstrip_protocol(name) for name in names if is_supported(name)], []


@dataclass(frozen=True)
class SourceFile:
    """A source as a local file the readers can open, with the size and digest of its bytes."""

    source: Source
    path: Path
    """The local file: ``source`` itself, or its temporary copy."""
    size: int
    digest: str
    _changed: Callable[[], bool]

    def changed(self) -> bool:
        """Whether the file may have changed since it was hashed (a local file's size or
        modification time differ; a copy is private, and was checked as it was made)."""
        return self._changed()

    def named(self, error: ReaderError) -> ReaderError:
        """``error`` (raised reading :attr:`path`) as naming the source rather than its copy."""
        if not is_url(self.source):
            return error
        return type(error)(self.source, error.cause.replace(str(self.path), str(self.source)))


@contextlib.contextmanager
def source_file(source: Source) -> Iterator[SourceFile]:
    """``source`` as a local file, for as long as the ``with`` block lasts.

    A local path is used in place, its size from ``stat`` and its digest read once. A URL's object
    is copied into a temporary folder, under its own name (the readers tell a format by it), and
    hashed as it arrives; the copy is deleted when the block ends. OSError when the source cannot
    be read; :class:`SourceChangedError` when the object changed during the copy.
    """
    if not is_url(source):
        path = Path(source)
        before = path.stat()
        digest = file_digest(path)
        yield SourceFile(path, path, before.st_size, digest, lambda: _moved(path, before))
        return
    fs, remote = _filesystem(str(source))
    version = _version(_fresh_info(fs, remote))
    with tempfile.TemporaryDirectory(prefix="accelstore-source-") as folder:
        copy = Path(folder, remote.rstrip("/").rsplit("/", 1)[-1])
        changed = SourceChangedError(source, "the object changed while it was copied; run ingest again")
        try:
            with fs.open(remote, "rb", block_size=_COPY_BLOCK, cache_type="none") as stream, open(copy, "wb") as target:
                size, digest = stream_digest(stream, target, _COPY_BLOCK)
        except OSError:  # a read refused because the object changed (S3: its ETag no longer matches), or a real failure
            if _version(_fresh_info(fs, remote)) != version:
                raise changed from None
            raise
        if size != version.get("size", size) or _version(_fresh_info(fs, remote)) != version:
            raise changed
        yield SourceFile(source, copy, size, digest, lambda: False)


def _moved(path: Path, before: os.stat_result) -> bool:
    after = path.stat()
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url)


def _fresh_info(fs: Any, path: str) -> dict[str, Any]:
    """``fs.info(path)`` from the storage itself, not a listing cached earlier in this process."""
    fs.invalidate_cache(path)
    return fs.info(path)


def _version(info: dict[str, Any]) -> dict[str, Any]:
    return {key: info[key] for key in _VERSION_KEYS if key in info}


def _why(error: Exception) -> str:
    """A storage error in words, for a one-line message."""
    if isinstance(error, FileNotFoundError):
        return "no such object or prefix"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return " ".join(f"{type(error).__name__}: {error}".split())
