"""Synthetic AX3 recordings (accelstore.synth): the .cwa layout, what actipy reads back, realism.

The layout checks decode the files here, independently of the writer, from the public format
description (OpenMovement cwa.h); the read-back checks go through actipy as ingest does.
"""

from __future__ import annotations

import gzip
import math

import actipy
import numpy as np
import pandas as pd
import pytest

from accelstore.synth import (
    ACTIVITIES,
    SyntheticRecording,
    synthesize,
    synthesize_signal,
    write_cwa,
)

NONWEAR, SLEEP, WALKING = (ACTIVITIES.index(name) for name in ("nonwear", "sleep", "walking"))
DEVICE_ID = 43_210
SESSION_ID = 777
STILL_G = 0.015  # actipy's non-wear threshold: per-axis standard deviation over 10 s
ONE_32768TH_S = 1 / 32_768  # resolution of the CWA time stamp (15-bit fraction of a second)


def read_raw(path, **processing) -> tuple[pd.DataFrame, dict]:
    options = dict(lowpass_hz=None, calibrate_gravity=False, detect_nonwear=False, resample_hz=None)
    options.update(processing)
    return actipy.read_device(str(path), verbose=False, **options)


def meant_times(recording: SyntheticRecording) -> np.ndarray:
    """Absolute datetime64[ns] of every sample."""
    return recording.start + np.rint(recording.time * 1e9).astype("timedelta64[ns]")


def quantisation_bound_g(xyz: np.ndarray) -> np.ndarray:
    """Largest error the packed format allows per sample (see the exponent argument below).

    A sample's exponent e is the smallest that fits all three axes in 10 bits. For e = 0 the
    step is 1/256 g, error <= 1/512 g. For e >= 1, e - 1 did not fit, so some axis has
    |a| * 256 / 2**(e-1) >= 511.5 and the error 2**e / 512 g is at most max|a| / 511.5.
    """
    return np.maximum(1 / 512, np.abs(xyz).max(axis=1) / 511.5) + 1e-6


def window_std(xyz: np.ndarray, samples: int) -> np.ndarray:
    """Per-axis standard deviation of consecutive windows: (windows, 3)."""
    n = len(xyz) // samples * samples
    return xyz[:n].reshape(-1, samples, 3).std(axis=1)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def decode_cwa(raw: bytes) -> dict[str, np.ndarray]:
    """Header and per-block fields of a .cwa file, after cwa.h (little-endian, packed)."""
    data = np.frombuffer(raw, np.uint8)
    header, blocks = data[:1024], data[1024:].reshape(-1, 512)

    def field(array, offset, dtype):
        size = np.dtype(dtype).itemsize
        return array[..., offset : offset + size].copy().view(dtype)[..., 0]

    stamp = field(blocks, 14, "<u4").astype(np.int64)
    whole_second = pd.to_datetime(
        pd.DataFrame(
            {
                "year": (stamp >> 26) + 2000,
                "month": stamp >> 22 & 0xF,
                "day": stamp >> 17 & 0x1F,
                "hour": stamp >> 12 & 0x1F,
                "minute": stamp >> 6 & 0x3F,
                "second": stamp & 0x3F,
            }
        )
    ).to_numpy()
    fractional = field(blocks, 4, "<u2").astype(np.int64)
    fraction_65536 = (fractional & 0x7FFF) << 1
    rate_code = field(blocks, 24, "u1")
    frequency = (3200 / (1 << (15 - (rate_code & 0xF)))).astype(np.int64)
    return {
        "header_marker": header[:2].tobytes(),
        "header_length": field(header, 2, "<u2"),
        "device_id": field(header, 5, "<u2"),
        "header_session_id": field(header, 7, "<u4"),
        "upper_device_id": field(header, 11, "<u2"),
        "header_rate_code": field(header, 36, "u1"),
        "marker": blocks[:, :2].copy().view("S2")[:, 0],
        "length": field(blocks, 2, "<u2"),
        "fractional": fractional,
        "session_id": field(blocks, 6, "<u4"),
        "sequence_id": field(blocks, 10, "<u4"),
        "rate_code": rate_code,
        "axes_packing": field(blocks, 25, "u1"),
        "sample_count": field(blocks, 28, "<u2"),
        "word_sum": blocks.view("<u2").sum(axis=1, dtype=np.uint64) % 65536,
        # cwa.h: the time stamp plus the fraction is the time of sample timestampOffset, once
        # the offset is given back the whole samples the fraction spans.
        "stamp_time": whole_second + (fraction_65536 * 1e9 / 65536).round().astype("timedelta64[ns]"),
        "stamp_sample": field(blocks, 26, "<i2") + (fraction_65536 * frequency >> 16),
    }


