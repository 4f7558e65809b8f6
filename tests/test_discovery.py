"""Discovery of inputs: supported files found, and every input that cannot be read typed, never a hang."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
from pathlib import Path

import pytest

from accelstore.processing import read_recording
from accelstore.readers import UnreadableInputError
from accelstore.readers.discovery import discover


@pytest.fixture(autouse=True)
def no_hang():
    """Opening a FIFO blocks until a writer comes: fail the test after 20 s instead of hanging."""

    def timeout(*_):
        raise TimeoutError("discovery blocked (opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def bound_socket(tmp_path):
    """A listening-less Unix socket bound at a path, closed after the test."""
    sockets = []

    def bind(path: Path) -> Path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sockets.append(sock)
        return path

    yield bind
    for sock in sockets:
        sock.close()


def _errors_by_name(errors) -> dict[str, str]:
    for error in errors:
        assert isinstance(error, UnreadableInputError) and error.kind == "unreadable input"
        assert "\n" not in str(error) and str(error).startswith(f"{error.path}: unreadable input: ")
    return {Path(error.path).name: error.cause for error in errors}


def test_a_folder_gives_its_supported_files_and_types_what_cannot_be_read(tmp_path, bound_socket, caplog):
    root = tmp_path / "raw"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.csv").write_text("time,x,y,z\n")
    (root / "sub" / "deeper" / "a.cwa").write_bytes(b"x")
    (root / ".hidden.csv").write_text("")
    (root / "notes.txt").write_text("")
    (root / "link.csv").symlink_to(root / "b.csv")
    (root / "broken.cwa").symlink_to(tmp_path / "gone.cwa")
    (root / "linked-dir").symlink_to(tmp_path, target_is_directory=True)  # not followed, as before
    os.mkfifo(root / "pipe.csv")
    os.mkfifo(root / "pipe.txt")  # no supported name: ignored like notes.txt, not an error
    bound_socket(root / "s.gt3x")
    with caplog.at_level(logging.INFO, logger="accelstore.readers.discovery"):
        files, errors = discover([root])
    assert files == [(root / "b.csv").resolve(), (root / "b.csv").resolve(), (root / "sub" / "deeper" / "a.cwa").resolve()]
    causes = _errors_by_name(errors)
    assert set(causes) == {"broken.cwa", "pipe.csv", "s.gt3x"}
    assert causes["broken.cwa"] == f"broken symbolic link to '{tmp_path / 'gone.cwa'}'"
    assert "FIFO" in causes["pipe.csv"] and "socket" in causes["s.gt3x"]
    assert all(Path(error.path).is_absolute() for error in errors)
    assert "ignoring 2 file(s) of no supported format" in caplog.text


def test_inputs_named_directly_are_typed_failures_when_not_regular_files(tmp_path, bound_socket):
    os.mkfifo(tmp_path / "named.fifo")
    bound_socket(tmp_path / "named.sock")
    (tmp_path / "dangling.bin").symlink_to(tmp_path / "nowhere.bin")
    (tmp_path / "notes.txt").write_text("hello")
    inputs = [tmp_path / "named.fifo", tmp_path / "named.sock", "/dev/null", tmp_path / "dangling.bin", tmp_path / "missing.cwa", tmp_path / "notes.txt"]
    files, errors = discover(inputs)
    assert files == [(tmp_path / "notes.txt").resolve()]  # named directly: the reader says it is unsupported
    causes = _errors_by_name(errors)
    assert "FIFO" in causes["named.fifo"] and "socket" in causes["named.sock"] and "character device" in causes["null"]
    assert causes["dangling.bin"].startswith("broken symbolic link") and causes["missing.cwa"] == "No such file or directory"


def test_reading_a_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.cwa")
    with pytest.raises(UnreadableInputError, match=re.escape("pipe.cwa: unreadable input: not a regular file: a FIFO")):
        read_recording(tmp_path / "pipe.cwa")


def test_a_folder_that_cannot_be_listed_is_a_failure_not_a_silent_skip(tmp_path, monkeypatch):
    """Simulated (``os.walk`` lists folders with ``os.scandir``): as root, permissions do not stop reads."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "hidden-from-us.cwa").write_bytes(b"x")
    (tmp_path / "open.csv").write_text("")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, errors = discover([tmp_path])
    assert files == [(tmp_path / "open.csv").resolve()]
    assert _errors_by_name(errors) == {"locked": "folder cannot be listed: Permission denied"}


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root listing a folder (the simulated test covers it)")
def test_a_folder_without_permissions_is_a_failure(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.cwa").write_bytes(b"x")
    locked.chmod(0)
    try:
        files, errors = discover([tmp_path])
    finally:
        locked.chmod(0o755)
    assert files == [] and _errors_by_name(errors) == {"locked": "folder cannot be listed: Permission denied"}
