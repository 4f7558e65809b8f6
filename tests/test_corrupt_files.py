"""Corrupt variants of the real device files (and of a CSV): each reads, or raises a typed ReaderError.

Never another exception, never a hang. The Java formats (.gt3x, .bin: a JVM per read) get a fixed
set of variants; the Numba ``.cwa`` reader and the CSV reader get Hypothesis, which also flips
``.cwa`` bytes *and re-fixes the block checksum*, so that corrupt header fields reach the decoder
instead of being skipped as bad blocks. Hypothesis runs derandomized (the same examples every
run) and without a database: a fixed, fast check rather than a search that differs per machine.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.processing import read_recording
from accelstore.readers import ProcessingOptions, ReaderError
from helpers import DEVICES, GOOD_DEVICE_FILES, TRUNCATED_FILE, UNSUPPORTED_FILE, time_limit, write_csv

CWA_FILES = [name for name in GOOD_DEVICE_FILES if name.endswith(".cwa")]
JAVA_FILES = [name for name in GOOD_DEVICE_FILES if not name.endswith(".cwa")] + [TRUNCATED_FILE, UNSUPPORTED_FILE]
BLOCK = 512
READ_TIMEOUT_S = 60
FAST = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def reads_or_is_typed(path: Path, options: ProcessingOptions = ProcessingOptions()) -> str:
    """'read', or the kind of the ReaderError reading ``path`` raised; anything else fails the test."""
    with time_limit(READ_TIMEOUT_S):
        try:
            recording = read_recording(path, options)
        except ReaderError as error:
            message = str(error)
            assert type(error) is not ReaderError, message  # a subclass, saying what is wrong
            assert message.startswith(f"{path}: {error.kind}: ") and "\n" not in message
            return error.kind
    assert len(recording.time) == len(recording.axes[0]) >= 2
    assert np.all(np.diff(recording.time.view(np.int64)) >= 0)
    return "read"


# ---------------------------------------------------------------- corruptions


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


def flipped(data: bytes, at: int, count: int = 8) -> bytes:
    out = bytearray(data)
    for i in range(at, min(at + count, len(out))):
        out[i] ^= 0xFF
    return bytes(out)


def overwritten(data: bytes, at: int, noise: bytes) -> bytes:
    out = bytearray(data)
    out[at : at + len(noise)] = noise[: max(0, len(out) - at)]
    return bytes(out)


def cwa_blocks(data: bytes) -> list[int]:
    """Offsets of the .cwa data blocks ("AX" at a block boundary)."""
    return [at for at in range(0, len(data) - BLOCK + 1, BLOCK) if data[at : at + 2] == b"AX"]


def fix_checksum(out: bytearray, block: int) -> None:
    """Make a .cwa block's 16-bit words sum to zero again, as a valid block's do."""
    words = np.frombuffer(bytes(out[block : block + BLOCK - 2]), dtype="<u2")
    struct.pack_into("<H", out, block + BLOCK - 2, (-int(words.sum(dtype=np.int64))) & 0xFFFF)


def with_clock_jump(data: bytes, years: int = 10) -> bytes:
    """The last data block's time stamp moved ``years`` on, checksum fixed: a device clock gone wrong."""
    out = bytearray(data)
    block = cwa_blocks(data)[-1]
    stamp = struct.unpack_from("<I", out, block + 14)[0]
    struct.pack_into("<I", out, block + 14, stamp + (years << 26))  # the year is the top 6 bits
    fix_checksum(out, block)
    return bytes(out)


