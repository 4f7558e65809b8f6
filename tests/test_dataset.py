"""WindowDataset: exactly-once epochs over ranks and workers, std-weighted sampling, window
lengths, determinism, exact resume through persistent DataLoader workers, labels, memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from torch.utils.data import DataLoader

from accelstore import open_store
from accelstore.cli.training import stream_command
from accelstore.dataset.windows import WindowDataset, resume_position, transform_seed, worker_context
from accelstore.grid import ACC_FILL, WINDOWS_PER_DAY, window_ids
from accelstore.kernels.augment import augment
from accelstore.kernels.pretext_transforms import apply_pretext
from accelstore.store import MetadataWriter, ParticipantWriter, Status, acc_to_g, create_store

DAY = WINDOWS_PER_DAY


def write_store(path: Path, valid: np.ndarray, std: np.ndarray | None = None, recorded: np.ndarray | None = None, amplitude: int = 2000, seed: int = 0) -> Path:
    """A store written through the store API: participant ``P{i}`` has windows ``valid[i]``
    (days × 8,640), random milli-g data where ``recorded`` or valid (fill elsewhere), and the
    given (else random) std; its day summary is computed here from ``valid`` and ``std``."""
    rng = np.random.default_rng(seed)
    n_participants, n_windows = valid.shape
    days = n_windows // DAY
    std = rng.uniform(0.01, 0.5, valid.shape).astype(np.float32) if std is None else std
    recorded = valid if recorded is None else recorded | valid
    meta = MetadataWriter(create_store(str(path), max_days=days))
    rows = meta.allocate_rows([f"P{i}" for i in range(n_participants)])
    for i, row in enumerate(rows):
        writer = ParticipantWriter(str(path), int(row))
        for day in range(days):
            acc = np.full((DAY, 3, 300), ACC_FILL, np.int16)
            present = np.flatnonzero(recorded[i, day * DAY : (day + 1) * DAY])
            acc[present] = rng.integers(-amplitude, amplitude, (len(present), 3, 300), dtype=np.int16)
            writer.write_day(day, acc)
        writer.write_windows(valid=valid[i], std=np.where(valid[i], std[i], np.nan).astype(np.float32))
        per_day = valid[i].reshape(days, DAY)
        meta.write_day_summaries(np.array([row]), per_day.sum(1)[None], np.where(per_day, std[i].reshape(days, DAY), 0).sum(1)[None])
        meta.set_rows(np.array([row]), first_window=0, n_windows=n_windows, valid_windows=int(valid[i].sum()), status=Status.COMPLETE)
    return path


def scattered_valid(participants: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bouts of recording at random times, some days empty, ~10 % of recorded windows invalid
    (non-wear: data present but not valid). Returns (valid, recorded)."""
    rng = np.random.default_rng(seed)
    recorded = np.zeros((participants, days * DAY), bool)
    for i in range(participants):
        for day in range(days):
            if (i + day) % 4 != 3:
                start = day * DAY + rng.integers(0, DAY - 600)
                recorded[i, start : start + rng.integers(100, 600)] = True
    return recorded & (rng.random(recorded.shape) > 0.1), recorded


