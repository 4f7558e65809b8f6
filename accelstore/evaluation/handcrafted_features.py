"""The 22 hand-crafted window features of the random-forest baseline (docs/architecture.md, "Evaluation").

Per axis: mean, standard deviation, range (9); the correlations x–y, x–z, y–z (3); on the
vector magnitude m = ‖a‖: mean, standard deviation, range, median absolute deviation, skewness,
excess kurtosis, mean |m − 1| (7); from m's Welch spectrum: spectral entropy and the first and
second dominant frequencies (3).

The spectral features are those of the magnitude, as in the Capture-24 baseline: a movement
along the axis that carries gravity shows at its own frequency, while a sine on an axis
perpendicular to gravity is rectified by the magnitude and shows at twice its frequency.

Everything is vectorised over the batch. Statistics are taken of the samples minus the
window's first sample, so a constant window gives exact zeros (never NaN), and correlations,
skewness and kurtosis, undefined without variation, are 0 there.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from accelstore.grid import AXES, SAMPLE_RATE

WELCH_SEGMENT_S = 3  # 1/3-Hz resolution: 1, 2, 3 … Hz fall on bins
WELCH_OVERLAP_S = 2
PEAK_FLOOR = 1e-10  # a spectral peak below this fraction of the highest bin is rounding noise
BATCH_WINDOWS = 8192  # windows per vectorised step: ~60 MB of float64 at 300 samples

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{axis}_mean" for axis in AXES),
    *(f"{axis}_std" for axis in AXES),
    *(f"{axis}_range" for axis in AXES),
    "corr_xy", "corr_xz", "corr_yz",
    "m_mean", "m_std", "m_range", "m_mad", "m_skew", "m_kurtosis", "m_mean_abs_dev_1g",
    "spectral_entropy", "dominant_freq_1", "dominant_freq_2",
)


def hand_crafted_features(x: np.ndarray, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """(n, 3, T) acceleration in g → (n, 22) float32 features, columns as ``FEATURE_NAMES``."""
    if x.ndim != 3 or x.shape[1] != 3:
        raise ValueError(f"expected windows of shape (n, 3, T), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("windows contain NaN or infinite values; take valid windows only")
    out = np.empty((x.shape[0], len(FEATURE_NAMES)), np.float32)
    for first in range(0, x.shape[0], BATCH_WINDOWS):
        batch = x[first:first + BATCH_WINDOWS].astype(np.float64)
        out[first:first + BATCH_WINDOWS] = _features(batch, sample_rate)
    return out


def _features(x: np.ndarray, sample_rate: float) -> np.ndarray:
    axes = _Moments(x)
    magnitude = np.linalg.norm(x, axis=1)
    m = _Moments(magnitude)
    columns = [
        axes.mean, axes.std, np.ptp(x, axis=-1),
        _correlations(axes),
        m.mean, m.std, np.ptp(magnitude, axis=-1),
        np.median(np.abs(magnitude - np.median(magnitude, axis=-1, keepdims=True)), axis=-1),
        m.skewness(), m.kurtosis(),
        np.abs(magnitude - 1.0).mean(axis=-1),
        *_spectral(magnitude, sample_rate),
    ]
    return np.column_stack([c.reshape(x.shape[0], -1) for c in columns])


class _Moments:
    """Mean and central moments over the last axis, from deviations about the first sample."""

    def __init__(self, v: np.ndarray) -> None:
        shifted = v - v[..., :1]
        shifted_mean = shifted.mean(axis=-1, keepdims=True)
        self.deviations = shifted - shifted_mean
        self.mean = v[..., 0] + shifted_mean[..., 0]
        self.variance = np.mean(self.deviations**2, axis=-1)
        self.std = np.sqrt(self.variance)

    def skewness(self) -> np.ndarray:
        third = np.mean(self.deviations**3, axis=-1)
        return _ratio(third, self.variance**1.5)

    def kurtosis(self) -> np.ndarray:
        """Excess (Fisher) kurtosis: 0 for a normal distribution."""
        fourth = np.mean(self.deviations**4, axis=-1)
        return np.where(self.variance > 0, _ratio(fourth, self.variance**2) - 3.0, 0.0)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _correlations(axes: _Moments) -> np.ndarray:
    """Pearson correlations x–y, x–z, y–z: (n, 3), 0 where an axis does not vary."""
    pairs = ((0, 1), (0, 2), (1, 2))
    d = axes.deviations
    covariance = np.stack([np.mean(d[:, i] * d[:, j], axis=-1) for i, j in pairs], axis=1)
    scale = np.stack([axes.std[:, i] * axes.std[:, j] for i, j in pairs], axis=1)
    return np.clip(_ratio(covariance, scale), -1.0, 1.0)


def _spectral(magnitude: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral entropy (nats) of the magnitude's Welch spectrum (mean removed per segment,
    median over segments) and its two highest peaks' frequencies (Hz). A flat signal has
    entropy 0 and frequencies 0; with a single peak both frequencies are that peak's."""
    segment = min(magnitude.shape[-1], round(WELCH_SEGMENT_S * sample_rate))
    overlap = min(segment - 1, round(WELCH_OVERLAP_S * sample_rate))
    # Shifted by the first sample (the spectrum of a detrended segment does not change), so
    # that a flat signal gives exact zeros rather than rounding noise.
    freqs, power = signal.welch(magnitude - magnitude[:, :1], fs=sample_rate, nperseg=segment,
                                noverlap=overlap, detrend="constant", average="median", axis=-1)
    total = power.sum(axis=-1, keepdims=True)
    p = _ratio(power, np.broadcast_to(total, power.shape))
    entropy = np.sum(np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)

    inner = power[:, 1:-1]
    floor = PEAK_FLOOR * power.max(axis=-1, keepdims=True)
    is_peak = (inner > power[:, :-2]) & (inner >= power[:, 2:]) & (inner > floor)
    peak_power = np.where(is_peak, inner, -np.inf)
    ranked = np.argsort(-peak_power, axis=-1, kind="stable")[:, :2]
    n_peaks = is_peak.sum(axis=-1)
    first = np.where(n_peaks >= 1, freqs[1:-1][ranked[:, 0]], 0.0)
    second = np.where(n_peaks >= 2, freqs[1:-1][ranked[:, 1]], first)
    return entropy, first, second
