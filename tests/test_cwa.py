"""The Numba .cwa reader against actipy's Java reader (all processing off): the same to the bit.

The reader leaves actipy's wear-time keys to the processing layer (they need the non-wear
kernel), so the info dict is compared as read, less those keys, and as ``processing.read_raw``
completes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from accelstore.processing import read_raw, read_recording
from accelstore.readers import CorruptFileError, ProcessingOptions, read_file
from accelstore.readers.cwa import BLOCK_BYTES, NO_DATA_BLOCK, PARTIAL_BLOCK, SampleBuffers, read_cwa
from accelstore.synth import synthesize
from helpers import GOOD_DEVICE_FILES

CWA_FILES = [name for name in GOOD_DEVICE_FILES if name.endswith(".cwa")]
ACTIPY_UNPROCESSED = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False, engine="actipy")
REFERENCE_FILE = "GGIRread__ax3_testfile.cwa"  # AX3, packed, 100 Hz, blocks with rate codes (checksummed)
TAMPERED_BLOCK = 40  # a data block in the middle of the reference file
WEAR_TIME_KEYS = {"WearTime(days)", "NumInterrupts", "Covers24hOK"}


def assert_same_as_actipy(path: Path) -> None:
    """Samples, timestamps (ns), x, y, z, temperature and the info dict equal actipy's exactly.

    The info dict: as read, actipy's in its order less the wear-time keys; completed by
    processing, actipy's with the same types and values, and the out-of-range count.
    """
    import actipy

    expected, expected_info = actipy.read_device(
        str(path), lowpass_hz=None, calibrate_gravity=False, detect_nonwear=False, resample_hz=None, verbose=False
    )
    ours = read_cwa(str(path))
    np.testing.assert_array_equal(ours.time_ns, expected.index.asi8)
    for name in ("x", "y", "z"):
        values = getattr(ours, name)
        assert values.dtype == np.float32 and values.flags.c_contiguous and values.flags.owndata
        np.testing.assert_array_equal(values, expected[name].to_numpy())
    np.testing.assert_array_equal(ours.temperature.expand(), expected["temperature"].to_numpy())
    assert set(expected_info) >= WEAR_TIME_KEYS
    assert list(ours.info) == [key for key in expected_info if key not in WEAR_TIME_KEYS]
    completed = read_raw(path)
    np.testing.assert_array_equal(completed.time, expected.index.to_numpy(dtype="datetime64[ns]"))
    np.testing.assert_array_equal(completed.xyz, expected[["x", "y", "z"]].to_numpy())
    np.testing.assert_array_equal(completed.temperature.expand(), expected["temperature"].to_numpy())
    info = dict(completed.info)
    assert info.pop("OutOfRangeSamples") == 0
    assert {k: (type(v), v) for k, v in info.items()} == {k: (type(v), v) for k, v in expected_info.items()}


@pytest.mark.parametrize("name", CWA_FILES)
def test_real_files_read_as_actipy_reads_them(devices_dir, name):
    assert_same_as_actipy(devices_dir / name)


def test_corrupt_blocks_are_counted_as_actipy_counts_them(devices_dir):
    info = read_raw(devices_dir / "GGIRread__ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa").info
    assert info["ReadErrors"] == 6 and info["NumInterrupts"] == 1


@pytest.mark.parametrize("gzip", [False, True], ids=["cwa", "cwa.gz"])
def test_synthetic_files_read_as_actipy_reads_them(tmp_path, gzip):
    (path,) = synthesize(tmp_path, participants=1, days=0.1, seed=11, gzip=gzip)
    assert_same_as_actipy(path)


def _edit_word(block: np.ndarray, at: int, edit: Callable[[int], int]) -> None:
    """Replace the little-endian 32-bit word at ``at`` by ``edit(word)``."""
    word = int.from_bytes(block[at : at + 4].tobytes(), "little")
    block[at : at + 4] = np.frombuffer(edit(word).to_bytes(4, "little"), dtype=np.uint8)


def _fix_checksum(block: np.ndarray) -> None:
    words = block.view("<u2")
    words[-1] = 0
    words[-1] = -int(words.sum(dtype=np.int64)) & 0xFFFF


def _count_of_200(block: np.ndarray) -> None:
    block[28:30] = (200, 0)  # beyond the 120 packed samples a block holds


def _one_minute_back(block: np.ndarray) -> None:
    _edit_word(block, 14, lambda stamp: stamp - (1 << 6))  # the minute field, bits 6-11


def _month_13(block: np.ndarray) -> None:
    _edit_word(block, 14, lambda stamp: stamp & ~(0xF << 22) | (13 << 22))


def _tampered(devices_dir: Path, out: Path, edit: Callable[[np.ndarray], None]) -> Path:
    data = np.fromfile(devices_dir / REFERENCE_FILE, dtype=np.uint8)
    block = data.reshape(-1, BLOCK_BYTES)[TAMPERED_BLOCK]
    edit(block)
    _fix_checksum(block)
    data.tofile(out)
    return out


@pytest.mark.parametrize(
    "edit, read_errors",
    [
        (_count_of_200, 1),  # capped to the payload, counted, kept
        # starting before the previous block's end, the block is spread from there back to its own
        # end: 119 non-increasing steps, dropped by quality control and counted as ceil(119 / 100 Hz)
        (_one_minute_back, 2),
        (_month_13, 1),  # not a date: the block is skipped and counted
    ],
    ids=["sample-count-capped", "time-goes-back", "invalid-date"],
)
def test_tampered_blocks_read_as_actipy_reads_them(devices_dir, tmp_path, edit, read_errors):
    path = _tampered(devices_dir, tmp_path / "tampered.cwa", edit)
    assert_same_as_actipy(path)
    assert read_cwa(path).info["ReadErrors"] == read_errors


def test_partial_last_block_ends_reading_with_one_error(devices_dir, tmp_path):
    path = tmp_path / "truncated.cwa"
    path.write_bytes((devices_dir / REFERENCE_FILE).read_bytes()[:-100])
    assert_same_as_actipy(path)
    assert read_cwa(path).info["ReadErrors"] == 1


def _random_bytes(devices_dir: Path, path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 70_000, dtype=np.uint8).tobytes())


def _header_only(devices_dir: Path, path: Path) -> None:
    path.write_bytes((devices_dir / REFERENCE_FILE).read_bytes()[: 2 * BLOCK_BYTES])


def _layout_change(devices_dir: Path, path: Path) -> None:
    def six_axes(block: np.ndarray) -> None:
        block[25] = 0x62  # 6 axes, 16 bits each

    _tampered(devices_dir, path, six_axes)


@pytest.mark.parametrize(
    "write, message",
    [
        (_random_bytes, PARTIAL_BLOCK),  # 70,000 bytes: no "AX" block before the partial one
        (_header_only, NO_DATA_BLOCK),
        (_layout_change, "CWA axis layout changes from AX3 to AX6"),
    ],
    ids=["random-bytes", "header-only", "layout-change"],
)
def test_unreadable_files_raise_the_java_parsers_message(devices_dir, tmp_path, write, message):
    path = tmp_path / "bad.cwa"
    write(devices_dir, path)
    with pytest.raises(ValueError) as ours:
        read_cwa(path)
    assert str(ours.value) == message
    with pytest.raises(CorruptFileError) as actipys:
        read_file(path, ACTIPY_UNPROCESSED)
    assert actipys.value.cause == message


def test_zero_byte_file_has_no_data_block(tmp_path):
    path = tmp_path / "empty.cwa"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"^{NO_DATA_BLOCK}$"):
        read_cwa(path)


def test_corrupt_gzip_is_a_value_error(tmp_path):
    path = tmp_path / "bad.cwa.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"^cannot decompress: ") as caught:
        read_cwa(path)
    assert "\n" not in str(caught.value)


def test_reads_into_reused_buffers_equal_fresh_reads(devices_dir, tmp_path):
    """Buffers that grow (while an earlier read is still held, then with none held) and are
    reused for shorter files give each file's samples and info exactly; the read still held when
    they grew is left intact."""
    (synthetic,) = synthesize(tmp_path, participants=1, days=0.05, seed=3)  # 425,035 samples
    paths = [
        devices_dir / "skdh__ax6_sample.cwa",  # 10,360 samples
        devices_dir / REFERENCE_FILE,  # 17,400
        devices_dir / "skdh__ax3_sample.cwa",  # 58,800
        synthetic,
        devices_dir / "openmovement__example-610-steps.cwa",  # 71,400
    ]
    buffers = SampleBuffers()
    held = read_cwa(paths[0], buffers)
    held_x = held.x.copy()
    for path in paths[1:]:
        fresh, reused = read_cwa(path), read_cwa(path, buffers)
        for name in ("time_ns", "x", "y", "z"):
            np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name))
        np.testing.assert_array_equal(reused.temperature.expand(), fresh.temperature.expand())
        assert reused.info == fresh.info
        if path == paths[1]:
            np.testing.assert_array_equal(held.x, held_x)
            del held
        del reused  # so that the next growth resizes the buffers in place


def test_reading_leaves_out_only_the_wear_time_keys_which_processing_adds(devices_dir):
    """The reader's info is processing's without the wear-time keys (and the out-of-range count);
    with non-wear detection on, processing computes those keys over the samples it keeps instead."""
    path = devices_dir / REFERENCE_FILE
    quick = read_cwa(path).info
    full = {key: value for key, value in read_raw(path).info.items() if key != "OutOfRangeSamples"}
    assert set(full) >= WEAR_TIME_KEYS and not WEAR_TIME_KEYS & set(quick)
    assert quick == {key: value for key, value in full.items() if key not in WEAR_TIME_KEYS}
    recording = read_file(path)
    assert recording.wear_time_deferred and not WEAR_TIME_KEYS & set(recording.info)
    nonwear_only = ProcessingOptions(lowpass_hz=None, calibrate=False)
    assert set(read_recording(path, nonwear_only).info) >= WEAR_TIME_KEYS
