"""Realistic synthetic wrist recordings, written as Axivity AX3 ``.cwa`` files.

The files follow the public CWA layout (OpenMovement ``cwa.h``): a 1024-byte "MD" header, then
512-byte "AX" data blocks with device and session id, sequence number, packed RTC time stamp
with a 15-bit fraction of a second, light, temperature, events, battery, rate code, packing,
sample count, the samples and a word checksum, laid out as the real AX3 files in
``shared/data/devices`` are; actipy reads them as it reads those.

What a participant looks like (everything deterministic from the seed):

- nights of sleep: lying still in one orientation, a turn every few minutes to ~45 minutes;
- days: sitting with fidgets and posture changes, walking bouts (steps at ~1.8 Hz), some
  vigorous activity (running-like, 2.5-2.9 Hz, up to several g);
- one or two non-wear episodes of 2-4 h, each in a different waking period of at least 3 h
  (so fewer in short recordings): the device on a table, no movement, only sensor noise; long
  enough for the usual 90-minute rule to find them. Nothing else stays still that long;
- the recording starts between 10:00 and 15:00; participants differ in start time, bed time,
  sleep length, activity level, sensor noise, calibration error and device clock.

Time. The sample clock of an AX3 is not the nominal rate: the real AX3 files in
``shared/data/devices`` run about 1.2 % slow against their own real-time clock. Each
participant gets a mean rate offset (about -1.2 % +- 0.3 %) and a slow daily wander of the order
of 100 ppm; ``SyntheticRecording.time`` holds the resulting sample times on the device clock,
and every block's time stamp is the clock time of the block's last sample. The format stores
it to 1/32768 s. actipy ignores the fractional field and reads the whole second at
``timestampOffset``, converted at the nominal rate, so through actipy the sample times come
back within about one sample period of ``time`` (at 100 Hz: -11 ms to 0, and up to +15 ms in
the first block).

Values. The packed format (the AX3 default) stores 10-bit mantissas in 1/256 g with a 2-bit
exponent per sample; the writer takes the smallest exponent that fits all three axes, so the
error is at most half of 2**exponent / 256 g (1/512 g below 2 g). The 16-bit format stores
1/256 g. The sensor range is +-8 g; the generator saturates there, as the sensor does.
"""

from __future__ import annotations

import logging
import math
import time as wallclock
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from gzip import GzipFile
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

ACTIVITIES = ("nonwear", "sleep", "sedentary", "walking", "vigorous")
"""Names of the activity codes in ``SyntheticRecording.activity`` (code = index)."""
NONWEAR, SLEEP, SEDENTARY, WALKING, VIGOROUS = range(len(ACTIVITIES))

RANGE_G = 8.0
"""Sensor range (+-g): the AX3 default, and the range written into the rate code."""

RATE_HZ = 100.0
"""Nominal sample rate of the synthetic participants, as in UK Biobank."""

CHUNK_SAMPLES = 360_000
"""Samples generated and written at a time: whole blocks of both packings (120 and 80)."""

DAY_S = 86_400.0
_SECOND_TICKS = 32_768  # the CWA fraction of a second has 15 bits
_CWA_EPOCH_YEAR = 2000  # the packed date holds 6 bits of years since 2000
_BLOCK_BYTES = 512
_PAYLOAD_BYTES = 480
_SAMPLES_PER_BLOCK = {True: 120, False: 80}  # packed 32-bit samples, or 3 x 16 bits
_AXES_PACKING = {True: 0x30, False: 0x32}  # numAxesBPS: 3 axes, packing 0 or 2
_COUNTS_PER_G = 256  # AX3 unit 1/256 g
_MANTISSA_MIN, _MANTISSA_MAX = -512, 511

_HEADER = np.dtype(
    [
        ("marker", "S2"),
        ("length", "<u2"),
        ("hardware_type", "u1"),
        ("device_id", "<u2"),
        ("session_id", "<u4"),
        ("upper_device_id", "<u2"),
        ("logging_start", "<u4"),
        ("logging_end", "<u4"),
        ("logging_capacity", "<u4"),
        ("reserved1", "V1"),
        ("flash_led", "u1"),
        ("reserved2", "V8"),
        ("sensor_config", "u1"),
        ("rate_code", "u1"),
        ("last_change", "<u4"),
        ("firmware", "u1"),
        ("time_zone", "<i2"),
        ("reserved3", "V20"),
        ("annotation", "S448"),
        ("device_metadata", "V512"),
    ]
)
_DATA_BLOCK = np.dtype(
    [
        ("marker", "S2"),
        ("length", "<u2"),
        ("device_fractional", "<u2"),
        ("session_id", "<u4"),
        ("sequence_id", "<u4"),
        ("timestamp", "<u4"),
        ("light", "<u2"),
        ("temperature", "<u2"),
        ("events", "u1"),
        ("battery", "u1"),
        ("rate_code", "u1"),
        ("axes_packing", "u1"),
        ("timestamp_offset", "<i2"),
        ("sample_count", "<u2"),
        ("samples", f"V{_PAYLOAD_BYTES}"),
        ("checksum", "<u2"),
    ]
)
assert _HEADER.itemsize == 2 * _BLOCK_BYTES and _DATA_BLOCK.itemsize == _BLOCK_BYTES