@pytest.fixture(scope="module")
def half_day() -> SyntheticRecording:
    return synthesize_signal(days=0.5, seed=2024)


@pytest.fixture(scope="module")
def half_day_file(half_day, tmp_path_factory):
    path = tmp_path_factory.mktemp("half_day") / "half_day.cwa"
    write_cwa(path, half_day, device_id=DEVICE_ID, session_id=SESSION_ID)
    return path


@pytest.fixture(scope="module")
def half_day_actipy(half_day_file):
    return read_raw(half_day_file)


@pytest.fixture(scope="module")
def full_day() -> SyntheticRecording:
    return synthesize_signal(days=1.0, seed=11)


# ------------------------------------------------------------------------------ the format


def test_blocks_follow_the_cwa_layout(half_day, half_day_file):
    cwa = decode_cwa(half_day_file.read_bytes())
    n_blocks = math.ceil(len(half_day.time) / 120)
    assert cwa["header_marker"] == b"MD" and cwa["header_length"] == 1020
    assert (cwa["device_id"], cwa["upper_device_id"], cwa["header_session_id"]) == (DEVICE_ID, 0, SESSION_ID)
    assert cwa["header_rate_code"] == 0x4A  # 100 Hz, +-8 g
    assert len(cwa["marker"]) == n_blocks
    assert np.all(cwa["marker"] == b"AX") and np.all(cwa["length"] == 508)
    assert np.all(cwa["word_sum"] == 0)
    assert np.array_equal(cwa["sequence_id"], np.arange(n_blocks))
    assert np.all(cwa["session_id"] == SESSION_ID)
    assert np.all(cwa["rate_code"] == 0x4A) and np.all(cwa["axes_packing"] == 0x30)
    assert np.all(cwa["fractional"] & 0x8000)  # the field holds a fraction, not a device id
    assert np.all(cwa["sample_count"][:-1] == 120)
    assert cwa["sample_count"].sum() == len(half_day.time)


def test_block_time_stamps_carry_the_device_clock_to_a_32768th_of_a_second(half_day, half_day_file):
    cwa = decode_cwa(half_day_file.read_bytes())
    sample = cwa["stamp_sample"] + 120 * np.arange(len(cwa["stamp_sample"]))
    assert sample.min() >= 0 and sample.max() < len(half_day.time)
    error_s = (cwa["stamp_time"] - meant_times(half_day)[sample]) / np.timedelta64(1, "s")
    assert np.abs(error_s).max() <= ONE_32768TH_S


def test_a_device_id_above_16_bits_keeps_its_upper_word(tmp_path):
    recording = synthesize_signal(days=0.002, seed=1)
    path = tmp_path / "wide.cwa"
    write_cwa(path, recording, device_id=0x5_B3A1)
    cwa = decode_cwa(path.read_bytes())
    assert (cwa["upper_device_id"], cwa["device_id"]) == (0x5, 0xB3A1)


# ------------------------------------------------------------------------------ actipy reads it back


def test_actipy_reads_every_sample_and_the_device(half_day, half_day_actipy):
    data, info = half_day_actipy
    assert len(data) == len(half_day.time)
    assert info["DeviceID"] == DEVICE_ID
    assert info["SampleRate"] == 100
    assert info["ReadErrors"] == 0


def test_actipy_times_are_within_a_sample_of_the_meant_ones(half_day, half_day_actipy):
    """actipy ignores the fraction of a second: it puts the whole second at timestampOffset.

    So each block is placed up to one sample period early, then times are truncated to the
    millisecond; actipy also converts offsets with the nominal 100 Hz, which costs at most
    120 samples times the difference of the true and nominal sample periods.
    """
    data, _ = half_day_actipy
    true_rate = (len(half_day.time) - 1) / half_day.time[-1]
    bound_s = 1 / 100 + 1e-3 + 120 * abs(1 / true_rate - 1 / 100) + 1e-4
    error_s = (data.index.to_numpy() - meant_times(half_day)) / np.timedelta64(1, "s")
    assert np.abs(error_s).max() <= bound_s


