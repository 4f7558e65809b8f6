"""Checks on ``.bin`` and ``.gt3x`` files before actipy parses them, which say what is wrong where actipy would not."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from accelstore.readers.errors import CorruptFileError, TruncatedFileError, UnsupportedFormatError

_GENEACTIV_PAGE = b"Recorded Data"


def check_geneactiv(path: Path) -> None:
    """actipy reads any '.bin' as GENEActiv; refuse other formats and truncated files up front."""
    with open(path, "rb") as f:
        head = f.read(4096)
    signature = b"Device Identity"
    if (head.startswith(signature) or signature.startswith(head)) and len(head) < 4096 and _GENEACTIV_PAGE not in head:
        raise TruncatedFileError(path, f"the file ends inside its GENEActiv header, after {len(head)} bytes")
    if not head.startswith(b"Device Identity") or b"GENEActiv" not in head:
        first_line = head.split(b"\n", 1)[0][:40].decode("ascii", "replace").strip()
        raise UnsupportedFormatError(path, f"not a GENEActiv .bin file (header starts '{first_line}')")
    declared = re.search(rb"Number of Pages:\s*(\d+)", head)
    if declared is None:
        raise CorruptFileError(path, "GENEActiv header has no 'Number of Pages'")
    pages = _count_occurrences(path, _GENEACTIV_PAGE)
    if pages < int(declared.group(1)):
        raise TruncatedFileError(path, f"header declares {int(declared.group(1))} pages, the file holds {pages}")


def check_gt3x(path: Path) -> None:
    """A ``.gt3x`` is a ZIP archive; refuse one that is not, or whose end (its directory) is cut off.

    actipy asserts as much (``AssertionError: Cannot get device id``); this says what is wrong.
    """
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        raise TruncatedFileError(path, "the ZIP archive of a .gt3x file has no central directory: the file was cut short")
    raise CorruptFileError(path, f"not a ZIP archive, as a .gt3x file is (it starts {head!r})")


def _count_occurrences(path: Path, needle: bytes, block_size: int = 1 << 22) -> int:
    count, tail = 0, b""
    with open(path, "rb") as f:
        while block := f.read(block_size):
            data = tail + block
            count += data.count(needle)
            tail = data[-(len(needle) - 1):]  # too short to hold a match: nothing counted twice
    return count
