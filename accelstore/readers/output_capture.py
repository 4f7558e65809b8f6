"""What actipy and its Java parser write to the process's stdout and stderr, captured."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any


class CapturedOutput:
    """What was written to stdout/stderr; readable inside the block and after it."""

    def __init__(self, file: Any):
        self._file = file
        self._text: str | None = None

    def text(self) -> str:
        if self._text is not None:
            return self._text
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def close(self) -> None:
        self._text = self.text()


@contextlib.contextmanager
def captured_output() -> Iterator[CapturedOutput]:
    """Capture file descriptors 1 and 2, where actipy and its Java parser write their messages.

    Safe in ingest's one-thread-per-process workers; the device reader logs the text at debug
    level and makes the parser's error line the cause of a :class:`~accelstore.readers.ReaderError`.
    """
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        output = CapturedOutput(sink)
        try:
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            output.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