@dataclass(frozen=True)
class SyntheticRecording:
    """One participant's signal as the generator meant it, before the file's quantisation."""

    start: np.datetime64
    """Device-clock time of the first sample: naive local time, ``datetime64[ns]``."""
    rate: float
    """Nominal sample rate, Hz (the file's rate code)."""
    time: np.ndarray
    """(N,) float64: seconds from ``start`` of each sample on the device clock."""
    xyz: np.ndarray
    """(N, 3) float32: acceleration in g."""
    activity: np.ndarray
    """(N,) int8: code of each sample's activity, an index into ``ACTIVITIES``."""
    nonwear: np.ndarray
    """(K, 2) float64: [start, end) of each non-wear episode, seconds from ``start``."""

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(time, xyz, activity) views of ``CHUNK_SAMPLES`` samples each."""
        for first in range(0, len(self.time), CHUNK_SAMPLES):
            window = slice(first, first + CHUNK_SAMPLES)
            yield self.time[window], self.xyz[window], self.activity[window]


# --------------------------------------------------------------------------- participants


@dataclass(frozen=True)
class _Participant:
    """What stays fixed for one person and one device over the recording."""

    seed: int
    start: np.datetime64
    true_rate: float  # mean sample rate on the device clock
    wander_s: float  # amplitude of the daily wander of sample times
    wander_phase: float
    noise_g: float
    gain: np.ndarray  # (3,) per-axis sensitivity error of the device
    offset_g: np.ndarray  # (3,) per-axis zero-g offset
    bedtime_h: float  # usual hour of going to bed (may pass 24)
    sleep_h: float  # usual sleep length
    activity_level: float  # scales how often walking and vigorous bouts happen
    n_samples: int


def _draw_participant(
    rng: np.random.Generator, seed: int, days: float, rate: float, rate_offset: float | None
) -> _Participant:
    first_day = np.datetime64("2014-01-01") + np.timedelta64(int(rng.integers(0, 730)), "D")
    start_of_day_us = int(rng.uniform(10, 15) * 3600e6)  # microsecond resolution
    start = (first_day + np.timedelta64(start_of_day_us, "us")).astype("datetime64[ns]")
    if rate_offset is None:
        rate_offset = float(np.clip(rng.normal(-0.012, 0.003), -0.02, 0.0))
    true_rate = rate * (1 + rate_offset)
    wander_ppm = rng.uniform(30, 150)
    return _Participant(
        seed=seed,
        start=start,
        true_rate=true_rate,
        wander_s=wander_ppm * 1e-6 * DAY_S / (2 * math.pi),
        wander_phase=rng.uniform(0, 2 * math.pi),
        noise_g=rng.uniform(0.0025, 0.0045),
        gain=1 + rng.uniform(-0.015, 0.015, 3),
        offset_g=rng.uniform(-0.02, 0.02, 3),
        bedtime_h=rng.uniform(22.0, 24.0),
        sleep_h=rng.uniform(6.5, 8.5),
        activity_level=rng.uniform(0.5, 1.5),
        n_samples=round(days * DAY_S * true_rate),
    )


# --------------------------------------------------------------------------- the day plan


@dataclass(frozen=True)
class _Habit:
    """How a still activity is broken up by movements."""

    gap_s: tuple[float, float]  # quiet time between two movements
    change_probability: float  # a movement changes posture, otherwise it is a fidget in place
    max_still_s: float  # a posture change is forced after this long without one
    change_g: tuple[float, float]  # burst amplitude of a posture change
    fidget_g: tuple[float, float]
    min_turn_deg: float  # smallest orientation change of a posture change


_HABITS = {
    SLEEP: _Habit((120, 1500), 0.35, 45 * 60, (0.05, 0.2), (0.01, 0.04), 30),
    SEDENTARY: _Habit((20, 300), 0.15, 20 * 60, (0.1, 0.3), (0.02, 0.12), 20),
}

# Typical gravity direction in the device frame (x along the forearm) and its spread.
_POSTURE = {
    SEDENTARY: (np.array([0.3, 0.0, -0.95]), 0.5),
    WALKING: (np.array([-0.95, 0.1, 0.2]), 0.2),
    VIGOROUS: (np.array([-0.9, 0.2, 0.3]), 0.3),
}
_VIGOROUS_JITTER_G = 0.08  # broadband shaking on top of the rhythm in vigorous activity
_IRWIN_HALL_SD = math.sqrt(4 * (0x10000**2 - 1) / 12)  # of the sum of four 16-bit uniforms
_MARGIN_S = 6.0  # movements end this long before their activity does
_MIN_BOUT_S = 45.0


@dataclass(frozen=True)
class _RecordingPlan:
    """The recording as activity segments and movement events, in device-clock seconds.

    Event 0 sets the initial posture before the recording starts. Each later event is a
    burst of movement during which the posture turns smoothly from the previous event's to its
    own (identical for a fidget in place). Events never overlap.
    """

    segment_start: np.ndarray  # (S,) sorted, first 0
    segment_activity: np.ndarray  # (S,) int8
    cadence_hz: np.ndarray  # (S,) step frequency, 0 for non-rhythmic activities
    step_g: np.ndarray  # (S,)
    swing_g: np.ndarray  # (S,)
    rhythm_phase: np.ndarray  # (S, 3)
    event_time: np.ndarray  # (E,)
    event_duration: np.ndarray  # (E,)
    event_g: np.ndarray  # (E,) burst amplitude
    event_hz: np.ndarray  # (E,)
    event_phase: np.ndarray  # (E, 3)
    posture: np.ndarray  # (E, 3) unit gravity direction reached at the end of each event
    nonwear: np.ndarray  # (K, 2)


def _draw_plan(rng: np.random.Generator, participant: _Participant, duration_s: float) -> _RecordingPlan:
    periods = _day_periods(rng, participant, duration_s)
    segments = _segments(rng, periods, participant.activity_level)
    starts = np.array([start for start, _ in segments])
    activities = np.array([activity for _, activity in segments], dtype=np.int8)
    ends = np.append(starts[1:], duration_s)
    events = _events(rng, starts, ends, activities)
    rhythm = _rhythms(rng, activities)
    is_nonwear = activities == NONWEAR
    return _RecordingPlan(
        segment_start=starts,
        segment_activity=activities,
        **rhythm,
        **events,
        nonwear=np.column_stack([starts[is_nonwear], ends[is_nonwear]]).reshape(-1, 2),
    )


def _day_periods(
    rng: np.random.Generator, participant: _Participant, duration_s: float
) -> list[tuple[float, float, int | None]]:
    """Sleep, non-wear and awake periods (activity None) covering [0, duration_s)."""
    start_of_day_s = (participant.start - participant.start.astype("datetime64[D]")) / np.timedelta64(1, "s")
    periods: list[tuple[float, float, int | None]] = []
    awake_from = 0.0
    for day in range(math.ceil(duration_s / DAY_S) + 1):
        bedtime_h = participant.bedtime_h + rng.normal(0, 0.5)
        sleep_h = float(np.clip(participant.sleep_h + rng.normal(0, 0.5), 4.5, 10))
        bed = day * DAY_S + bedtime_h * 3600 - start_of_day_s
        wake = bed + sleep_h * 3600
        if bed >= duration_s:
            break
        periods.append((awake_from, bed, None))
        periods.append((bed, min(wake, duration_s), SLEEP))
        awake_from = wake
    if awake_from < duration_s:
        periods.append((awake_from, duration_s, None))
    return _with_nonwear(rng, periods)


def _with_nonwear(
    rng: np.random.Generator, periods: list[tuple[float, float, int | None]]
) -> list[tuple[float, float, int | None]]:
    """Take the device off once or twice, each time for 2-4 h inside a different awake period."""
    margin_s = 1800.0
    wanted = int(rng.integers(1, 3))
    lengths = rng.uniform(2, 4, wanted) * 3600
    candidates = [i for i, (a, b, activity) in enumerate(periods) if activity is None]
    rng.shuffle(candidates)
    chosen: dict[int, tuple[float, float]] = {}
    for length in lengths:
        for i in candidates:
            a, b, _ = periods[i]
            if i not in chosen and b - a >= length + 2 * margin_s:
                off = rng.uniform(a + margin_s, b - margin_s - length)
                chosen[i] = (off, off + length)
                break
    result: list[tuple[float, float, int | None]] = []
    for i, (a, b, activity) in enumerate(periods):
        if i in chosen:
            off, on = chosen[i]
            result += [(a, off, None), (off, on, NONWEAR), (on, b, None)]
        else:
            result.append((a, b, activity))
    return result


def _segments(
    rng: np.random.Generator, periods: list[tuple[float, float, int | None]], level: float
) -> list[tuple[float, int]]:
    segments: list[tuple[float, int]] = []
    for a, b, activity in periods:
        if b <= a:
            continue
        if activity is None:
            segments += _awake_bouts(rng, a, b, level)
        else:
            segments.append((a, activity))
    return segments


def _awake_bouts(rng: np.random.Generator, a: float, b: float, level: float) -> list[tuple[float, int]]:
    """Sitting, walking and vigorous bouts filling [a, b)."""
    p_walk, p_vigorous = 0.45 * level, 0.03 * level
    bouts: list[tuple[float, int]] = []
    t = a
    while t < b:
        chances = [1 - p_walk - p_vigorous, p_walk, p_vigorous]
        activity = int(rng.choice([SEDENTARY, WALKING, VIGOROUS], p=chances))
        if bouts and activity == bouts[-1][1] != SEDENTARY:
            activity = SEDENTARY
        if activity == SEDENTARY:
            length = float(np.clip(rng.lognormal(math.log(20 * 60), 0.6), 3 * 60, 90 * 60))
        elif activity == WALKING:
            length = float(np.clip(rng.lognormal(math.log(3 * 60), 0.8), _MIN_BOUT_S, 20 * 60))
        else:
            length = rng.uniform(5, 30) * 60
        if b - (t + length) < _MIN_BOUT_S:
            length = b - t
        bouts.append((t, activity))
        t += length
    return bouts


def _rhythms(rng: np.random.Generator, activities: np.ndarray) -> dict[str, np.ndarray]:
    """Step frequency and amplitudes of each walking and vigorous segment."""
    n = len(activities)
    walking, vigorous = activities == WALKING, activities == VIGOROUS
    cadence = np.where(walking, np.clip(rng.normal(1.8, 0.06, n), 1.65, 1.95), 0.0)
    cadence = np.where(vigorous, rng.uniform(2.5, 2.9, n), cadence)
    step = np.select([walking, vigorous], [rng.uniform(0.15, 0.35, n), rng.uniform(0.8, 2.4, n)], 0.0)
    swing = np.select([walking, vigorous], [rng.uniform(0.05, 0.15, n), rng.uniform(0.3, 0.6, n)], 0.0)
    return {
        "cadence_hz": cadence,
        "step_g": step,
        "swing_g": swing,
        "rhythm_phase": rng.uniform(0, 2 * math.pi, (n, 3)),
    }


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _draw_posture(
    rng: np.random.Generator, activity: int, previous: np.ndarray, min_turn_deg: float
) -> np.ndarray:
    """A gravity direction typical of ``activity``, at least ``min_turn_deg`` from ``previous``."""
    while True:
        if activity == SLEEP:
            posture = _unit(rng.standard_normal(3))  # lying: the wrist can point anywhere
        elif activity == NONWEAR:
            posture = _unit(np.array([0.0, 0.0, rng.choice([-1.0, 1.0])]) + 0.03 * rng.standard_normal(3))
        else:
            typical, spread = _POSTURE[activity]
            posture = _unit(typical + spread * rng.standard_normal(3))
        if np.degrees(np.arccos(np.clip(posture @ previous, -1, 1))) >= min_turn_deg:
            return posture


class _EventList:
    """Movement events as they are drawn, in time order."""

    def __init__(self, posture: np.ndarray):
        self.rows: list[tuple[float, float, float, float]] = [(-1.0, 1.0, 0.0, 1.0)]
        self.postures = [posture]

    @property
    def posture(self) -> np.ndarray:
        return self.postures[-1]

    def add(self, time: float, duration: float, amplitude_g: float, hz: float, posture: np.ndarray) -> None:
        self.rows.append((time, duration, amplitude_g, hz))
        self.postures.append(posture)


def _events(
    rng: np.random.Generator, starts: np.ndarray, ends: np.ndarray, activities: np.ndarray
) -> dict[str, np.ndarray]:
    events = _EventList(_draw_posture(rng, int(activities[0]), np.array([0.0, 0.0, 1.0]), 0))
    for i, (start, end, activity) in enumerate(zip(starts, ends, activities.tolist())):
        if activity != NONWEAR and i > 0:
            posture = _draw_posture(rng, activity, events.posture, 20)
            events.add(start, rng.uniform(1.5, 4), rng.uniform(0.1, 0.3), rng.uniform(0.5, 2), posture)
        if activity in _HABITS:
            _still_movements(rng, events, start, end, activity)
        if i + 1 < len(activities) and activities[i + 1] == NONWEAR:
            take_off_s = rng.uniform(2, 5)
            posture = _draw_posture(rng, NONWEAR, events.posture, 0)
            events.add(end - take_off_s, take_off_s, rng.uniform(0.15, 0.3), rng.uniform(0.5, 2), posture)
    time, duration, amplitude, hz = np.array(events.rows).T
    return {
        "event_time": time,
        "event_duration": duration,
        "event_g": amplitude,
        "event_hz": hz,
        "event_phase": rng.uniform(0, 2 * math.pi, (len(time), 3)),
        "posture": np.array(events.postures),
    }


def _still_movements(
    rng: np.random.Generator, events: _EventList, start: float, end: float, activity: int
) -> None:
    """Fidgets and posture changes inside one sleep or sitting segment."""
    habit = _HABITS[activity]
    t = events.rows[-1][0] + events.rows[-1][1] if events.rows[-1][0] >= start else start
    last_change = t
    while True:
        t += rng.uniform(*habit.gap_s)
        duration = rng.uniform(1.5, 5)
        if t + duration > end - _MARGIN_S:
            return
        if t - last_change > habit.max_still_s or rng.random() < habit.change_probability:
            posture = _draw_posture(rng, activity, events.posture, habit.min_turn_deg)
            events.add(t, duration, rng.uniform(*habit.change_g), rng.uniform(0.3, 1.5), posture)
            last_change = t
        else:
            events.add(t, duration, rng.uniform(*habit.fidget_g), rng.uniform(0.5, 3), events.posture)
        t += duration


# --------------------------------------------------------------------------- rendering


class _Generator:
    """Renders a participant's signal chunk by chunk; the same chunk always comes out the same."""

    def __init__(self, days: float, seed: int, rate: float, rate_offset: float | None):
        if not days > 0:
            raise ValueError(f"days must be positive, got {days}")
        _rate_code(rate)  # reject rates that have no CWA rate code before any work
        rng = np.random.default_rng([seed, 0])
        self.participant = _draw_participant(rng, seed, days, rate, rate_offset)
        self.plan = _draw_plan(rng, self.participant, days * DAY_S)

    def sample_time(self, index: int) -> float:
        """Device-clock seconds of sample ``index``: the mean rate plus a smooth daily wander."""
        participant = self.participant
        mean_time = index / participant.true_rate
        angle = 2 * math.pi * mean_time / DAY_S + participant.wander_phase
        return mean_time + participant.wander_s * (math.sin(angle) - math.sin(participant.wander_phase))

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for k, first in enumerate(range(0, self.participant.n_samples, CHUNK_SAMPLES)):
            yield self.render(k, first, min(CHUNK_SAMPLES, self.participant.n_samples - first))

    def render(self, k: int, first: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples [first, first + count) of chunk ``k``: (time, xyz, activity)."""
        participant, plan = self.participant, self.plan
        noise_bits = np.random.SFC64([participant.seed, 1, k]).random_raw((count, 3)).view(np.int64)
        time = np.empty(count, np.float64)
        xyz = np.empty((count, 3), np.float32)
        activity = np.empty(count, np.int8)
        _render(
            first,
            participant.true_rate,
            participant.wander_s,
            participant.wander_phase,
            plan.segment_start,
            plan.segment_activity,
            plan.cadence_hz,
            plan.step_g,
            plan.swing_g,
            plan.rhythm_phase,
            plan.event_time,
            plan.event_duration,
            plan.event_g,
            plan.event_hz,
            plan.event_phase,
            plan.posture,
            participant.gain,
            participant.offset_g,
            participant.noise_g,
            noise_bits,
            time,
            xyz,
            activity,
        )
        return time, xyz, activity


@njit(cache=True, nogil=True)
def _render(
    first, true_rate, wander_s, wander_phase,
    segment_start, segment_activity, cadence_hz, step_g, swing_g, rhythm_phase,
    event_time, event_duration, event_g, event_hz, event_phase, posture,
    gain, offset_g, noise_g, noise_bits, time, xyz, activity,
):  # fmt: skip
    """Fill ``time``, ``xyz`` and ``activity``; ``noise_bits`` (n, 3) holds 64 random bits a value.

    Time is ``_Generator.sample_time`` with its sine advanced by a rotation per sample: equal
    to ~1e-11 s over a chunk, at half the cost of a sine call per sample. Per sample: the
    posture of the current event (turning smoothly from the previous one while the event lasts,
    with a burst of movement on top), steps along gravity and arm swing along y in rhythmic
    segments, then the device's gain and offset, sensor noise and saturation.
    """
    turn = 2 * math.pi / (true_rate * DAY_S)
    turn_sin, turn_cos = math.sin(turn), math.cos(turn)
    sine, cosine = math.sin(turn * first + wander_phase), math.cos(turn * first + wander_phase)
    origin = math.sin(wander_phase)
    segment = 0
    event = 0
    for i in range(time.shape[0]):
        t = (first + i) / true_rate + wander_s * (sine - origin)
        sine, cosine = sine * turn_cos + cosine * turn_sin, cosine * turn_cos - sine * turn_sin
        time[i] = t
        while segment + 1 < segment_start.shape[0] and segment_start[segment + 1] <= t:
            segment += 1
        while event + 1 < event_time.shape[0] and event_time[event + 1] <= t:
            event += 1
        gx, gy, gz = posture[event, 0], posture[event, 1], posture[event, 2]
        progress = (t - event_time[event]) / event_duration[event]
        if progress < 1.0:
            weight = progress * progress * (3 - 2 * progress)  # smoothstep: no jerk at either end
            gx = (1 - weight) * posture[event - 1, 0] + weight * gx
            gy = (1 - weight) * posture[event - 1, 1] + weight * gy
            gz = (1 - weight) * posture[event - 1, 2] + weight * gz
            norm = math.sqrt(gx * gx + gy * gy + gz * gz)
            envelope = event_g[event] * math.sin(math.pi * progress)
            angle = 2 * math.pi * event_hz[event] * t
            gx = gx / norm + envelope * math.sin(angle + event_phase[event, 0])
            gy = gy / norm + envelope * math.sin(angle + event_phase[event, 1])
            gz = gz / norm + envelope * math.sin(angle + event_phase[event, 2])
        if cadence_hz[segment] > 0:
            cycle = 2 * math.pi * cadence_hz[segment] * t
            phase = rhythm_phase[segment]
            step = step_g[segment] * (math.sin(cycle + phase[0]) + 0.3 * math.sin(2 * cycle + phase[1]))
            swing = swing_g[segment] * math.sin(cycle / 2 + phase[2])
            gx += step * gx
            gy += step * gy + swing
            gz += step * gz
        code = segment_activity[segment]
        sigma = _VIGOROUS_JITTER_G if code == VIGOROUS else noise_g
        x = gx * gain[0] + offset_g[0] + _unit_noise(noise_bits[i, 0]) * sigma
        y = gy * gain[1] + offset_g[1] + _unit_noise(noise_bits[i, 1]) * sigma
        z = gz * gain[2] + offset_g[2] + _unit_noise(noise_bits[i, 2]) * sigma
        xyz[i, 0] = min(max(x, -RANGE_G), RANGE_G)
        xyz[i, 1] = min(max(y, -RANGE_G), RANGE_G)
        xyz[i, 2] = min(max(z, -RANGE_G), RANGE_G)
        activity[i] = code


@njit(cache=True, nogil=True, inline="always")
def _unit_noise(bits):
    """About standard normal, from 64 random bits: four 16-bit uniforms summed (Irwin-Hall).

    A third of the cost of numpy's normals, which were most of the generator's time; the tails
    stop at 3.5 sigma, which sensor noise of a few milli-g quantised at 3.9 mg never shows.
    """
    total = (bits & 0xFFFF) + (bits >> 16 & 0xFFFF) + (bits >> 32 & 0xFFFF) + (bits >> 48 & 0xFFFF)
    return (total - 2 * 0xFFFF) / _IRWIN_HALL_SD


@njit(cache=True, nogil=True)
def _pack(xyz, words):
    """(n, 3) g -> words eezzzzzz zzzzyyyy yyyyyyxx xxxxxxxx, the smallest exponent that fits."""
    for i in range(xyz.shape[0]):
        x = min(max(xyz[i, 0], -RANGE_G), RANGE_G) * _COUNTS_PER_G
        y = min(max(xyz[i, 1], -RANGE_G), RANGE_G) * _COUNTS_PER_G
        z = min(max(xyz[i, 2], -RANGE_G), RANGE_G) * _COUNTS_PER_G
        for exponent in range(4):
            scale = 1.0 / (1 << exponent)
            mx, my, mz = np.rint(x * scale), np.rint(y * scale), np.rint(z * scale)
            highest, lowest = max(mx, my, mz), min(mx, my, mz)
            if highest <= _MANTISSA_MAX and lowest >= _MANTISSA_MIN:
                break
        words[i] = (
            (int(mx) & 0x3FF) | (int(my) & 0x3FF) << 10 | (int(mz) & 0x3FF) << 20 | exponent << 30
        )


# --------------------------------------------------------------------------- public generator


def synthesize_signal(
    days: float, seed: int, rate: float = RATE_HZ, rate_offset: float | None = None
) -> SyntheticRecording:
    """One participant's recording of ``days`` days (device clock), deterministic from ``seed``.

    ``rate_offset`` is the relative deviation of the true sample rate from ``rate`` on the
    device clock (real AX3s: about -0.012); None draws it for the participant.
    """
    generator = _Generator(days, seed, rate, rate_offset)
    n = generator.participant.n_samples
    time = np.empty(n, np.float64)
    xyz = np.empty((n, 3), np.float32)
    activity = np.empty(n, np.int8)
    for first, (chunk_time, chunk_xyz, chunk_activity) in zip(range(0, n, CHUNK_SAMPLES), generator.chunks()):
        window = slice(first, first + len(chunk_time))
        time[window], xyz[window], activity[window] = chunk_time, chunk_xyz, chunk_activity
    return SyntheticRecording(
        start=generator.participant.start,
        rate=rate,
        time=time,
        xyz=xyz,
        activity=activity,
        nonwear=generator.plan.nonwear,
    )


def synthesize(
    out_dir: str | Path, participants: int, days: float, seed: int = 0, gzip: bool = False, progress: bool = True
) -> list[Path]:
    """Write ``P001.cwa`` ... (``.cwa.gz`` with ``gzip``) into ``out_dir``; return their paths.

    Each participant's seed, device id and session id derive from ``seed``; the signal is
    generated and written an hour at a time, so memory stays flat for week-long files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".cwa.gz" if gzip else ".cwa"
    paths = []
    seeds = _participant_seeds(seed, participants)
    for number, participant_seed in enumerate(
        tqdm(seeds, desc="synthesize", unit="participant", disable=not progress or participants < 2), start=1
    ):
        path = out / f"P{number:03d}{suffix}"
        began = wallclock.perf_counter()
        generator = _Generator(days, participant_seed, RATE_HZ, None)
        device_id, session_id = _device_identity(participant_seed)
        end_s = generator.sample_time(generator.participant.n_samples - 1)
        chunks = generator.chunks()
        _write(path, generator.participant.start, RATE_HZ, end_s, chunks, device_id, session_id, True)
        log.info(
            "wrote %s: %d samples, device %d, %.1f s",
            path,
            generator.participant.n_samples,
            device_id,
            wallclock.perf_counter() - began,
        )
        paths.append(path)
    return paths


def _participant_seeds(seed: int, participants: int) -> list[int]:
    children = np.random.SeedSequence(seed).spawn(participants)
    return [int(child.generate_state(1, np.uint64)[0]) for child in children]


def _device_identity(participant_seed: int) -> tuple[int, int]:
    """An AX3-like 5-digit device id (fits the header's lower 16 bits) and a session id."""
    rng = np.random.default_rng([participant_seed, 2])
    return int(rng.integers(10_000, 65_536)), int(rng.integers(1, 2**31))


# --------------------------------------------------------------------------- CWA writer


def write_cwa(
    path: str | Path, recording: SyntheticRecording, device_id: int, session_id: int = 0, packed: bool = True
) -> None:
    """Write ``recording`` as an AX3 ``.cwa`` file (gzip-compressed when ``path`` ends in ``.gz``).

    ``packed`` selects the AX3's default 32-bit packed samples (120 per block); otherwise
    3 x 16-bit samples (80 per block). ``device_id`` may use 32 bits: the header keeps the
    upper word separately (actipy reports only the lower 16 bits).
    """
    if not len(recording.time):
        raise ValueError("recording has no samples")
    end_s = float(recording.time[-1])
    chunks = recording.chunks()
    _write(Path(path), recording.start, recording.rate, end_s, chunks, device_id, session_id, packed)


def _write(
    path: Path,
    start: np.datetime64,
    rate: float,
    end_s: float,
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    device_id: int,
    session_id: int,
    packed: bool,
) -> None:
    if not 0 <= device_id < 2**32 or not 0 <= session_id < 2**32:
        raise ValueError(f"device id {device_id} and session id {session_id} must fit in 32 bits")
    with _open_output(path) as out:
        out.write(_header(start, rate, end_s, device_id, session_id))
        sequence = 0
        for time, xyz, activity in chunks:
            blocks = _data_blocks(start, rate, time, xyz, activity, sequence, session_id, packed)
            out.write(blocks.data)
            sequence += len(blocks)


def _open_output(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        # mtime=0: the bytes depend on the content only (same seed, same file). Level 1: five
        # times faster than the default 6 (~6 s against ~30 s a week), 41 % of the size against 34 %.
        return GzipFile(path, "wb", compresslevel=1, mtime=0)  # type: ignore[return-value]
    return open(path, "wb")


def _rate_code(rate: float) -> int:
    """CWA rate code: frequency 3200 / 2**(15 - low nibble) Hz, range 16 >> (code >> 6) g."""
    frequency_bits = {3200 / 2**k: 15 - k for k in range(10)}.get(rate)
    if frequency_bits is None:
        raise ValueError(f"{rate} Hz is not an AX3 rate (3200 / 2**k Hz, 6.25-3200)")
    range_bits = {16: 0, 8: 1, 4: 2, 2: 3}[int(RANGE_G)]
    return range_bits << 6 | frequency_bits


def _cwa_datetimes(seconds: np.ndarray) -> np.ndarray:
    """Pack ``datetime64[s]`` values as CWA date-times: (MSB) YYYYYYMM MMDDDDDh hhhhmmmm mmssssss."""
    days = seconds.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    years = months.astype("datetime64[Y]")
    year = years.astype(np.int64) + 1970 - _CWA_EPOCH_YEAR
    if np.any((year < 0) | (year > 63)):
        raise ValueError("CWA time stamps cover the years 2000-2063")
    month = (months - years).astype(np.int64) + 1
    day = (days - months).astype(np.int64) + 1
    second_of_day = (seconds - days).astype(np.int64)
    hour, minute, second = second_of_day // 3600, second_of_day // 60 % 60, second_of_day % 60
    packed = year << 26 | month << 22 | day << 17 | hour << 12 | minute << 6 | second
    return packed.astype(np.uint32)


def _header(start: np.datetime64, rate: float, end_s: float, device_id: int, session_id: int) -> bytes:
    """The 1024-byte "MD" header, reserved bytes 0xFF as devices leave them."""
    raw = np.full(_HEADER.itemsize, 0xFF, np.uint8)
    header = raw.view(_HEADER)
    first_second = start.astype("datetime64[s]")
    last_second = first_second + np.timedelta64(math.ceil(end_s) + 1, "s")
    configured = first_second - np.timedelta64(2, "D")  # the device was set up two days before
    header["marker"] = b"MD"
    header["length"] = _HEADER.itemsize - 4
    header["hardware_type"] = 0x00  # AX3
    header["device_id"] = device_id & 0xFFFF
    header["session_id"] = session_id
    header["upper_device_id"] = device_id >> 16
    header["logging_start"], header["logging_end"], header["last_change"] = _cwa_datetimes(
        np.array([first_second, last_second, configured])
    )
    header["logging_capacity"] = 0
    header["flash_led"] = 0
    header["sensor_config"] = 0xFF  # accelerometer only
    header["rate_code"] = _rate_code(rate)
    header["firmware"] = 45
    header["time_zone"] = -1  # unknown
    header["annotation"] = b"_sc=accelstore-synthetic".ljust(448, b" ")
    return raw.tobytes()


def _data_blocks(
    start: np.datetime64,
    rate: float,
    time: np.ndarray,
    xyz: np.ndarray,
    activity: np.ndarray,
    first_sequence: int,
    session_id: int,
    packed: bool,
) -> np.ndarray:
    """All "AX" blocks of one chunk as an (n_blocks, 512) uint8 array; only the last may be partial."""
    per_block = _SAMPLES_PER_BLOCK[packed]
    n = len(time)
    n_blocks = -(-n // per_block)
    first = np.arange(n_blocks) * per_block
    counts = np.minimum(per_block, n - first)
    last = first + counts - 1
    raw = np.zeros((n_blocks, _BLOCK_BYTES), np.uint8)
    block = raw.view(_DATA_BLOCK)[:, 0]
    timestamp, fraction, offset = _block_timestamps(start, time[last], counts - 1, rate)
    sequence = first_sequence + np.arange(n_blocks)
    block["marker"] = b"AX"
    block["length"] = _BLOCK_BYTES - 4
    block["device_fractional"] = 0x8000 | fraction
    block["session_id"] = session_id
    block["sequence_id"] = sequence
    block["timestamp"] = timestamp
    block["light"] = _light(start, time[first], activity[first])
    block["temperature"] = _temperature(activity[first])
    block["events"] = sequence == 0  # b0: logging (re)started
    block["battery"] = np.clip(np.rint(205 - 10 * time[first] / DAY_S), 110, 205)
    block["rate_code"] = _rate_code(rate)
    block["axes_packing"] = _AXES_PACKING[packed]
    block["timestamp_offset"] = offset
    block["sample_count"] = counts
    if packed:
        words = np.zeros(n_blocks * per_block, np.uint32)
        _pack(xyz, words[:n])
        raw[:, 30:510].view("<u4")[:] = words.reshape(n_blocks, per_block)
    else:
        counts_16 = np.zeros((n_blocks * per_block, 3), np.int16)
        counts_16[:n] = np.rint(np.clip(xyz, -RANGE_G, RANGE_G) * _COUNTS_PER_G)
        raw[:, 30:510].view("<i2")[:] = counts_16.reshape(n_blocks, 3 * per_block)
    words16 = raw.view("<u2")
    total = words16[:, :-1].sum(axis=1, dtype=np.uint32)
    words16[:, -1] = (-total.astype(np.int64)) & 0xFFFF  # all 256 words sum to 0 mod 2**16
    return raw


def _block_timestamps(
    start: np.datetime64, reference_time: np.ndarray, reference_index: np.ndarray, rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed whole second, 15-bit fraction and timestampOffset of each block's reference sample.

    As the firmware does, the offset is reduced by the whole samples that the fraction spans,
    so readers that ignore the fraction still place the whole second near the right sample;
    readers that use it add ``(fraction * 2 * int(rate)) >> 16`` back (cwa.h).
    """
    midnight = start.astype("datetime64[D]")
    start_of_day_s = (start - midnight) / np.timedelta64(1, "s")
    ticks = np.rint((start_of_day_s + reference_time) * _SECOND_TICKS).astype(np.int64)
    whole = midnight.astype("datetime64[s]") + (ticks // _SECOND_TICKS).astype("timedelta64[s]")
    fraction = ticks % _SECOND_TICKS
    offset = reference_index - ((fraction << 1) * int(rate) >> 16)
    return _cwa_datetimes(whole), fraction, offset


def _light(start: np.datetime64, time: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """Raw 10-bit light: daylight from 06:00 to 21:00, dark while asleep."""
    start_hour = (start - start.astype("datetime64[D]")) / np.timedelta64(1, "h")
    hour = (start_hour + time / 3600) % 24
    daylight = np.clip(np.sin(np.pi * (hour - 6) / 15), 0, None)
    return np.where(activity == SLEEP, 30, np.rint(150 + 350 * daylight)).astype(np.uint16)


def _temperature(activity: np.ndarray) -> np.ndarray:
    """Raw temperature (deg C = raw * 75 / 256 - 50): skin when worn, room when not."""
    celsius = np.where(activity == NONWEAR, 22.0, 32.0)
    return np.rint((celsius + 50) * 256 / 75).astype(np.uint16)