def test_actipy_values_are_the_meant_ones_within_the_quantisation(half_day, half_day_actipy):
    data, _ = half_day_actipy
    error = np.abs(data[["x", "y", "z"]].to_numpy() - half_day.xyz).max(axis=1)
    assert np.all(error <= quantisation_bound_g(half_day.xyz))


def test_large_accelerations_use_the_exponent_and_saturate_at_8g(tmp_path):
    n = 2_400
    ramp = np.linspace(-9, 9, n)
    xyz = np.column_stack([ramp, -0.5 * ramp, np.full(n, 0.3)]).astype(np.float32)
    recording = SyntheticRecording(
        start=np.datetime64("2015-03-01T12:00:00.250", "ns"),
        rate=100.0,
        time=np.arange(n) / 100.0,
        xyz=xyz,
        activity=np.full(n, ACTIVITIES.index("vigorous"), np.int8),
        nonwear=np.empty((0, 2)),
    )
    path = tmp_path / "ramp.cwa"
    write_cwa(path, recording, device_id=1)
    data, _ = read_raw(path)
    saturated = np.clip(xyz, -8, 8)
    error = np.abs(data[["x", "y", "z"]].to_numpy() - saturated).max(axis=1)
    assert np.all(error <= quantisation_bound_g(saturated))
    assert data["x"].min() == -8 and data["x"].max() == 8


def test_16_bit_samples_read_back_at_1_256_g(tmp_path):
    recording = synthesize_signal(days=0.01, seed=3)
    path = tmp_path / "unpacked.cwa"
    write_cwa(path, recording, device_id=DEVICE_ID, packed=False)
    cwa = decode_cwa(path.read_bytes())
    assert np.all(cwa["axes_packing"] == 0x32) and np.all(cwa["sample_count"][:-1] == 80)
    assert np.all(cwa["word_sum"] == 0)
    data, _ = read_raw(path)
    assert len(data) == len(recording.time)
    assert np.abs(data[["x", "y", "z"]].to_numpy() - recording.xyz).max() <= 1 / 512 + 1e-6


def test_gzip_file_holds_the_same_bytes_and_actipy_reads_it(tmp_path):
    recording = synthesize_signal(days=0.01, seed=4)
    plain, compressed = tmp_path / "P.cwa", tmp_path / "P.cwa.gz"
    write_cwa(plain, recording, device_id=DEVICE_ID)
    write_cwa(compressed, recording, device_id=DEVICE_ID)
    assert gzip.decompress(compressed.read_bytes()) == plain.read_bytes()
    data, info = read_raw(compressed)
    assert len(data) == len(recording.time) and info["DeviceID"] == DEVICE_ID


