"""The fixed pretext validation set: held-out participants, their windows drawn ∝ std, transformed.

The trainer stops early on the loss of this set (docs/architecture.md, "Pre-training"), so it must come from participants the
trainer never sees: the driver records their ids in the store's ``holdout`` attribute.

Windows are drawn from the held-out participants' valid windows with probability ∝ ``std``,
without replacement, by exponential clocks (Efraimidis & Spirakis 2006): each window gets the key
E / std with E ~ Exp(1) from a stream seeded by (seed, row), and the N smallest keys in the
whole hold-out win — the same as N successive draws ∝ std. The keys of one participant depend only
on its own windows, so the draw does not depend on how the work is split into tasks. Two rounds
of one Dask task per participant: the first returns each participant's N smallest keys (from
``valid`` and ``std`` only), the driver keeps the N smallest overall; the second reads the chosen
windows of ``acc`` and applies the pretext transforms, each window keyed by its own id. The driver
writes the hold-out and the set into the store (:mod:`accelstore.store.validation_set`, which also
reads them back).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from accelstore.grid import WINDOW_SAMPLES, window_ids
from accelstore.kernels.pretext_transforms import apply_pretext
from accelstore.pipelines.runner import (
    TaskError,
    absolute,
    progress_bar,
    run_tasks,
    task_client,
)
from accelstore.pretext_tasks import DEFAULT_TASKS, TASKS, checked_tasks
from accelstore.store import acc_to_g, open_store, record_holdout, store_writer, write_validation_set

if TYPE_CHECKING:
    from dask.distributed import Client

log = logging.getLogger(__name__)

SELECTION_STREAM = 0x5E1EC7
"""Distinguishes the draw's random stream from any other use of the same seed."""