def keys(batch: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    return list(zip(batch["participant"].tolist(), batch["window"].tolist(), batch["offset"].tolist()))


def valid_keys(valid: np.ndarray, store: Path) -> Counter:
    """(row, window, offset 0) of each valid window; ``valid[i]`` belongs to participant ``P{i}``."""
    table = open_store(str(store)).participants
    return Counter((int(table.at[f"P{i}", "row"]), int(w), 0) for i, w in zip(*np.nonzero(valid)))


def untransformed(acc: dict[int, np.ndarray], batch: dict[str, torch.Tensor], seconds: int = 10) -> np.ndarray:
    """The batch's windows as stored, in g, cut independently of the dataset: consecutive 10-s
    windows joined along time, then the 30 × ``seconds`` samples from ``offset``."""
    span = max(seconds // 10, 1)
    joined = [np.concatenate(list(acc_to_g(acc[row][w : w + span])), axis=-1) for row, w, _ in keys(batch)]
    return np.stack([x[:, offset : offset + 30 * seconds] for x, (_, _, offset) in zip(joined, keys(batch))])


@pytest.fixture(scope="module")
def scattered(tmp_path_factory) -> tuple[Path, np.ndarray]:
    valid, recorded = scattered_valid(participants=5, days=2, seed=1)
    return write_store(tmp_path_factory.mktemp("scattered") / "s.zarr", valid, recorded=recorded), valid


@pytest.fixture(scope="module")
def stored_acc(scattered) -> dict[int, np.ndarray]:
    """Every row's whole ``acc`` (int16), read straight from Zarr."""
    group = open_store(str(scattered[0])).group
    return {row: group["acc"][row] for row in range(group["acc"].shape[0])}


@pytest.fixture(scope="module")
def loader_runs(scattered) -> dict:
    """One persistent 3-worker forkserver DataLoader (rank 0 of 2): epoch 0, epoch 1, and epoch 0
    resumed from state_dicts taken after 7 batches and 2 batches before the end."""
    dataset = WindowDataset(scattered[0], 64, buffer=256, rank=0, world_size=2, tasks=["aot"], seed=3)
    loader = DataLoader(dataset, batch_size=None, num_workers=3, multiprocessing_context=worker_context(), persistent_workers=True, pin_memory=True)
    runs = {"epoch0": [keys(b) for b in loader]}
    state_after_7 = dataset.state_dict(7)
    state_near_end = dataset.state_dict(len(runs["epoch0"]) - 2)
    dataset.set_epoch(1)
    runs["epoch1"] = [keys(b) for b in loader]
    for name, state in (("resumed_7", state_after_7), ("resumed_near_end", state_near_end)):
        dataset.load_state_dict(state)
        dataset.set_epoch(0)  # the trainer's loop calls this; it must keep the resume point
        runs[name] = [keys(b) for b in loader]
    del loader
    return runs


def rank1_keys(store: Path, epoch: int) -> Counter:
    """What rank 1 of 2 gives in ``epoch``, its 3 workers simulated in this process."""
    rank1 = WindowDataset(store, 64, buffer=256, rank=1, world_size=2, tasks=["aot"], seed=3)
    rank1.set_epoch(epoch)
    return Counter(k for worker in range(3) for batch in rank1.worker_batches(worker, 3) for k in keys(batch))


@pytest.mark.parametrize("epoch", [0, 1])
def test_uniform_epoch_gives_each_valid_window_once_over_2_ranks_and_3_workers(scattered, loader_runs, epoch):
    store, valid = scattered
    rank0 = loader_runs[f"epoch{epoch}"]
    assert Counter(k for batch in rank0 for k in batch) + rank1_keys(store, epoch) == valid_keys(valid, store)
    sizes = [len(batch) for batch in rank0]
    assert sizes.count(64) >= len(sizes) - 3  # at most one short batch per worker


def test_another_epoch_gives_another_order(loader_runs):
    assert loader_runs["epoch1"] != loader_runs["epoch0"]


def test_resume_in_persistent_workers_gives_exactly_the_remaining_batches(loader_runs):
    epoch0 = loader_runs["epoch0"]
    assert loader_runs["resumed_7"] == epoch0[7:]
    assert loader_runs["resumed_near_end"] == epoch0[-2:]


def test_resume_position_follows_the_dataloader_round_robin():
    totals = [2, 5, 0, 4]
    order = [w for turn in range(max(totals)) for w in range(len(totals)) if turn < totals[w]]
    for consumed in range(sum(totals) + 1):
        taken, turn = resume_position(totals, consumed)
        assert taken == [order[:consumed].count(w) for w in range(len(totals))]
        rest = order[consumed:]
        if rest:  # the next batch comes from `turn` or, if it is exhausted, the next active worker
            assert rest[0] == min((w for w in range(4) if taken[w] < totals[w]), key=lambda w: (w - turn) % 4)
    with pytest.raises(ValueError, match="deliver only 11"):
        resume_position(totals, 12)


def test_explicit_worker_resume_matches_an_uninterrupted_run(scattered):
    dataset = WindowDataset(scattered[0], 32, buffer=100, mode="subjects", participants_per_batch=2, seed=5)
    full = [[keys(b) for b in dataset.worker_batches(w, 2)] for w in range(2)]
    order = [batch for turn in range(max(map(len, full))) for w in range(2) if turn < len(full[w]) for batch in [full[w][turn]]]
    for consumed in (1, 4, len(order) - 1):
        dataset.load_state_dict(dataset.state_dict(consumed))
        resumed = [[keys(b) for b in dataset.worker_batches(w, 2)] for w in range(2)]
        interleaved = [b for turn in range(max(map(len, resumed))) for w in range(2) if turn < len(resumed[w]) for b in [resumed[w][turn]]]
        assert interleaved == order[consumed:]


@pytest.mark.parametrize("seconds", [5, 30])
def test_5_and_30_second_windows_cover_every_valid_stretch_once(scattered, stored_acc, seconds):
    store, valid = scattered
    if seconds == 30:  # aligned triples of valid windows, named by their first window
        starts = np.zeros_like(valid)
        starts[:, ::3] = valid.reshape(len(valid), -1, 3).all(axis=2)
        expected = valid_keys(starts, store)
    else:
        expected = Counter((row, w, half) for row, w, _ in valid_keys(valid, store) for half in (0, 150))
    seen, ids = Counter(), []
    for rank in range(2):
        dataset = WindowDataset(store, 50, seconds=seconds, buffer=200, rank=rank, world_size=2)
        for worker in range(2):
            for batch in dataset.worker_batches(worker, 2):
                seen.update(keys(batch))
                ids += window_ids(batch["participant"], batch["window"], batch["offset"]).tolist()
                assert batch["x"].shape[1:] == (3, 30 * seconds)
                np.testing.assert_allclose(batch["x"].numpy(), untransformed(stored_acc, batch, seconds), atol=1e-6)
    assert seen == expected
    assert len(set(ids)) == len(ids)  # each window's transforms draw on streams of its own


def test_std_weighted_selection_follows_std(tmp_path):
    """4 days of 400 valid windows at std 0.02, 0.05, 0.1 or 0.2 (100 each); day 3 at twice
    those. fraction 0.25 draws 400 windows an epoch: 160 from day 3 (its share of summed std),
    80 from each other day, and inside a day each window as often as in successive sampling
    with probability ∝ std (numpy's weighted choice without replacement)."""
    rng = np.random.default_rng(0)
    levels = np.array([0.02, 0.05, 0.1, 0.2], np.float32)
    level_of = np.stack([rng.permutation(np.repeat(np.arange(4), 100)) for _ in range(4)])
    valid = np.zeros((4, DAY), bool)
    valid[:, :400] = True
    std = np.zeros((4, DAY), np.float32)
    std[:, :400] = levels[level_of] * np.array([1, 1, 1, 2], np.float32)[:, None]
    store = write_store(tmp_path / "w.zarr", valid, std=std, amplitude=50)
    dataset = WindowDataset(store, 100, sampling="std", fraction=0.25, buffer=1000, seed=11)
    epochs = 30
    hits = np.zeros((4, 400))
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        chosen = np.array([k[:2] for batch in dataset for k in keys(batch)])
        assert np.bincount(chosen[:, 0], minlength=4).tolist() == [80, 80, 80, 160]
        np.add.at(hits, (chosen[:, 0], chosen[:, 1]), 1)
    assert ((hits > 0) & (hits < epochs)).mean() > 0.7  # each epoch draws anew
    reference = np.zeros((2, 4))  # successive-sampling inclusion per level, for 80 and 160 of 400
    draws = 4000
    for k, m in enumerate((80, 160)):
        weights = levels[level_of[0]] / levels[level_of[0]].sum()
        for _ in range(draws):
            reference[k] += np.bincount(level_of[0][rng.choice(400, m, replace=False, p=weights)], minlength=4)
        reference[k] /= draws * 100
    for k, days in enumerate(([0, 1, 2], [3])):
        for level in range(4):
            trials = epochs * 100 * len(days)
            observed = sum(hits[d][level_of[d] == level].sum() for d in days) / trials
            p = reference[k, level]
            bound = 4.5 * np.sqrt(p * (1 - p) / trials + p * (1 - p) / (draws * 100))
            assert abs(observed - p) < bound, (days, level, observed, p)
    assert reference[0, 3] > 6 * reference[0, 0]  # the test can tell weighted from uniform


def test_same_seed_same_batches_and_another_seed_others(scattered):
    def run(seed: int) -> list[dict[str, torch.Tensor]]:
        dataset = WindowDataset(scattered[0], 64, sampling="std", tasks=["aot", "permute", "time_warp"], augment=True, seed=seed)
        return list(dataset.worker_batches(1, 2))

    first, again, other = run(7), run(7), run(8)
    assert len(first) == len(again) and all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, again))
    assert [keys(b) for b in first] != [keys(b) for b in other]