def test_an_unsupported_rate_is_refused():
    with pytest.raises(ValueError, match="AX3 rate"):
        synthesize_signal(days=0.01, seed=0, rate=30.0)


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = synthesize(tmp_path / "a", participants=2, days=0.01, seed=5)
    again = synthesize(tmp_path / "b", participants=2, days=0.01, seed=5)
    other = synthesize(tmp_path / "c", participants=2, days=0.01, seed=6)
    assert [path.name for path in first] == ["P001.cwa", "P002.cwa"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other[0].read_bytes()
    one, two = (decode_cwa(path.read_bytes()) for path in first)
    assert one["device_id"] != two["device_id"]


def test_gzip_output_is_deterministic_too(tmp_path):
    first = synthesize(tmp_path / "a", participants=1, days=0.01, seed=8, gzip=True)
    again = synthesize(tmp_path / "b", participants=1, days=0.01, seed=8, gzip=True)
    assert first[0].name == "P001.cwa.gz"
    assert first[0].read_bytes() == again[0].read_bytes()


def test_participants_differ_in_start_and_clock():
    one, two = synthesize_signal(days=0.01, seed=21), synthesize_signal(days=0.01, seed=22)
    assert one.start != two.start
    assert one.time[-1] / len(one.time) != two.time[-1] / len(two.time)
    assert not np.array_equal(one.xyz[:1000], two.xyz[:1000])


# ------------------------------------------------------------------------------ realism


def test_recording_starts_in_the_middle_of_a_day_and_lasts_the_days_asked(full_day):
    start = pd.Timestamp(full_day.start)
    assert 10 <= start.hour < 15
    assert abs(full_day.time[-1] - 86_400) < 5  # device-clock seconds
    assert np.all(np.diff(full_day.time) > 0)
    rate = (len(full_day.time) - 1) / full_day.time[-1]
    assert 98 <= rate <= 100.5  # the AX3 sample clock runs near, not at, 100 Hz
    assert full_day.xyz.dtype == np.float32 and full_day.xyz.shape == (len(full_day.time), 3)


def test_sleep_happens_at_night(full_day):
    start = pd.Timestamp(full_day.start)
    hours = (start.hour + start.minute / 60 + full_day.time / 3600) % 24
    asleep = full_day.activity == SLEEP
    assert 0.15 < asleep.mean() < 0.5
    assert np.all((hours[asleep] >= 20) | (hours[asleep] < 12))


def test_walking_steps_at_about_1_8_hz(half_day):
    rate = (len(half_day.time) - 1) / half_day.time[-1]
    magnitude = np.linalg.norm(half_day.xyz, axis=1)
    bouts = [(a, b) for a, b in runs(half_day.activity == WALKING) if b - a >= 30 * rate]
    assert bouts
    for a, b in bouts:
        wave = magnitude[a:b] - magnitude[a:b].mean()
        spectrum = np.abs(np.fft.rfft(wave))
        frequency = np.fft.rfftfreq(len(wave), 1 / rate)
        assert 1.6 <= frequency[spectrum.argmax()] <= 2.0


def test_nonwear_is_long_and_still_at_1g(half_day):
    rate = (len(half_day.time) - 1) / half_day.time[-1]
    assert len(half_day.nonwear) >= 1
    for start_s, end_s in half_day.nonwear:
        assert end_s - start_s >= 2 * 3600
        inside = half_day.xyz[np.searchsorted(half_day.time, start_s) : np.searchsorted(half_day.time, end_s)]
        assert np.all(window_std(inside, round(10 * rate)) < STILL_G)
        magnitude = np.linalg.norm(inside, axis=1).mean()
        assert 0.95 < magnitude < 1.05  # 1 g, give or take the device's calibration error
    labelled_s = [(half_day.time[a], half_day.time[b - 1]) for a, b in runs(half_day.activity == NONWEAR)]
    np.testing.assert_allclose(labelled_s, half_day.nonwear, atol=1 / rate)


def test_actipy_flags_the_nonwear_and_nothing_else(half_day, half_day_file):
    data, info = read_raw(half_day_file, detect_nonwear=True)
    flagged = data["x"].isna().to_numpy()
    assert info["NumNonwearEpisodes"] == len(half_day.nonwear)
    near_nonwear = np.zeros(len(flagged), bool)
    for start_s, end_s in half_day.nonwear:
        inside = (half_day.time >= start_s) & (half_day.time < end_s)
        assert flagged[inside].mean() > 0.98
        near_nonwear |= (half_day.time >= start_s - 60) & (half_day.time < end_s + 60)
    assert not flagged[~near_nonwear].any()


def test_only_nonwear_stays_still_for_90_minutes(full_day):
    rate = (len(full_day.time) - 1) / full_day.time[-1]
    window = round(10 * rate)
    still = np.all(window_std(full_day.xyz, window) < STILL_G, axis=1)
    worn = full_day.activity[: len(still) * window : window] != NONWEAR
    longest_still_worn_s = max(b - a for a, b in runs(still & worn)) * 10
    assert longest_still_worn_s < 90 * 60
    assert (full_day.activity == SLEEP).any()  # the day includes a night to test against


def test_still_wear_reads_about_1g(full_day):
    rate = (len(full_day.time) - 1) / full_day.time[-1]
    window = round(10 * rate)
    still = np.all(window_std(full_day.xyz, window) < STILL_G, axis=1)
    n = len(still) * window
    magnitude = np.linalg.norm(full_day.xyz[:n], axis=1).reshape(-1, window).mean(axis=1)
    worn = full_day.activity[:n:window] != NONWEAR
    assert (still & worn).sum() > 1000
    assert np.all(np.abs(magnitude[still & worn] - 1) < 0.05)
