"""Training batches streamed from a store (docs/architecture.md, "The training loader"): :class:`WindowDataset`.

An epoch, step by step:

1. The (participant, day) shards that hold valid windows are listed from the day summary and
   permuted with ``(seed, epoch)``; shard ``i`` of the permutation goes to DDP rank
   ``i % world_size``, and a rank's shards go to its DataLoader workers the same way.
2. Each shard's share of the epoch is fixed by numbers alone. ``sampling="uniform"``:
   ``fraction`` of its valid windows (all of them by default). ``sampling="std"``: an epoch is a
   std-weighted sample without replacement of ``fraction`` × the valid windows; each shard's share
   is proportional to its summed std (from the day summary, so planning reads no ``acc``), and
   inside the shard windows are drawn with Efraimidis–Spirakis keys ``u ** (1 / std)``.
3. A worker plans its batches from those counts alone: it takes its shards in order into a
   shuffle buffer until the buffer holds ``buffer`` windows, permutes the buffer and cuts it
   into batches; the fewer than ``batch_size`` windows left over join the next fill. Only the
   worker's last batch can be short (dropped with ``drop_last``).
4. It then reads each shard whole, once (one Zarr read of the day's ``acc``), keeps only the
   chosen windows, and forgets the shard once its last window has gone into a batch; memory
   stays at about the buffer, whatever the size of the store.
5. Each batch is converted to g, augmented and transformed by the Numba kernels with
   ``transform_seed(seed, epoch)`` and per-window ids ``window_ids(participant, window, offset)``.

A batch is a dict of tensors: ``x`` float32 ``(B, 3, T)`` in g; one int64 label ``(B,)`` per
pretext task, under the kernel's names (``aot``, ``scale``, ``permute``, ``time_warp``; the
model's head for ``time_warp`` is called ``time_w``); ``participant`` (the store row), ``window``
(the first 10-s window, counted from the participant's day 0) and ``offset`` (its first sample in
that window: 150 for the second half in 5-s mode, else 0), all int64 ``(B,)``.

Resuming. The order a DataLoader delivers is a pure function of (seed, epoch, rank, world size,
number of workers): it asks workers 0, 1, … in turn and skips a worker once exhausted. So the
state after ``batches`` batches of the current epoch is just that count: take
``state_dict(batches)`` in the training process, where ``batches`` is the number of batches this
rank has consumed since the epoch began (resumed ones included). After ``load_state_dict``, each
worker re-plans the epoch from numbers (no ``acc`` is read), works out how many batches each
worker had delivered, skips its own, and the workers swap roles so that the next batch comes
from the worker whose turn it was: the remaining batches arrive exactly as in an uninterrupted
run. This needs the same number of workers and a DataLoader with ``in_order=True`` (the
default). ``set_epoch`` and ``load_state_dict`` reach persistent workers through a small tensor
in shared memory.

DDP: ranks get different numbers of batches (shards differ in size); a trainer must stop all
ranks together, e.g. at the first rank that runs out, or use ``torch.distributed.algorithms.Join``.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from accelstore.errors import StoreDamageError
from accelstore.grid import ACC_FILL, WINDOW_SAMPLES, WINDOWS_PER_DAY, window_ids
from accelstore.kernels import augment as augmentation
from accelstore.kernels.pretext_transforms import apply_pretext
from accelstore.pretext_tasks import TASKS, checked_tasks
from accelstore.store import Store, open_store, read_holdout

log = logging.getLogger(__name__)

SHIFT = 20
"""A planned window is coded ``shard << SHIFT | position``: the shard's place in the worker's
list and the window's place among the shard's chosen windows (at most 2 × 8,640)."""
MASK = (1 << SHIFT) - 1
_EMPTY = np.empty(0, np.int64)

# Random streams: each draw is keyed by (seed, stream, epoch, ...), never by a generator's history.
_SHARD_ORDER, _ROUNDING, _CHOICE, _PLAN, _TRANSFORM = range(5)

# Layout of the shared control tensor.
_EPOCH, _RESUME, _WORKERS, _RESUME_WORKERS = range(4)


@dataclass(frozen=True)
class WindowLength:
    """How windows of one length are cut from the store's 10-s windows."""

    joined: int
    """Consecutive 10-s windows joined into one (30 s: 3)."""
    pieces: int
    """Windows cut from one 10-s window (5 s: 2)."""

    @property
    def samples(self) -> int:
        return WINDOW_SAMPLES * self.joined // self.pieces

    def per_unit(self, per_window: np.ndarray, reduce) -> np.ndarray:
        """A day's per-10-s-window values (8,640,) → one value per window of this length."""
        return np.repeat(reduce(per_window.reshape(-1, self.joined), axis=1), self.pieces)

    def gather(self, acc: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Windows ``units`` (counted from ``acc[0]``, which starts a joined group) of (W, 3, 300)."""
        split = acc.reshape(-1, self.joined, 3, self.pieces, WINDOW_SAMPLES // self.pieces)
        picked = split[units // self.pieces, :, :, units % self.pieces, :]  # (n, joined, 3, L)
        return picked.transpose(0, 2, 1, 3).reshape(len(units), 3, self.samples)


LENGTHS = {5: WindowLength(1, 2), 10: WindowLength(1, 1), 30: WindowLength(3, 1)}
"""Window length in seconds → how it is cut."""


def transform_seed(seed: int, epoch: int) -> int:
    """The seed the augmentation and pretext kernels get in ``epoch``."""
    return int(np.random.SeedSequence([seed, _TRANSFORM, epoch]).generate_state(1, np.uint64)[0])


def worker_context() -> multiprocessing.context.BaseContext:
    """A forkserver context whose server imports this module once: DataLoader workers then
    start by forking it, in a fraction of a second, rather than each importing torch anew."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


# --------------------------------------------------------------------------- planning from counts


def plan_windows(
    counts: Iterable[int], batch_size: int, buffer: int, drop_last: bool, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of coded windows from shards of ``counts`` windows, through a shuffle buffer.

    Yields ``(codes, finished)``: a batch and the shards whose last window it holds.
    """
    pending, block, size = _EMPTY, [], 0
    for shard, count in enumerate(counts):
        block.append(_codes(shard, np.arange(count)))
        size += count
        if size + len(pending) >= max(buffer, batch_size):
            pool = rng.permutation(np.concatenate([pending, *block]))
            full = len(pool) - len(pool) % batch_size
            pending, block, size = pool[full:], [], 0
            yield from _with_finished(list(pool[:full].reshape(-1, batch_size)), pending)
    pool = rng.permutation(np.concatenate([pending, *block]))
    batches = [pool[start : start + batch_size] for start in range(0, len(pool), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    yield from _with_finished(batches, _EMPTY)


def plan_subjects(
    counts: Iterable[int],
    rows: np.ndarray,
    participants_per_batch: int,
    windows_per_participant: int,
    buffer: int,
    drop_last: bool,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``windows_per_participant`` windows from each of ``participants_per_batch``
    participants (``rows[shard]``) in the buffer, those with most windows left first.

    Each shard's chosen windows are shuffled and cut into groups of that size; the last, short
    group of each shard is dropped. The last batches may hold fewer participants, unless
    ``drop_last``. Yields ``(codes, finished)`` as :func:`plan_windows`.
    """
    k, n = participants_per_batch, windows_per_participant
    groups: dict[int, deque[np.ndarray]] = {}
    for shard, count in enumerate(counts):
        whole = count - count % n
        if whole:
            codes = _codes(shard, rng.permutation(count)[:whole])
            groups.setdefault(int(rows[shard]), deque()).extend(codes.reshape(-1, n))
        if len(groups) >= k and sum(map(len, groups.values())) * n >= buffer:
            batches = _subject_batches(groups, k, at_least=k)
            pending = np.concatenate([group for queue in groups.values() for group in queue] or [_EMPTY])
            yield from _with_finished(batches, pending)
    yield from _with_finished(_subject_batches(groups, k, at_least=k if drop_last else 1), _EMPTY)


def _subject_batches(groups: dict[int, deque[np.ndarray]], k: int, at_least: int) -> list[np.ndarray]:
    """One group from each of the ``k`` participants with most groups left, while at least
    ``at_least`` participants have some; emptied participants leave ``groups``."""
    batches = []
    while groups and len(groups) >= at_least:
        chosen = sorted(groups, key=lambda row: -len(groups[row]))[:k]
        batches.append(np.concatenate([groups[row].popleft() for row in chosen]))
        for row in chosen:
            if not groups[row]:
                del groups[row]
    return batches


def _codes(shard: int, positions: np.ndarray) -> np.ndarray:
    return (np.int64(shard) << SHIFT) | positions.astype(np.int64)


def _with_finished(batches: list[np.ndarray], pending: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pair each batch with the shards whose last planned window it holds (none still pending)."""
    if not batches:
        return
    shards = np.concatenate(batches) >> SHIFT
    batch_of = np.repeat(np.arange(len(batches)), [len(batch) for batch in batches])
    unique, from_end = np.unique(shards[::-1], return_index=True)
    last_batch = batch_of[len(shards) - 1 - from_end]
    done = ~np.isin(unique, pending >> SHIFT)
    unique, last_batch = unique[done], last_batch[done]
    for index, batch in enumerate(batches):
        yield batch, unique[last_batch == index]


def resume_position(totals: Sequence[int], batches: int) -> tuple[list[int], int]:
    """Batches each worker has delivered once a DataLoader has yielded ``batches``, and the worker
    whose turn is next. The DataLoader asks workers in turn and skips those exhausted."""
    workers = len(totals)
    taken, turn, left = [0] * workers, 0, batches
    while left:
        active = [w for w in range(workers) if taken[w] < totals[w]]
        if not active:
            raise ValueError(f"{batches} batches consumed, but the workers deliver only {sum(totals)} this epoch")
        rounds = min(left // len(active), min(totals[w] - taken[w] for w in active))
        if rounds:  # whole rounds from worker 0 (once a round is cut short, rounds stays 0)
            for w in active:
                taken[w] += rounds
            left -= rounds * len(active)
            continue
        w = min(active, key=lambda w: (w - turn) % workers)
        taken[w] += 1
        left -= 1
        turn = (w + 1) % workers
    return taken, turn


# --------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class _Shards:
    """The (participant, day) shards with valid windows, from the day summary."""

    row: np.ndarray
    day: np.ndarray
    windows: np.ndarray
    std_sum: np.ndarray


@dataclass(frozen=True)
class _Epoch:
    epoch: int
    order: np.ndarray
    """Shard indices, permuted."""
    target: np.ndarray | None
    """Weighted sampling: windows expected from each shard; None: ``fraction`` of its own."""
    rounding: np.ndarray
    """Uniform draws that round each shard's target up or down (stochastic rounding)."""


@dataclass(frozen=True)
class _Loaded:
    """One shard's chosen windows, int16 milli-g, and where they come from."""

    row: int
    data: np.ndarray
    window: np.ndarray
    offset: np.ndarray


class WindowDataset(IterableDataset):
    """Batches of windows from a store, sharded, weighted, deterministic and resumable.

    See the module docstring for how an epoch is drawn and for the resume contract. Use with
    ``DataLoader(dataset, batch_size=None, num_workers=N, multiprocessing_context=worker_context(),
    persistent_workers=True, pin_memory=True)`` ("spawn" works too, but each worker then imports
    torch anew); call ``set_epoch`` before each epoch.

    ``store``: a path, URL or :class:`~accelstore.store.Store` (reopened lazily in each worker).
    ``seconds``: window length, 5, 10 or 30 (30 s joins three consecutive valid windows; 5 s
    halves each). ``sampling``: ``"uniform"`` or ``"std"``; ``fraction``: share of the valid
    windows drawn per epoch (default 1 for uniform, 0.5 for std). ``mode``: ``"windows"`` or
    ``"subjects"`` (each batch holds ``batch_size / participants_per_batch`` windows from each of
    ``participants_per_batch`` participants). ``tasks``: pretext task names, each applied with
    probability ``p``; ``augment``: random axis order and rotation first. ``buffer``: windows in
    the shuffle buffer. ``participants`` / ``exclude``: ids to keep / leave out; ``split``:
    ``"train"`` leaves out the store's held-out participants (group attribute ``holdout``),
    ``"holdout"`` keeps only them. ``rank`` / ``world_size``: from ``torch.distributed`` when it
    is initialised, else 0 / 1.
    """

    def __init__(
        self,
        store: str | Store,
        batch_size: int = 512,
        *,
        seconds: int = 10,
        sampling: str = "uniform",
        fraction: float | None = None,
        mode: str = "windows",
        participants_per_batch: int = 8,
        tasks: Sequence[str] = (),
        p: float = 0.5,
        augment: bool = False,
        seed: int = 0,
        buffer: int = 32768,
        participants: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        split: str | None = None,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        storage_options: dict | None = None,
    ):
        super().__init__()
        if seconds not in LENGTHS:
            raise ValueError(f"seconds must be one of {sorted(LENGTHS)}, got {seconds}")
        if sampling not in ("uniform", "std"):
            raise ValueError(f"sampling must be 'uniform' or 'std', got {sampling!r}")
        if mode not in ("windows", "subjects"):
            raise ValueError(f"mode must be 'windows' or 'subjects', got {mode!r}")
        if mode == "subjects" and batch_size % participants_per_batch:
            raise ValueError(f"batch_size {batch_size} is not a multiple of participants_per_batch {participants_per_batch}")
        if isinstance(tasks, str):
            raise ValueError(f"tasks must be a list of names from {', '.join(TASKS)}; got {tasks!r}")
        checked_tasks(tasks, allow_empty=True)
        fraction = (1.0 if sampling == "uniform" else 0.5) if fraction is None else float(fraction)
        if not 0.0 < fraction <= 1.0 or batch_size < 1 or seed < 0:
            raise ValueError("need 0 < fraction <= 1, batch_size >= 1 and seed >= 0")
        opened = store if isinstance(store, Store) else open_store(str(store), storage_options)
        self.path, self.storage_options = opened.path, opened.storage_options
        self.rows = _participant_rows(opened, participants, exclude, split)
        self.batch_size, self.length, self.sampling, self.fraction = batch_size, LENGTHS[seconds], sampling, fraction
        self.mode, self.participants_per_batch = mode, participants_per_batch
        self.tasks, self.p, self.augment, self.seed = tuple(tasks), p, augment, seed
        self.buffer, self.drop_last = buffer, drop_last
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self._control = torch.zeros(4, dtype=torch.int64).share_memory_()
        self._store: Store | None = None
        self._shards_cache: _Shards | None = None
        self._epoch_cache: _Epoch | None = None
        self._shards()  # fail here, not in a worker, when nothing is left to draw from
        self._compile_kernels()

    def _compile_kernels(self) -> None:
        """Compile (or load from Numba's cache) the kernels this dataset calls, here and once:
        DataLoader workers then only load the cache, on which many compiling processes race."""
        x = np.zeros((1, 3, self.length.samples), np.float32)
        if self.augment:
            augmentation.augment(x, 0, out=x)
        if self.tasks:
            apply_pretext(x, self.tasks, 0, out=x)

    def __getstate__(self) -> dict[str, Any]:
        """Workers get the settings and the shared control tensor, not this process's handles."""
        return {**self.__dict__, "_store": None, "_shards_cache": None, "_epoch_cache": None}

    # ------------------------------------------------------------------ epoch and state

    @property
    def epoch(self) -> int:
        return int(self._control[_EPOCH])

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch`` next; a resume point loaded for that same epoch is kept."""
        if epoch != self.epoch:
            self._control[_EPOCH], self._control[_RESUME] = epoch, 0

    def state_dict(self, batches: int) -> dict[str, int]:
        """The loader state after this rank has consumed ``batches`` batches of the current epoch."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batches": int(batches),
            "world_size": self.world_size,
            "workers": int(self._control[_WORKERS]),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume where ``state_dict`` was taken: the next iteration skips the consumed batches."""
        for key in ("seed", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"the state was taken with {key}={state[key]}, this dataset has {getattr(self, key)}")
        self._control[:] = torch.tensor([state["epoch"], state["batches"], 0, state["workers"]])

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        return self.worker_batches(info.id, info.num_workers) if info else self.worker_batches()

    def worker_batches(self, worker: int = 0, workers: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of DataLoader worker ``worker`` of ``workers`` (what ``__iter__`` yields there)."""
        epoch, resume, _, resume_workers = self._control.tolist()
        self._control[_WORKERS] = workers
        slot, skip = worker, 0
        if resume:
            if resume_workers and resume_workers != workers:
                raise ValueError(f"the state was taken with {resume_workers} DataLoader workers, now there are {workers}")
            taken, turn = resume_position([self._slot_total(epoch, s, workers) for s in range(workers)], resume)
            slot = (worker + turn) % workers
            skip = taken[slot]
        shards, plan = self._slot_plan(epoch, slot, workers)
        loaded: dict[int, _Loaded] = {}
        for codes, finished in islice(plan, skip, None):
            for shard in np.unique(codes >> SHIFT):
                if shard not in loaded:
                    loaded[shard] = self._load(epoch, int(shards[shard]))
            yield self._batch(epoch, codes, loaded)
            for shard in finished:
                loaded.pop(shard, None)

    def _slot_counts(self, epoch: int, slot: int, workers: int) -> tuple[np.ndarray, Iterator[int]]:
        """A worker slot's shards and, lazily, how many windows each gives this epoch."""
        plan = self._epoch(epoch)
        shards = plan.order[self.rank :: self.world_size][slot::workers]
        return shards, (self._chosen_count(plan, shard, self._unit_count(shard)) for shard in shards)

    def _slot_plan(self, epoch: int, slot: int, workers: int) -> tuple[np.ndarray, Iterator[tuple[np.ndarray, np.ndarray]]]:
        """A worker slot's shards and its batch plan, from numbers (``valid`` is read for 30 s only)."""
        shards, counts = self._slot_counts(epoch, slot, workers)
        rng = self._rng(_PLAN, epoch, self.rank, self.world_size, slot, workers)
        if self.mode == "windows":
            return shards, plan_windows(counts, self.batch_size, self.buffer, self.drop_last, rng)
        rows = self._shards().row[shards]
        per_participant = self.batch_size // self.participants_per_batch
        return shards, plan_subjects(counts, rows, self.participants_per_batch, per_participant, self.buffer, self.drop_last, rng)

    def _slot_total(self, epoch: int, slot: int, workers: int) -> int:
        """How many batches a worker slot yields this epoch."""
        if self.mode == "subjects":
            return sum(1 for _ in self._slot_plan(epoch, slot, workers)[1])
        windows = sum(self._slot_counts(epoch, slot, workers)[1])
        return windows // self.batch_size if self.drop_last else -(-windows // self.batch_size)

    # ------------------------------------------------------------------ per-epoch numbers

    def _rng(self, stream: int, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, stream, *key]))

    def _shards(self) -> _Shards:
        if self._shards_cache is None:
            store = self._opened()
            windows = store.day_summary("day_valid_windows", self.rows)
            std_sum = store.day_summary("day_std_sum", self.rows)
            row_index, day = np.nonzero(windows > 0)
            self._shards_cache = _Shards(self.rows[row_index], day, windows[row_index, day], std_sum[row_index, day])
            if not len(day):
                raise ValueError(f"{self.path}: the selected participants have no valid windows")
        return self._shards_cache

    def _epoch(self, epoch: int) -> _Epoch:
        if self._epoch_cache is None or self._epoch_cache.epoch != epoch:
            shards = self._shards()
            order = self._rng(_SHARD_ORDER, epoch).permutation(len(shards.row))
            rounding = self._rng(_ROUNDING, epoch).random(len(shards.row))
            target = None
            if self.sampling == "std":
                if not shards.std_sum.sum() > 0:
                    raise ValueError(f"{self.path}: std is zero everywhere; use sampling='uniform'")
                windows = shards.windows.sum() * self.length.pieces / self.length.joined
                target = self.fraction * windows * shards.std_sum / shards.std_sum.sum()
            self._epoch_cache = _Epoch(epoch, order, target, rounding)
        return self._epoch_cache

    def _unit_count(self, shard: int) -> int:
        """Valid windows of this length in a shard: from the day summary, or ``valid`` for 30 s."""
        if self.length.joined == 1:
            return int(self._shards().windows[shard]) * self.length.pieces
        return int(self._day(shard, "valid", np.all).sum())

    def _chosen_count(self, plan: _Epoch, shard: int, units: int) -> int:
        target = self.fraction * units if plan.target is None else plan.target[shard]
        whole = int(target)
        return min(units, whole + int(plan.rounding[shard] < target - whole))

    # ------------------------------------------------------------------ reading

    def _opened(self) -> Store:
        """The store, opened once per process (lazily: DataLoader workers open their own)."""
        if self._store is None:
            self._store = open_store(self.path, self.storage_options)
        return self._store

    def _day(self, shard: int, name: str, reduce) -> np.ndarray:
        """A shard's per-window array ``name`` as one value per window of this length."""
        shards = self._shards()
        start = int(shards.day[shard]) * WINDOWS_PER_DAY
        where = f"{self.path}: row {int(shards.row[shard])}, day {int(shards.day[shard])}"
        values = self._opened().window_values(int(shards.row[shard]), name, slice(start, start + WINDOWS_PER_DAY), where)
        return self.length.per_unit(values, reduce)

    def _load(self, epoch: int, shard: int) -> _Loaded:
        """Choose a shard's windows for this epoch (at least one: the plan holds some) and read
        them: the day's ``acc`` whole, in one read of its shard. (A part of a shard costs a read
        of the shard's index and one per chunk it touches: on an object store, that many GETs.)"""
        shards = self._shards()
        row, day = int(shards.row[shard]), int(shards.day[shard])
        start, where = day * WINDOWS_PER_DAY, f"{self.path}: row {row}, day {day}"
        acc = self._opened().window_values(row, "acc", slice(start, start + WINDOWS_PER_DAY), where)
        units = np.flatnonzero(self._valid(shard, acc, where))
        chosen = self._chosen_count(self._epoch(epoch), shard, len(units))
        if chosen < len(units):
            weights = np.nan_to_num(self._day(shard, "std", np.mean)[units]) if self.sampling == "std" else np.ones(len(units))
            draws = self._rng(_CHOICE, epoch, row, day).random(len(units))
            with np.errstate(divide="ignore"):
                keys = np.where(weights > 0, np.log(draws) / weights, -np.inf)
            units = np.sort(units[np.argpartition(-keys, chosen - 1)[:chosen]])
        log.debug("row %d day %d: chose %d windows", row, day, len(units))
        pieces, joined = self.length.pieces, self.length.joined
        window = start + units // pieces * joined
        offset = units % pieces * (WINDOW_SAMPLES // pieces)
        chosen_acc = self.length.gather(acc, units)
        if (chosen_acc == ACC_FILL).any():
            raise StoreDamageError(f"{where}: valid windows whose acceleration is absent (a lost 'acc' shard)")
        return _Loaded(row, chosen_acc, window, offset)

    def _valid(self, shard: int, acc: np.ndarray, where: str) -> np.ndarray:
        """Which windows of this length in a shard are valid, given the day's ``acc``.

        Ingest leaves every sample of an invalid window absent and none of a valid one's, so when
        exactly as many 10-s windows hold acceleration as the day summary counts valid, those are
        the valid ones, and ``valid`` is not read (on an object store, two more GETs a shard: its
        shard's index and the chunk). Otherwise (a lost ``acc`` chunk, or windows holding data
        without being valid), and for 30-s windows, whose plan counted them from ``valid``, it is.
        """
        expected = int(self._shards().windows[shard])
        if self.length.joined == 1:
            present = acc[:, 0, 0] != ACC_FILL  # a window is absent in every sample or in none
            if int(present.sum()) == expected:
                return self.length.per_unit(present, np.all)
        units = self._day(shard, "valid", np.all)
        if self.length.joined == 1 and int(units.sum()) != expected * self.length.pieces:
            raise StoreDamageError(f"{where}: the day summary disagrees with 'valid' (a lost or damaged chunk)")
        return units

    def _batch(self, epoch: int, codes: np.ndarray, loaded: dict[int, _Loaded]) -> dict[str, torch.Tensor]:
        shard_of, position = codes >> SHIFT, codes & MASK
        raw = np.empty((len(codes), 3, self.length.samples), np.int16)
        participant, window, offset = (np.empty(len(codes), np.int64) for _ in range(3))
        for shard in np.unique(shard_of):
            pick = shard_of == shard
            item, chosen = loaded[shard], position[pick]
            raw[pick] = item.data[chosen]
            participant[pick], window[pick], offset[pick] = item.row, item.window[chosen], item.offset[chosen]
        x = np.multiply(raw, np.float32(0.001), dtype=np.float32)
        ids = window_ids(participant, window, offset)
        seed = transform_seed(self.seed, epoch)
        if self.augment:
            augmentation.augment(x, seed, window_ids=ids, out=x)
        labels = apply_pretext(x, self.tasks, seed, self.p, out=x, window_ids=ids)[1] if self.tasks else {}
        arrays = {"x": x, **labels, "participant": participant, "window": window, "offset": offset}
        return {name: torch.from_numpy(array) for name, array in arrays.items()}


def _participant_rows(store: Store, participants: Sequence[str] | None, exclude: Sequence[str], split: str | None) -> np.ndarray:
    """Store rows of the complete participants chosen by ids, exclusions and split."""
    table = store.select(participants)
    ids = list(table.index)
    dropped = {str(pid) for pid in exclude}
    if split is not None:
        holdout = read_holdout(store)
        if holdout is None or split not in ("train", "holdout"):
            raise ValueError(f"split={split!r} needs 'train' or 'holdout' and a store with a 'holdout' attribute")
        holdout = {str(pid) for pid in holdout}
        dropped |= holdout if split == "train" else set(ids) - holdout
    return np.sort(table.loc[[pid for pid in ids if pid not in dropped], "row"].to_numpy(np.int64))


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = world_size if world_size is not None else (torch.distributed.get_world_size() if distributed else 1)
    rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return rank, world