def test_labels_match_the_transform_applied(scattered, stored_acc):
    reversed_only = WindowDataset(scattered[0], 64, tasks=["aot"], seed=2)
    for batch in reversed_only:
        original, flipped = untransformed(stored_acc, batch), batch["aot"].numpy().astype(bool)
        assert 0 < flipped.sum() < len(flipped)
        np.testing.assert_array_equal(batch["x"].numpy()[flipped], original[flipped][:, :, ::-1])
        np.testing.assert_array_equal(batch["x"].numpy()[~flipped], original[~flipped])

    tasks = ["aot", "scale", "permute", "time_warp"]
    everything = WindowDataset(scattered[0], 64, tasks=tasks, augment=True, seed=2)
    everything.set_epoch(4)
    seed = transform_seed(2, 4)
    for batch in everything:
        ids = window_ids(batch["participant"].numpy(), batch["window"].numpy(), batch["offset"].numpy())
        augmented = augment(untransformed(stored_acc, batch), seed, window_ids=ids)
        expected, labels = apply_pretext(augmented, tasks, seed, window_ids=ids)
        np.testing.assert_allclose(batch["x"].numpy(), expected, atol=1e-6)
        for task in tasks:
            assert batch[task].dtype == torch.int64
            np.testing.assert_array_equal(batch[task].numpy(), labels[task])


