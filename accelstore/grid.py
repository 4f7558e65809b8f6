"""The store's fixed grid and the values that mark what is absent — the one definition every layer imports.

Every recording is resampled to ``SAMPLE_RATE`` Hz and cut into windows of ``WINDOW_SECONDS``:
window ``w`` of a participant starts ``w × WINDOW_SECONDS`` after its ``day0`` (midnight of the
first recorded day, device clock), so a window's time is never stored (docs/architecture.md,
"The store's rules"). Acceleration is held as int16 milli-g; ``ACC_FILL`` fills every sample of
a window that is not valid, so one value tells absent from recorded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ACC_FILL", "AXES", "MAX_MILLI_G", "NO_LABEL", "SAMPLE_RATE", "SECONDS_PER_DAY", "WINDOWS_PER_DAY", "WINDOW_SAMPLES", "WINDOW_SECONDS", "window_ids"]

SAMPLE_RATE = 30
"""Samples per second on the grid (Hz), as in the published models."""
WINDOW_SECONDS = 10
"""Length of one window, seconds."""
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
SECONDS_PER_DAY = 86_400
WINDOWS_PER_DAY = SECONDS_PER_DAY // WINDOW_SECONDS
AXES = ("x", "y", "z")
ACC_FILL = np.int16(-32768)
"""Fills every sample of a window that is not valid (never a recorded value: see ``MAX_MILLI_G``)."""
MAX_MILLI_G = 32767.0
"""The largest magnitude stored, in milli-g (−32768 is ``ACC_FILL``)."""
NO_LABEL = -1
"""The class code of a window (or sample) no annotation covers; classes are 0, 1, …"""


def window_ids(rows: np.ndarray | int, windows: np.ndarray, offsets: np.ndarray | int = 0) -> np.ndarray:
    """Each window's id in the store, for the random streams of the pretext and augmentation
    kernels: ``row × 2**32 + 2 × window + half``, where ``half`` (from the sample ``offsets``
    into the window) tells the two 5-s halves of a 10-s window apart.

    Unique in the store and independent of which task or batch a window is transformed in, so
    a window gets the same transforms in the validation set and in any loader.
    """
    half = np.asarray(offsets, np.int64) // (WINDOW_SAMPLES // 2)
    return (np.asarray(rows, np.int64) << 32) + 2 * np.asarray(windows, np.int64) + half
