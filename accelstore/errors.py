"""The errors accelstore raises to its callers, each with the exit status the command line gives it.

A bad raw file is not among them: it is a :class:`accelstore.readers.ReaderError`, recorded as that
file's failure while the rest of the run goes on.
"""

from __future__ import annotations

__all__ = ["AccelstoreError", "InputError", "LeaseHeldError", "StoreDamageError", "StoreError"]


class AccelstoreError(Exception):
    """Base class; ``str()`` is one line saying what is wrong and where."""

    exit_status = 2


class InputError(AccelstoreError, ValueError):
    """An argument or input that cannot be used (a time outside the store, a bad pattern, …).

    Also a ValueError, as Python code passing a bad value expects."""


class StoreError(AccelstoreError):
    """The path is not a usable accelstore store (missing, another format, half-created)."""


class LeaseHeldError(StoreError):
    """Another writer holds the store's writer lease; the message names it."""


class StoreDamageError(StoreError):
    """Data in the store failed a check (checksum, a lost chunk, disagreeing summaries).

    Never returned as numbers: reading damaged data raises this, naming the array and, where one
    is known, the participant and day.
    """

    exit_status = 1
