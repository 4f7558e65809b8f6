"""Window labels from per-sample annotation codes."""

from __future__ import annotations

import numpy as np
from numba import njit

from accelstore.grid import NO_LABEL, WINDOW_SECONDS


@njit(cache=True, nogil=True)
def window_labels(time_ns, day0_ns, codes, n_classes, first_window, n_windows, samples_per_window):
    """The class covering at least half of each window, else ``NO_LABEL``.

    Coverage is counted in samples: a class covers half a window when at least
    ``samples_per_window / 2`` of the window's samples carry its code (``codes`` < 0: none).
    """
    labels = np.full(n_windows, NO_LABEL, dtype=np.int16)
    counts = np.zeros(max(n_classes, 1), dtype=np.int64)
    window_ns = np.int64(WINDOW_SECONDS) * 1_000_000_000
    start_ns = day0_ns + np.int64(first_window) * window_ns
    n = time_ns.shape[0]
    j = np.searchsorted(time_ns, start_ns)
    for w in range(n_windows):
        end_ns = start_ns + (w + 1) * window_ns
        counts[:] = 0
        while j < n and time_ns[j] < end_ns:
            if codes[j] >= 0:
                counts[codes[j]] += 1
            j += 1
        best = np.argmax(counts)
        if 2 * counts[best] >= samples_per_window and counts[best] > 0:
            labels[w] = best
    return labels


def warm_up() -> None:
    """Compile (or load from Numba's cache) the kernel for writeable and read-only times."""
    time_ns = np.arange(0, 20_000_000_000, 100_000_000, dtype=np.int64)
    for writeable in (True, False):
        time_ns.flags.writeable = writeable
        window_labels(time_ns, np.int64(0), np.zeros(time_ns.size, np.int16), 1, 0, 2, 100)