def test_subjects_mode_batches_hold_k_participants_with_n_windows_each(scattered):
    dataset = WindowDataset(scattered[0], 60, mode="subjects", participants_per_batch=3, buffer=300, drop_last=True)
    seen = []
    for batch in dataset:
        counts = Counter(batch["participant"].tolist())
        assert sorted(counts.values()) == [20, 20, 20]
        seen += keys(batch)
    assert len(seen) == len(set(seen)) > 0


def test_participant_filters_and_holdout_split(tmp_path):
    valid = np.zeros((4, DAY), bool)
    valid[:, :50] = True
    store = write_store(tmp_path / "f.zarr", valid, amplitude=50)

    def rows(**options) -> set[int]:
        return {row for batch in WindowDataset(store, 64, **options) for row in batch["participant"].tolist()}

    assert rows(participants=["P1", "P2"]) == {1, 2}
    assert rows(exclude=["P0"]) == {1, 2, 3}
    with pytest.raises(ValueError, match="holdout"):
        rows(split="train")
    MetadataWriter(zarr.open_group(str(store), mode="r+")).set_attrs(holdout=["P3"])
    assert rows(split="train") == {0, 1, 2}
    assert rows(split="holdout") == {3}
    with pytest.raises(KeyError, match="P9"):
        rows(participants=["P9"])


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from accelstore.dataset.windows import WindowDataset
    for path in sys.argv[1:]:
        n = sum(len(batch["x"]) for batch in WindowDataset(path, 256, buffer=2048))
        print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


def test_peak_memory_does_not_grow_with_store_size(tmp_path):
    """Iterating a store 10x larger (40 vs 4 participant-days of 2,160 valid windows: 155 MB of
    int16 data, 311 MB as float32) raises peak RSS by less than 40 MB: the buffer, one day's read."""
    paths = []
    for name, participants in (("small", 2), ("large", 20)):
        valid = np.zeros((participants, 2 * DAY), bool)
        valid[:, 3000:5160] = valid[:, DAY + 3000 : DAY + 5160] = True
        paths.append(str(write_store(tmp_path / f"{name}.zarr", valid, amplitude=8)))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *paths], capture_output=True, text=True, check=True).stdout.split()
    (small_windows, small_peak), (large_windows, large_peak) = np.array(out, dtype=np.int64).reshape(2, 2)
    assert (small_windows, large_windows) == (4 * 2160, 40 * 2160)
    assert large_peak - small_peak < 40e6, (small_peak, large_peak)


def test_stream_command_prints_speed_and_batch_statistics(scattered):
    result = CliRunner().invoke(stream_command, [str(scattered[0]), "--workers", "0", "--batches", "5", "--batch-size", "64", "--tasks", "aot,permute"])
    assert result.exit_code == 0, result.output
    assert "windows/s" in result.output and "aot" in result.output and "permute" in result.output
