"""Augmentation of tri-axial windows (not a pretext task): random axis order and 3-D rotation.

Randomness comes from the same per-window keyed streams as the pretext kernels (see
``pretext.py``), on a stream of its own. Unlike the ssl-wearables code, which picks among seven
axis orders (two of them the identity) and rotates by three angles about the coordinate axes in
turn, this draws one of the six orders and one axis-angle rotation.
"""

from collections.abc import Sequence

import numpy as np
from numba import njit

from accelstore.kernels.pretext_transforms import (
    AUGMENT_STREAM,
    check_batch,
    decode_permutation,
    output_for,
    seed_key,
    stream_key,
    uniform,
    window_ids_for,
)

N_AXIS_ORDERS = 6


@njit(cache=True, nogil=True)
def _rotation_matrix(key, counter, matrix):
    """Fill ``matrix`` with a rotation about an axis uniform on the sphere by an angle uniform
    in [-pi, pi] (Rodrigues' formula), from draws ``counter`` to ``counter + 2``."""
    z = 2.0 * uniform(key, counter) - 1.0
    azimuth = 2.0 * np.pi * uniform(key, counter + 1)
    angle = np.pi * (2.0 * uniform(key, counter + 2) - 1.0)
    radius = np.sqrt(max(1.0 - z * z, 0.0))
    axis = (radius * np.cos(azimuth), radius * np.sin(azimuth), z)
    cos, sin = np.cos(angle), np.sin(angle)
    for r in range(3):
        for c in range(3):
            matrix[r, c] = (1.0 - cos) * axis[r] * axis[c] + (cos if r == c else 0.0)
    matrix[0, 1] -= sin * axis[2]
    matrix[1, 0] += sin * axis[2]
    matrix[0, 2] += sin * axis[1]
    matrix[2, 0] -= sin * axis[1]
    matrix[1, 2] -= sin * axis[0]
    matrix[2, 1] += sin * axis[0]


@njit(cache=True, nogil=True)
def augment_windows(x, out, seed, window_ids, axis_order, rotation):
    """Write to ``out[b]`` window ``x[b]`` with its axes reordered (one of the 6 orders, if
    ``axis_order``) and then rotated (if ``rotation``). ``out`` may be ``x``."""
    n = x.shape[2]
    window = np.empty((3, n), np.float32)
    order = np.empty(3, np.int64)
    matrix = np.empty((3, 3))
    for b in range(x.shape[0]):
        key = stream_key(seed, window_ids[b], AUGMENT_STREAM)
        decode_permutation(int(uniform(key, 0) * N_AXIS_ORDERS) if axis_order else 0, order)
        for c in range(3):
            window[c] = x[b, order[c]]
        if not rotation:
            out[b] = window
            continue
        _rotation_matrix(key, 1, matrix)
        for t in range(n):
            for r in range(3):
                out[b, r, t] = (
                    matrix[r, 0] * window[0, t]
                    + matrix[r, 1] * window[1, t]
                    + matrix[r, 2] * window[2, t]
                )


def augment(
    x: np.ndarray,
    seed: int,
    axis_order: bool = True,
    rotation: bool = True,
    *,
    window_ids: Sequence[int] | np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Randomly reorder the axes and then rotate each window of a float32 batch (B, 3, T).

    Returns ``out`` (a new array by default; ``x`` is left untouched unless ``out is x``). A
    window's result depends only on its data, ``seed`` and its id (``window_ids``, by default
    its position in the batch).
    """
    check_batch(x)
    result = output_for(x, out)
    ids = window_ids_for(window_ids, x.shape[0])
    augment_windows(x, result, seed_key(seed), ids, bool(axis_order), bool(rotation))
    return result