def deterministic_variants(data: bytes) -> dict[str, bytes]:
    """Truncations at several points, and flips of bytes and whole blocks in the header and the data."""
    n = len(data)
    noise = np.random.default_rng(0).integers(0, 256, BLOCK, dtype=np.uint8).tobytes()
    return {
        "cut-at-40-bytes": data[:40],
        "cut-in-header": truncated(data, 0.01),
        "cut-in-half": truncated(data, 0.5),
        "cut-before-end": data[: n - 37],
        "header-flipped": flipped(data, 20),
        "data-flipped": flipped(data, n // 2),
        "header-block-noise": overwritten(data, 256, noise),
        "data-block-noise": overwritten(data, (n // 3) // BLOCK * BLOCK, noise),
    }


# ---------------------------------------------------------------- the Java formats: fixed variants


@pytest.fixture(scope="module")
def java_variants(devices_dir, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("java-variants")
    paths = []
    for name in JAVA_FILES:
        for tag, data in deterministic_variants((devices_dir / name).read_bytes()).items():
            path = folder / f"{tag}__{name}"
            path.write_bytes(data)
            paths.append(path)
    return paths


def test_corrupt_java_format_variants_read_or_raise_a_typed_error(java_variants):
    outcomes = {path.name: reads_or_is_typed(path) for path in java_variants}
    assert outcomes["cut-in-half__GGIR__actigraph_testfile.gt3x"] == "truncated file"  # the ZIP's directory is gone
    assert outcomes["cut-at-40-bytes__skdh__gnactv_sample.bin"] == "truncated file"  # inside the header
    assert outcomes["header-flipped__GGIR__actigraph_testfile.gt3x"] == "corrupt file"
    assert outcomes["cut-in-header__GGIRread__genea_testfile.bin"] == "unsupported format"


# ---------------------------------------------------------------- .cwa (Numba) and CSV: Hypothesis


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hypothesis-variants")


@st.composite
def cwa_corruptions(draw) -> tuple[str, bytes]:
    """A real .cwa file, corrupted: cut, bytes or blocks flipped, or header fields changed behind a fixed checksum."""
    name = draw(st.sampled_from(CWA_FILES))
    data = (DEVICES / name).read_bytes()
    kind = draw(st.sampled_from(["truncate", "flip", "noise", "field"]))
    if kind == "truncate":
        return name, data[: draw(st.integers(1, len(data) - 1))]
    if kind == "flip":
        at = draw(st.one_of(st.integers(0, 1023), st.integers(0, len(data) - 1)))
        return name, flipped(data, at, draw(st.integers(1, 16)))
    if kind == "noise":
        at = draw(st.integers(0, len(data) - 1))
        return name, overwritten(data, at, draw(st.binary(min_size=1, max_size=2 * BLOCK)))
    out = bytearray(data)
    blocks = cwa_blocks(data)
    for _ in range(draw(st.integers(1, 4))):
        block = draw(st.sampled_from(blocks))
        out[block + draw(st.integers(2, 29))] = draw(st.integers(0, 255))  # the block header's fields
        fix_checksum(out, block)
    return name, bytes(out)


@FAST
@given(variant=cwa_corruptions())
def test_corrupt_cwa_variants_read_or_raise_a_typed_error(devices_dir, scratch, variant):
    name, data = variant
    path = scratch / name
    path.write_bytes(data)
    event(reads_or_is_typed(path))
    packed = gzip.compress(data, compresslevel=1)
    gz = scratch / f"{name}.gz"
    gz.write_bytes(packed[: len(packed) // 2])  # a cut-off .cwa.gz as well
    assert reads_or_is_typed(gz) == "truncated file"


@functools.cache
def good_csv_bytes() -> bytes:
    """A two-minute 25 Hz CSV (a function, not a fixture: Hypothesis would print it with every failure)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "good.csv"
        write_csv(path, "2024-03-01 10:00:00", "2024-03-01 10:02:00", rate=25.0)
        return path.read_bytes()


TOKENS = [b"inf", b"-inf", b"nan", b"abc", b"", b",", b"\n", b"\x00", b"1e999", b"+01:00", b"03/04/2024", b"\"", b"\xff\xfe"]


@FAST
@given(
    edits=st.lists(st.tuples(st.floats(0.0001, 1), st.sampled_from(TOKENS), st.integers(0, 3)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.floats(0.001, 1)),
    compress=st.booleans(),
    engine=st.sampled_from(["numba", "actipy"]),
)
def test_corrupt_csv_variants_read_or_raise_a_typed_error(scratch, edits, cut, compress, engine):
    data = bytearray(good_csv_bytes())
    for where, token, replaced in edits:
        at = int(where * (len(data) - 1))
        data[at : at + replaced] = token
    payload = gzip.compress(bytes(data), compresslevel=1) if compress else bytes(data)
    path = scratch / ("variant.csv.gz" if compress else "variant.csv")
    path.write_bytes(payload[: max(1, int(len(payload) * cut))] if cut else payload)  # cut: the file ends early
    event(reads_or_is_typed(path, ProcessingOptions(engine=engine)))
    reads_or_is_typed(path, ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False, csv_time_unit="ms"))


# ---------------------------------------------------------------- good and bad files in one ingest


BAD_VARIANTS = {  # name in the folder: (source file, corruption, the error kind expected)
    "cutzip.gt3x": ("GGIR__actigraph_testfile.gt3x", lambda d: truncated(d, 0.5), "truncated file"),
    "badzip.gt3x": ("GGIR__actigraph_testfile.gt3x", lambda d: flipped(d, 0), "corrupt file"),
    "noise.cwa": ("GGIRread__ax3_testfile.cwa", lambda d: np.random.default_rng(1).integers(0, 256, 70_000, dtype=np.uint8).tobytes(), "corrupt file"),
    "jump.cwa": ("skdh__ax6_sample.cwa", with_clock_jump, "too long"),
    "cuthead.bin": ("skdh__gnactv_sample.bin", lambda d: d[:300], "truncated file"),
}
GOOD = ("GGIRread__ax6_testfile.cwa", "skdh__ax3_sample.cwa")


def _windows(store: Path, participant: str):
    windows = open_store(str(store)).windows(participant)
    return windows.values, windows.valid.values, windows.time.values


def test_corrupt_and_good_files_in_one_ingest(devices_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, (source, corrupt, _) in BAD_VARIANTS.items():
        (folder / name).write_bytes(corrupt((devices_dir / source).read_bytes()))
    for name in GOOD:
        shutil.copy(devices_dir / name, folder / name)
    write_csv(folder / "P9.csv", "2024-03-01 10:00:00", "2024-03-01 10:05:00")
    bad_csv = (folder / "P9.csv").read_text().replace("\n2024-03-01 10:01:00.000000,", "\n2024-03-01 10:01:00.000000,oops", 1)
    (folder / "bad.csv").write_text(bad_csv)
    report = ingest([folder], str(tmp_path / "mixed.zarr"), scheduler="synchronous", progress=False)
    expected = {str(folder / name): kind for name, (_, _, kind) in BAD_VARIANTS.items()} | {str(folder / "bad.csv"): "bad value"}
    assert {source: failure["error"] for source, failure in report.failed.items()} == expected
    for source, failure in report.failed.items():
        assert failure["message"].startswith(f"{source}: {failure['error']}: ") and "\n" not in failure["message"]
    good_ids = [Path(name).stem for name in GOOD] + ["P9"]
    assert sorted(report.written) == sorted(good_ids)
    for participant, source in zip(good_ids, [folder / name for name in GOOD] + [folder / "P9.csv"]):
        alone = tmp_path / f"{participant}.zarr"
        assert ingest([source], str(alone), scheduler="synchronous", progress=False).written == [participant]
        for mixed_array, alone_array in zip(_windows(tmp_path / "mixed.zarr", participant), _windows(alone, participant)):
            np.testing.assert_array_equal(mixed_array, alone_array)


def test_the_clock_jump_variant_is_refused_for_its_span_not_read(devices_dir, tmp_path):
    path = tmp_path / "jump.cwa"
    path.write_bytes(with_clock_jump((devices_dir / "skdh__ax6_sample.cwa").read_bytes()))
    with pytest.raises(ReaderError, match=r"too long: spans 36\d\d\.\d days .* largest gap 36\d\d\.\d days after 20"):
        read_recording(path)
    allowed = read_recording(path, ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False, max_span_days=10_000))
    assert pd.Timestamp(allowed.time[-1]) - pd.Timestamp(allowed.time[0]) > pd.Timedelta(days=3600)
