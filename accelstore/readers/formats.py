"""Which formats the readers take, told by a file's name."""

from __future__ import annotations

import os
from pathlib import Path

DEVICE_SUFFIXES = (".cwa", ".gt3x", ".bin")
TABLE_SUFFIXES = (".csv",)
SUPPORTED_SUFFIXES = DEVICE_SUFFIXES + TABLE_SUFFIXES


def file_format(path: str | os.PathLike) -> str:
    """The format suffix of ``path`` ('.cwa', '.csv', …), ignoring a trailing '.gz'."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def is_supported(path: str | os.PathLike) -> bool:
    return file_format(path) in SUPPORTED_SUFFIXES
