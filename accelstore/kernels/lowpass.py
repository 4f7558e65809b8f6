"""actipy's zero-phase low-pass (scipy's ``sosfiltfilt``, chunk by chunk), in place on float32 axes.

actipy filters 1M samples at a time, each chunk with 100 extra samples on either side, and keeps
only the chunk's own samples; per chunk and axis that is ``sosfiltfilt(sos, segment)``: odd
extension by ``padlen`` samples at each end (computed in float32, as scipy does on actipy's
float32 chunk), a forward pass from steady-state initial conditions, a backward pass over its
output, second-order sections in float64. Here that arithmetic is kept operation for operation,
so the result is scipy's to the bit. What makes it fast: chunks are filtered side by side, a
group of consecutive chunks of equal length putting its chunks' axes in the columns of one
float64 scratch. A section's recurrence waits on its own previous output; with a dozen
independent columns the CPU always has other work, and the column loop vectorises.

A sample with any axis NaN is filtered as 0 on all three axes and comes out NaN on all three.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def filtfilt_chunks(x, y, z, sos, zi, padlen, chunk, leeway, group):
    """Low-pass ``x``, ``y``, ``z`` (float32, (N,), N > padlen) in place, ``group`` chunks at a time.

    ``sos``: (S, 6) second-order sections; ``zi``: (S, 2) their steady-state initial conditions
    (``scipy.signal.sosfilt_zi``), scaled by each pass's first input. The leeway before a
    group's first chunk is kept aside, since the previous group has already been overwritten.
    """
    n = x.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    scratch = np.empty((min(chunk, n) + 2 * leeway + 2 * padlen) * 3 * group)
    p, q = np.empty((sos.shape[0], 3 * group)), np.empty((sos.shape[0], 3 * group))
    tail = np.empty((leeway, 3), dtype=np.float32)
    k = 0
    while k < n_chunks:
        length = _segment_length(k, n, chunk, leeway)
        members = 1
        while members < group and k + members < n_chunks and _segment_length(k + members, n, chunk, leeway) == length:
            members += 1
        rows, columns = length + 2 * padlen, 3 * members
        segments = scratch[: rows * columns].reshape((rows, columns))  # C-contiguous: the column loop vectorises
        starts = np.arange(k, k + members) * chunk
        leads = np.minimum(starts, leeway)
        for i in range(length):  # row by row, so that each scratch row is written whole at once
            for m in range(members):
                at = starts[m] - leads[m] + i
                _put_sample(segments, padlen + i, 3 * m, x[at], y[at], z[at])
        for i in range(leads[0]):  # before the group's first chunk: the samples kept aside
            at = leeway - leads[0] + i
            _put_sample(segments, padlen + i, 0, tail[at, 0], tail[at, 1], tail[at, 2])
        for column in range(columns):  # odd extension, in float32 as scipy's on actipy's float32 chunk
            first, last = np.float32(2 * segments[padlen, column]), np.float32(2 * segments[padlen + length - 1, column])
            for j in range(padlen):
                segments[j, column] = first - np.float32(segments[2 * padlen - j, column])
                segments[padlen + length + j, column] = last - np.float32(segments[padlen + length - 2 - j, column])
        _sosfilt_columns(segments, sos, zi, p, q, False)
        _sosfilt_columns(segments, sos, zi, p, q, True)
        group_stop = min(starts[-1] + chunk, n)
        if group_stop < n:
            for i in range(leeway):
                at = group_stop - leeway + i
                tail[i, 0], tail[i, 1], tail[i, 2] = x[at], y[at], z[at]
        for i in range(min(chunk, n - starts[0])):
            for m in range(members):
                at = starts[m] + i
                if at >= n:
                    break
                r, c = padlen + leads[m] + i, 3 * m
                if np.isnan(x[at]) or np.isnan(y[at]) or np.isnan(z[at]):
                    x[at] = y[at] = z[at] = np.nan
                else:
                    x[at], y[at], z[at] = segments[r, c], segments[r, c + 1], segments[r, c + 2]
        k += members


@njit(cache=True, nogil=True)
def _segment_length(k, n, chunk, leeway):
    """Samples in chunk ``k``'s segment: the chunk plus the leeway on either side that exists."""
    start = k * chunk
    return min(start + chunk + leeway, n) - (start - min(start, leeway))


@njit(cache=True, nogil=True, inline="always")
def _put_sample(segments, row, column, vx, vy, vz):
    """One sample's three axes into ``segments[row, column : column + 3]``; all 0 if any is NaN."""
    if np.isnan(vx) or np.isnan(vy) or np.isnan(vz):
        vx = vy = vz = np.float32(0.0)
    segments[row, column], segments[row, column + 1], segments[row, column + 2] = vx, vy, vz


@njit(cache=True, nogil=True)
def _sosfilt_columns(x, sos, zi, p, q, backwards):
    """scipy's ``sosfilt(sos, column, zi=zi * column[first])`` on each column of ``x`` (T, K), in place.

    Sample by sample, each sample through every section, all columns at once: per column the
    same arithmetic in the same order as scipy's. ``p``, ``q``: (sections, K), the sections' states.
    """
    n, columns = x.shape
    begin = n - 1 if backwards else 0
    for s in range(sos.shape[0]):
        for c in range(columns):
            p[s, c] = zi[s, 0] * x[begin, c]
            q[s, c] = zi[s, 1] * x[begin, c]
    for step in range(n):
        row = x[n - 1 - step if backwards else step]
        for s in range(sos.shape[0]):
            b0, b1, b2, a1, a2 = sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]
            ps, qs = p[s], q[s]
            for c in range(columns):
                v = row[c]
                out = b0 * v + ps[c]
                ps[c] = b1 * v - a1 * out + qs[c]
                qs[c] = b2 * v - a2 * out
                row[c] = out
