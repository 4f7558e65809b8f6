"""The activity plot: one row per day, minute-level ENMO over 24 h, non-wear shaded.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
that it neither needs a display nor changes the backend of whoever imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from accelstore.grid import WINDOW_SECONDS, WINDOWS_PER_DAY
from accelstore.store import Store, open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MINUTES_PER_DAY = 24 * 60
WINDOWS_PER_MINUTE = 60 // WINDOW_SECONDS
WIDTH_IN = 11.0
DAY_ROW_IN = 0.8
TOP_IN = 0.8  # title and legend
BOTTOM_IN = 0.5  # hour axis
LEFT_IN = 1.1  # day labels
DPI = 100
MIN_SCALE_MG = 100.0
SCALE_PERCENTILE = 99.5
"""Each row's ENMO axis runs to this percentile of the participant's minutes (at least
MIN_SCALE_MG), so that a few vigorous minutes do not flatten everything else; higher values clip."""
ENMO_COLOUR, INVALID_COLOUR, ABSENT_COLOUR = "#1f4e79", "#f4a582", "#d9d9d9"


@dataclass
class MinuteActivity:
    """One participant's minutes, one row per calendar day of the recording."""

    days: pd.DatetimeIndex  # midnight of each row's day (device clock)
    enmo_mg: np.ndarray  # float32 (days, 1440): mean ENMO of the minute's valid windows, milli-g; NaN if none
    recorded: np.ndarray  # bool (days, 1440): the minute lies within the recording

    @property
    def invalid(self) -> np.ndarray:
        """Recorded minutes without a single valid window: non-wear, gaps, unreadable data."""
        return self.recorded & np.isnan(self.enmo_mg)


def minute_activity(store: Store, participant: str) -> MinuteActivity:
    """Minute-level ENMO of ``participant`` from the stored per-window ``enmo`` and ``valid``."""
    info = store.participant(participant)
    first, end = int(info["first_window"]), int(info["n_windows"])
    first_day, n_days = first // WINDOWS_PER_DAY, int(info["n_days"])
    span = slice(first_day * WINDOWS_PER_DAY, n_days * WINDOWS_PER_DAY)
    shape = (n_days - first_day, MINUTES_PER_DAY, WINDOWS_PER_MINUTE)
    stored = store.days_of(participant, ("valid", "enmo"))  # valid checked against the day summary
    valid, enmo = stored["valid"].reshape(shape), stored["enmo"].reshape(shape)
    counts = valid.sum(axis=-1)
    totals = np.where(valid, enmo, 0.0).sum(axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        enmo_mg = np.where(counts > 0, 1000.0 * totals / counts, np.nan).astype(np.float32)
    window = np.arange(span.start, span.stop).reshape(shape)
    recorded = ((window >= first) & (window < end)).any(axis=-1)
    days = pd.DatetimeIndex(info["day0"] + pd.to_timedelta(np.arange(first_day, n_days), unit="D"))
    return MinuteActivity(days, enmo_mg, recorded)


def plot_activity(store: Store | str, participant: str, path: str | Path) -> Path:
    """Save ``participant``'s activity plot to ``path`` (any format matplotlib writes; PNG usual)."""
    opened = store if isinstance(store, Store) else open_store(store)
    activity = minute_activity(opened, participant)
    figure = draw_activity(activity, title=f"{participant} ({opened.participant(participant)['device'] or 'device unknown'})")
    path = Path(path)
    figure.savefig(path, dpi=DPI)
    log.info("plotted %d day(s) of %s to %s", len(activity.days), participant, path)
    return path


def draw_activity(activity: MinuteActivity, title: str) -> Figure:
    """The figure: WIDTH_IN wide, TOP_IN + BOTTOM_IN + DAY_ROW_IN per day high."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,  # here: the command line starts faster
    )
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n_days = len(activity.days)
    height = TOP_IN + BOTTOM_IN + DAY_ROW_IN * n_days
    figure = Figure(figsize=(WIDTH_IN, height))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=LEFT_IN / WIDTH_IN, right=0.98, top=1 - TOP_IN / height, bottom=BOTTOM_IN / height, hspace=0.12)
    axes = figure.subplots(n_days, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    finite = activity.enmo_mg[np.isfinite(activity.enmo_mg)]
    scale = max(MIN_SCALE_MG, float(np.percentile(finite, SCALE_PERCENTILE)) if finite.size else 0.0)
    edges = np.arange(MINUTES_PER_DAY + 1) / 60.0  # hours
    for ax, day, enmo, recorded, invalid in zip(axes, activity.days, activity.enmo_mg, activity.recorded, activity.invalid):
        shade = ax.get_xaxis_transform()  # x in hours, y from 0 to 1 across the row
        _fill_steps(ax, edges, (~recorded).astype(float), color=ABSENT_COLOUR, transform=shade)
        _fill_steps(ax, edges, invalid.astype(float), color=INVALID_COLOUR, transform=shade)
        _fill_steps(ax, edges, np.nan_to_num(np.minimum(enmo, scale)), color=ENMO_COLOUR)
        ax.set_ylabel(f"{day:%a}\n{day:%Y-%m-%d}", rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
        ax.grid(axis="x", color="white", linewidth=0.6)
    axes[0].set_ylim(0, scale)
    axes[0].set_xlim(0, 24)
    axes[-1].set_xticks(range(0, 25, 3), [f"{hour:02d}:00" for hour in range(0, 25, 3)])
    axes[-1].set_xlabel("time of day (device clock)")
    figure.suptitle(f"{title}: minute-level ENMO, 0–{scale:.0f} mg per row", x=LEFT_IN / WIDTH_IN, ha="left", y=1 - 0.1 / height)
    figure.legend(
        handles=[Patch(color=ENMO_COLOUR, label="ENMO"), Patch(color=INVALID_COLOUR, label="non-wear / invalid"), Patch(color=ABSENT_COLOUR, label="not recorded")],
        loc="upper right", ncols=3, frameon=False, fontsize=9, bbox_to_anchor=(0.98, 1 - 0.35 / height),
    )
    return figure


def _fill_steps(ax, edges: np.ndarray, values: np.ndarray, **style) -> None:
    """Fill under a step curve: ``values[i]`` across [edges[i], edges[i + 1]).

    (``Axes.stairs`` draws the same but takes ~0.1 s a row to update the data limits.)
    """
    ax.fill_between(edges, np.append(values, values[-1]), step="post", linewidth=0, **style)