def choose_holdout(ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The ids held out: ``round(fraction × n)`` of them (at least 1, at most n − 1), sorted.

    Each id is ranked by a seeded hash of itself, so the choice depends on the seed and the set
    of ids only — not on their order or table rows — and mostly survives the store growing.
    """
    ids = sorted(set(map(str, ids)))
    if len(ids) < 2:
        raise ValueError(f"holding participants out needs at least 2 complete participants, the store has {len(ids)}")
    count = min(max(round(fraction * len(ids)), 1), len(ids) - 1)
    ranked = sorted(ids, key=lambda pid: hashlib.blake2b(f"{seed}/{pid}".encode(), digest_size=8).digest())
    return sorted(ranked[:count])


def selection_keys(valid: np.ndarray, std: np.ndarray, seed: int, row: int) -> np.ndarray:
    """One participant's keys E / std (float64; inf where invalid or std is not positive)."""
    rng = np.random.default_rng([SELECTION_STREAM, seed % 2**64, row])
    clocks = rng.standard_exponential(valid.size)
    eligible = valid & (std > 0)
    keys = np.full(valid.size, np.inf)
    keys[eligible] = clocks[eligible] / std[eligible]
    return keys


# ---------------------------------------------------------------- round 1: candidates


@dataclass(frozen=True)
class DrawTask:
    store: str
    participant: str
    row: int
    n_windows: int
    seed: int
    limit: int  # the N of the whole draw: no participant can contribute more


@dataclass
class Candidates:
    windows: np.ndarray  # int64, window indices
    keys: np.ndarray  # float64, ascending


def draw_candidates(task: DrawTask) -> Candidates:
    """The participant's ``limit`` windows of smallest key (fewer if it has fewer eligible)."""
    store, where = open_store(task.store), f"{task.store}: participant {task.participant!r}"
    valid = store.window_values(task.row, "valid", slice(0, task.n_windows), where)
    std = store.window_values(task.row, "std", slice(0, task.n_windows), where)
    keys = selection_keys(valid, std, task.seed, task.row)
    eligible = np.flatnonzero(np.isfinite(keys))
    best = eligible[np.argsort(keys[eligible], kind="stable")[: task.limit]]
    return Candidates(best.astype(np.int64), keys[best])


class Smallest:
    """The ``n`` (row, window) pairs of smallest key seen so far.

    Ties are broken by row, then window, so the result does not depend on arrival order.
    """

    def __init__(self, n: int):
        self.n = n
        self.rows = np.empty(0, np.int64)
        self.windows = np.empty(0, np.int64)
        self.keys = np.empty(0, np.float64)

    def add(self, row: int, candidates: Candidates) -> None:
        new = slice(None)
        if self.keys.size == self.n:  # full: only keys up to the largest kept one can enter
            new = candidates.keys <= self.keys[-1]
        rows = np.concatenate([self.rows, np.full(candidates.windows[new].size, row, np.int64)])
        windows = np.concatenate([self.windows, candidates.windows[new]])
        keys = np.concatenate([self.keys, candidates.keys[new]])
        keep = np.lexsort((windows, rows, keys))[: self.n]
        self.rows, self.windows, self.keys = rows[keep], windows[keep], keys[keep]


# ---------------------------------------------------------------- round 2: transforms


@dataclass(frozen=True)
class TransformTask:
    store: str
    participant: str
    row: int
    windows: np.ndarray  # int64, ascending
    seed: int
    tasks: tuple[str, ...]
    p: float


@dataclass
class Transformed:
    x: np.ndarray  # float32 (k, 3, 300), g
    labels: dict[str, np.ndarray]  # task → int64 (k,)


def transform_chosen(task: TransformTask) -> Transformed:
    """Read the chosen windows of one participant and apply the pretext transforms."""
    where = f"{task.store}: participant {task.participant!r}"
    x = acc_to_g(open_store(task.store).window_values(task.row, "acc", task.windows, where))
    if np.isnan(x).any():
        raise ValueError(f"participant {task.participant}: a window marked valid holds absent samples")
    x, labels = apply_pretext(x, task.tasks, task.seed, task.p, out=x, window_ids=window_ids(task.row, task.windows))
    return Transformed(x, labels)


def warm_up() -> None:
    """Compile (or load from Numba's cache) every pretext kernel once."""
    apply_pretext(np.zeros((1, 3, WINDOW_SAMPLES), np.float32), TASKS, seed=0, p=1.0)


# ---------------------------------------------------------------- the driver


@dataclass
class ValidationSetReport:
    store: str
    holdout: list[str]
    windows: int
    drawn: dict[str, int] = field(default_factory=dict)  # held-out participant → windows in the set


def build_validation_set(
    store_path: str,
    windows: int,
    holdout_fraction: float,
    seed: int,
    tasks: Sequence[str] = DEFAULT_TASKS,
    p: float = 0.5,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 2,
    progress: bool = True,
    break_lease: bool = False,
) -> ValidationSetReport:
    """Hold participants out, draw ``windows`` of their valid windows ∝ std, transform, store.

    Replaces any earlier validation set and hold-out of the store. ``scheduler`` as for
    :func:`accelstore.pipelines.features.recompute` (``"synchronous"``: in this process).
    """
    tasks = _check_tasks(tasks)
    if windows < 1:
        raise ValueError(f"windows must be at least 1, got {windows}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"the hold-out fraction must lie strictly between 0 and 1, got {holdout_fraction}")
    store_path = absolute(store_path)
    table = open_store(store_path).participants
    holdout = choose_holdout(table.index, holdout_fraction, seed)
    held = {pid: int(row) for pid, row in table.loc[holdout, "row"].items()}
    with store_writer(store_path, "pretext", break_lease=break_lease) as writer, task_client(workers, scheduler, warm=warm_up) as client:
        draws = [DrawTask(store_path, pid, row, int(table.at[pid, "n_windows"]), seed, windows) for pid, row in held.items()]
        rows, window_index = _draw(client, draws, windows, retries, progress)
        record_holdout(writer, holdout)
        spans = {int(row): _span(rows, row) for row in np.unique(rows)}  # each participant's windows are one run
        transforms = [
            TransformTask(store_path, pid, row, window_index[spans[row]], seed, tasks, p) for pid, row in held.items() if row in spans
        ]
        x, labels = _transform(client, transforms, spans, windows, retries, progress)
        attrs = {
            "windows": windows, "holdout_fraction": holdout_fraction, "seed": seed, "tasks": list(tasks), "p": p,
            "holdout": holdout, "selection": "without replacement, probability proportional to std among valid windows",
        }
        write_validation_set(writer, x, labels, rows, window_index, attrs)
    drawn = {transform.participant: int(transform.windows.size) for transform in transforms}
    log.info("validation set of %d windows from %d held-out participant(s) in %s", windows, len(holdout), store_path)
    return ValidationSetReport(store_path, holdout, windows, drawn)


def _draw(client: Client | None, draws: list[DrawTask], windows: int, retries: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Round 1: the rows and window indices of the draw, sorted by row, then window."""
    chosen = Smallest(windows)
    with progress_bar(len(draws), "pretext: draw", progress) as bar:
        for draw, candidates in run_tasks(client, draw_candidates, draws, retries):
            bar.update()
            chosen.add(draw.row, _checked(draw.participant, candidates))
    if chosen.keys.size < windows:
        raise ValueError(
            f"the {len(draws)} held-out participant(s) have only {chosen.keys.size} valid windows of positive std; "
            f"asked for {windows}"
        )
    order = np.lexsort((chosen.windows, chosen.rows))
    return chosen.rows[order], chosen.windows[order]


def _transform(
    client: Client | None, transforms: list[TransformTask], spans: dict[int, slice], windows: int, retries: int, progress: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Round 2: the transformed windows and their labels, each participant's put at its span."""
    tasks = transforms[0].tasks
    x = np.empty((windows, 3, WINDOW_SAMPLES), np.float32)
    labels = {name: np.empty(windows, np.int64) for name in tasks}
    with progress_bar(len(transforms), "pretext: transform", progress) as bar:
        for transform, result in run_tasks(client, transform_chosen, transforms, retries):
            bar.update()
            place = spans[transform.row]
            x[place] = _checked(transform.participant, result).x
            for name in tasks:
                labels[name][place] = result.labels[name]
    return x, labels


def _span(sorted_values: np.ndarray, value: int) -> slice:
    return slice(int(np.searchsorted(sorted_values, value, "left")), int(np.searchsorted(sorted_values, value, "right")))


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    return checked_tasks((tasks,) if isinstance(tasks, str) else tasks)


def _checked(participant: str, result):
    """A task's result; a failed task fails the build, since a partial set would be another set."""
    if isinstance(result, TaskError):
        raise RuntimeError(f"pretext validation set: participant {participant}: {result.message}")
    return result
