"""Pretext transforms and augmentation: accelstore's Numba kernels vs a per-window NumPy/SciPy
implementation of the same semantics, single-threaded, windows per second per core.

Every transform is forced (p = 1) so both sides do the same work on every window.
Run: python bench/pretext.py [--batch 512] [--repeats 5]
"""

import os

for _threads in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_threads] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import cumulative_trapezoid  # noqa: E402
from scipy.interpolate import CubicSpline  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from accelstore.kernels.augment import augment  # noqa: E402
from accelstore.kernels.pretext_transforms import (  # noqa: E402
    KNOT_SIGMA,
    MIN_SEGMENT_LENGTH,
    MIN_SPEED,
    N_KNOTS,
    N_SEGMENTS,
    SCALE_MAX_CHANGE,
    SCALE_MIN_CHANGE,
    TASKS,
    apply_pretext,
)

WINDOW_LENGTH = 300


# --- the baseline: one window (3, T) at a time -------------------------------------------------


def reverse_baseline(window, rng):
    return np.flip(window, axis=1).copy()


def scale_baseline(window, rng):
    change = rng.uniform(SCALE_MIN_CHANGE, SCALE_MAX_CHANGE, size=3)
    factors = np.where(rng.random(3) < 0.5, 1.0 + change, 1.0 - change)
    return (window * factors[:, None]).astype(np.float32)


def permute_baseline(window, rng):
    n = window.shape[1]
    slack = n - N_SEGMENTS * MIN_SEGMENT_LENGTH
    cuts = np.sort(rng.integers(0, slack + 1, N_SEGMENTS - 1))
    cuts += MIN_SEGMENT_LENGTH * np.arange(1, N_SEGMENTS)
    segments = np.split(window, cuts, axis=1)
    order = rng.permutation(N_SEGMENTS)
    while np.array_equal(order, np.arange(N_SEGMENTS)):
        order = rng.permutation(N_SEGMENTS)
    return np.concatenate([segments[k] for k in order], axis=1)


def time_warp_baseline(window, rng):
    n = window.shape[1]
    knot_times = np.linspace(0, n - 1, N_KNOTS)
    knot_values = rng.normal(1.0, KNOT_SIGMA, size=(N_KNOTS, 3))
    samples = np.arange(n)
    speed = np.maximum(CubicSpline(knot_times, knot_values, bc_type="natural")(samples), MIN_SPEED)
    times = cumulative_trapezoid(speed, axis=0, initial=0.0)
    times *= (n - 1) / times[-1]
    warped = [np.interp(samples, times[:, c], window[c]) for c in range(3)]
    return np.asarray(warped, dtype=np.float32)


def augment_baseline(window, rng):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    matrix = Rotation.from_rotvec(axis * rng.uniform(-np.pi, np.pi)).as_matrix()
    return (matrix @ window[rng.permutation(3)]).astype(np.float32)


BASELINES = {
    "aot": reverse_baseline,
    "scale": scale_baseline,
    "permute": permute_baseline,
    "time_warp": time_warp_baseline,
}


def baseline_batch(batch, steps, seed):
    rng = np.random.default_rng(seed)
    out = np.empty_like(batch)
    for b, window in enumerate(batch):
        for step in steps:
            window = step(window, rng)
        out[b] = window
    return out


# --- accelstore --------------------------------------------------------------------------------


def accelstore_batch(batch, tasks, with_augment, seed):
    out, _ = apply_pretext(batch, tasks, seed, p=1.0)
    return augment(out, seed, out=out) if with_augment else out


# --- timing ------------------------------------------------------------------------------------


def windows_per_second(run: Callable[[int], np.ndarray], n_windows: int, repeats: int) -> float:
    """Median throughput over ``repeats`` calls, after one warm-up call (compilation)."""
    run(0)
    seconds = []
    for repeat in range(1, repeats + 1):
        start = time.perf_counter()
        run(repeat)
        seconds.append(time.perf_counter() - start)
    return n_windows / float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch = np.random.default_rng(0).normal(size=(args.batch, 3, WINDOW_LENGTH))
    batch = batch.astype(np.float32)

    cases = [(name, [name], [BASELINES[name]], False) for name in TASKS]
    cases.append(("augment", [], [augment_baseline], True))
    everything = [*BASELINES.values(), augment_baseline]
    cases.append(("all four + augment", list(TASKS), everything, True))

    shape = f"({args.batch}, 3, {WINDOW_LENGTH})"
    print(f"windows/s per core, batch {shape} float32, every transform forced")
    print(f"{'transform':<20}{'accelstore':>14}{'baseline':>12}{'ratio':>9}")
    ratio = 0.0
    for label, tasks, steps, with_augment in cases:
        fast = windows_per_second(
            lambda s, tasks=tasks, with_augment=with_augment: accelstore_batch(batch, tasks, with_augment, s), args.batch, args.repeats
        )
        slow = windows_per_second(
            lambda s, steps=steps: baseline_batch(batch, steps, s), args.batch, args.repeats
        )
        ratio = fast / slow
        print(f"{label:<20}{fast:>14,.0f}{slow:>12,.0f}{ratio:>8.1f}x")
    print(f"ratio (accelstore / baseline windows/s): {ratio:.1f}x")  # the last case: everything


if __name__ == "__main__":
    main()
