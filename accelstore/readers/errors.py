"""The typed errors a file that cannot be ingested raises, and what a parser's exception says about the file.

Every failure to read becomes a :class:`ReaderError` whose one-line message names the file and
the cause; nothing in the readers raises a bare traceback for a bad file. The parsers fed a
file's bytes (actipy's, the Numba ``.cwa`` reader, pandas' CSV reader) raise a zoo of exception
types on corrupt input; whatever they raise is about the file and becomes a
:class:`CorruptFileError` or :class:`TruncatedFileError` (:func:`parser_failure`), unless it is
about this machine (:func:`is_environment_error`). The code after the parsers is not wrapped so:
a bug in it still surfaces as itself.
"""

from __future__ import annotations

import os


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


def parser_failure(path: str | os.PathLike, error: Exception) -> ReaderError:
    """What a parser's exception on a file's bytes says about the file: cut short, or corrupt."""
    cause = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, EOFError) or says_truncated(str(error)):
        return TruncatedFileError(path, cause)
    return CorruptFileError(path, cause)


def says_truncated(message: str) -> bool:
    """Whether a parser's message says the input ended early (gzip's, actipy's stream reader's…)."""
    return any(words in message.lower() for words in ("truncat", "ended unexpectedly", "ended before"))


def is_environment_error(error: Exception) -> bool:
    """An error about this machine rather than the file (no ``java``, out of memory): not the file's failure."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, FileNotFoundError) and error.filename in ("java", b"java")
