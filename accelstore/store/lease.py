"""The writer lease: at most one process changes a store at a time.

Zarr has no locks, and two writers of one store lose data silently (they take the same table rows).
So every command that writes first creates the lease, a tiny Zarr group ``writer_lease`` in the
store's root whose attributes name the holder (a Zarr group, so that Zarr readers listing the store
see a valid member, not an unknown object), with *exclusive creation* of its ``zarr.json`` — ``O_EXCL`` on a local or shared file system, a conditional PUT
(``If-None-Match: *``) on object stores whose fsspec backend supports mode ``"xb"``. Of two writers
started at once exactly one creates it; the other is refused with :class:`LeaseHeldError` naming
the holder. Readers never look at the lease.

A lease whose holder is provably gone — recorded on this host, and its pid no longer runs (or runs
a process started later) — is taken over with a warning. A holder on another host cannot be proved
gone from here; ``break_lease=True`` (``--break-lease``) is the way out, and the writer it replaces
notices at its next metadata write (:meth:`WriterLease.check`) and stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec

from accelstore.errors import LeaseHeldError

__all__ = ["LEASE_NAME", "Holder", "WriterLease", "command_line"]

log = logging.getLogger(__name__)

LEASE_NAME = "writer_lease"
"""The lease's group in the store's root."""
_CLAIM_NAME = "writer_lease_takeover"
"""The group whose exclusive creation decides which of several processes takes over a dead lease."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: enough to name it in a refusal and to tell whether it is still alive."""

    host: str
    pid: int
    started: float  # the holder process's start time (psutil), to see through pid reuse
    command: str
    since: str
    token: str

    @classmethod
    def me(cls, command: str) -> Holder:
        import psutil

        pid = os.getpid()
        since = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(socket.gethostname(), pid, psutil.Process(pid).create_time(), command, since, uuid.uuid4().hex)

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} ({self.command!r}) since {self.since}"

    def is_provably_gone(self) -> bool:
        """True only on the holder's own host, when its process no longer runs."""
        import psutil

        if self.host != socket.gethostname():
            return False
        try:
            return psutil.Process(self.pid).create_time() != self.started
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:  # exists but cannot be inspected: assume alive
            return False


class WriterLease:
    """The lease on one store, held from :meth:`acquire` to :meth:`release` (or the ``with`` block's end)."""

    def __init__(self, store: str, holder: Holder, storage_options: dict | None = None):
        self.store = store
        self.holder = holder
        self._fs, root = fsspec.core.url_to_fs(store, **(storage_options or {}))
        self._root = root.rstrip("/")
        self._path = f"{self._root}/{LEASE_NAME}/zarr.json"

    @classmethod
    def acquire(
        cls, store: str, command: str, *, break_lease: bool = False, storage_options: dict | None = None
    ) -> WriterLease:
        """Take the lease of ``store`` (its folder is made if missing) or raise :class:`LeaseHeldError`."""
        lease = cls(store, Holder.me(command), storage_options)
        if lease._create(lease._path):
            return lease
        current = lease._read(lease._path)
        if current is None:  # released between our attempt and the read: try once more
            if lease._create(lease._path):
                return lease
            current = lease._read(lease._path)
        if break_lease:
            log.warning("%s: breaking the writer lease of %s", store, current.describe() if current else "an unknown holder")
            _remove(lease._fs, lease._path)
            if lease._create(lease._path):
                return lease
        elif current is not None and current.is_provably_gone() and lease._take_over(current):
                log.warning("%s: took over the writer lease of %s, which no longer runs", store, current.describe())
                return lease
        holder = lease._read(lease._path)
        who = holder.describe() if holder else "another process"
        raise LeaseHeldError(
            f"{store}: another writer holds the store: {who}; "
            "wait for it to finish, or pass --break-lease if it is certainly gone"
        )

    def check(self) -> None:
        """Raise :class:`LeaseHeldError` if the lease is no longer ours (it was broken)."""
        current = self._read(self._path)
        if current is None or current.token != self.holder.token:
            who = current.describe() if current else "nobody (it was deleted)"
            raise LeaseHeldError(f"{self.store}: this writer's lease was broken and is now held by {who}; stopping")

    def release(self) -> None:
        """Remove the lease if it is still ours."""
        current = self._read(self._path)
        if current is not None and current.token == self.holder.token:
            _remove(self._fs, self._path)

    def __enter__(self) -> WriterLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ------------------------------------------------------------------ internals

    def _create(self, path: str) -> bool:
        group = {"zarr_format": 3, "node_type": "group", "attributes": {"accelstore_lease": asdict(self.holder)}}
        return _create_exclusive(self._fs, path, json.dumps(group).encode())

    def _read(self, path: str) -> Holder | None:
        try:
            return Holder(**json.loads(self._fs.cat_file(path))["attributes"]["accelstore_lease"])
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as error:  # a damaged lease: whoever wrote it, it is not ours
            log.warning("%s: unreadable lease %s (%s)", self.store, path, error)
            return Holder("?", -1, 0.0, "unreadable lease", "?", "")

    def _take_over(self, stale: Holder) -> bool:
        """Replace a dead holder's lease; of several processes doing this at once, one wins.

        The winner is whoever creates the claim object exclusively. A claim left by a taker that
        died is itself taken over when its maker is provably gone.
        """
        claim = f"{self._root}/{_CLAIM_NAME}/zarr.json"
        if not self._create(claim):
            other = self._read(claim)
            if other is None or not other.is_provably_gone():
                return False
            _remove(self._fs, claim)
            if not self._create(claim):
                return False
        try:
            current = self._read(self._path)
            if current is not None and current.token != stale.token:
                return False  # someone else already replaced it
            if current is not None:
                _remove(self._fs, self._path)
            return self._create(self._path)
        finally:
            _remove(self._fs, claim)


def _create_exclusive(fs: Any, path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; False if it did."""
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # a backend without exclusive creation
        log.warning("%s: this storage cannot create objects exclusively; the lease is best effort", path)
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True


def _remove(fs: Any, path: str) -> None:
    """Remove ``path``, then its folder where folders exist and it is empty (never another's lease)."""
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)
    with contextlib.suppress(OSError, NotImplementedError):
        fs.rmdir(path.rsplit("/", 1)[0])  # only an empty folder goes: a lease created meanwhile stays


def command_line() -> str:
    """This process's command line, shortened, for naming the holder."""
    text = " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    return text if len(text) <= 200 else text[:197] + "..."
