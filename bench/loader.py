"""Loader throughput: WindowDataset vs a loader in the style of the ssl-wearables code.

Both deliver batches of 512 10-s windows, augmented (random axis order and rotation) and with
three pretext tasks (aot, permute, time_warp, each applied with p = 0.5), through a torch
DataLoader with 0, 1 and 2 worker processes, measured in the same run after the first batch.

- accelstore: ``WindowDataset`` over a store ingested (``accelstore.synth`` → ``ingest``) from
  synthetic .cwa recordings, built once into bench/out/loader/ and reused.
- baseline: one ``.npy`` per subject holding its valid windows as float32 (n, 3, 300), the data
  layout of the paper's code; each item loads one subject's file, takes 512 windows at random and
  transforms them one window at a time with NumPy/SciPy (bench/pretext.py's per-window functions:
  np.flip, segment permutation, scipy CubicSpline + np.interp time warp, rotation matrix product).

``--train`` (a CUDA machine): the same loader feeding harnet10 forward and backward in bf16;
prints windows/s and the share of step time spent waiting for data.

``--object-store``: ``WindowDataset`` over the same store read from local disk and from a copy
of it in an S3 bucket served by moto on loopback (tests/s3_server.py, a process of its own),
with 0, 1 and 2 workers; prints the GETs per shard read and the ratio s3 / local last.

Run: python bench/loader.py [--seconds 4] [--train --workers 16 | --object-store]
"""

from __future__ import annotations

import os

for _threads in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pretext import BASELINES, augment_baseline  # noqa: E402  (bench/pretext.py)
from torch.utils.data import DataLoader, Dataset, RandomSampler  # noqa: E402

from accelstore import open_store  # noqa: E402
from accelstore.dataset.windows import WindowDataset, worker_context  # noqa: E402
from accelstore.grid import WINDOWS_PER_DAY  # noqa: E402
from accelstore.store import WINDOW_ARRAYS, MetadataWriter, ParticipantWriter, Status, create_store  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "loader"
TASKS = ("aot", "permute", "time_warp")
BATCH = 512


def build_store(participants: int, days: float) -> Path:
    """Synthetic .cwa recordings ingested into a store (once; reused while it exists and this
    version reads it)."""
    from accelstore.errors import StoreError
    from accelstore.pipelines.ingest import ingest
    from accelstore.synth import synthesize

    store = OUT / f"synth-{participants}x{days:g}d.zarr"
    try:
        open_store(str(store))
    except StoreError:
        shutil.rmtree(store, ignore_errors=True)
    if not store.exists():
        with tempfile.TemporaryDirectory() as raw:
            synthesize(raw, participants=participants, days=days, seed=0)
            report = ingest([raw], str(store), workers=2, progress=False)
        if not report.ok:
            raise RuntimeError(f"ingest failed: {report.failed}")
    return store


def replicate(source: Path, copies: int) -> Path:
    """A store holding each participant of ``source`` ``copies`` times, as new participants:
    enough (participant, day) shards for many DataLoader workers."""
    target = source.with_name(f"{source.stem}-x{copies}.zarr")
    if target.exists():
        return target
    opened = open_store(str(source))
    group, table = opened.group, opened.participants
    days = group["acc"].shape[1] // WINDOWS_PER_DAY
    meta = MetadataWriter(create_store(str(target), max_days=days))
    for pid, row in zip(table.index, table["row"]):
        rows = meta.allocate_rows([f"{pid}-{copy}" for copy in range(copies)])
        writers = [ParticipantWriter(str(target), int(new)) for new in rows]
        for day in range(days):
            acc = group["acc"][row, day * WINDOWS_PER_DAY : (day + 1) * WINDOWS_PER_DAY]
            with ThreadPoolExecutor() as pool:  # compression releases the GIL
                list(pool.map(lambda writer, day=day, acc=acc: writer.write_day(day, acc), writers))
        per_window = {spec.name: group[spec.name][row] for spec in WINDOW_ARRAYS}
        for writer in writers:
            writer.write_windows(**per_window)
        per_day = {name: np.repeat(group[name][row : row + 1], len(rows), axis=0) for name in ("day_valid_windows", "day_std_sum")}
        meta.write_day_summaries(rows, per_day["day_valid_windows"], per_day["day_std_sum"])
        columns = ("first_window", "n_windows", "valid_windows")
        meta.set_rows(rows, **{name: table.at[pid, name] for name in columns}, status=Status.COMPLETE)
    return target


def build_npy(store: Path) -> list[Path]:
    """One .npy per subject: its valid windows, float32 g, (n, 3, 300)."""
    opened = open_store(str(store))
    folder = store.with_suffix(".npy")
    folder.mkdir(exist_ok=True)
    paths = []
    for pid in opened.participants.index:
        path = folder / f"{pid}.npy"
        if not path.exists():
            windows = opened.windows(pid)
            np.save(path, windows.values[windows["valid"].values])
        paths.append(path)
    return paths


class SubjectNpyDataset(Dataset):
    """The baseline: item i loads subject i's .npy, samples windows, transforms each window."""

    def __init__(self, paths: list[Path], windows: int):
        self.paths, self.windows = paths, windows

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng()  # unseeded, as the paper's code
        subject = np.load(self.paths[index])
        chosen = subject[rng.choice(len(subject), self.windows, replace=False)]
        x = np.empty_like(chosen)
        labels = {task: np.zeros(self.windows, np.int64) for task in TASKS}
        for b, window in enumerate(chosen):
            window = augment_baseline(window, rng)
            for task in TASKS:
                if rng.random() < 0.5:
                    window = BASELINES[task](window, rng)
                    labels[task][b] = 1
            x[b] = window
        return {"x": torch.from_numpy(x), **{task: torch.from_numpy(v) for task, v in labels.items()}}


def accelstore_loader(store: Path | str, workers: int) -> tuple[WindowDataset, DataLoader]:
    dataset = WindowDataset(store, BATCH, tasks=TASKS, augment=True, seed=0)
    return dataset, _loader(dataset, workers, sampler=None)


def baseline_loader(paths: list[Path], workers: int) -> DataLoader:
    dataset = SubjectNpyDataset(paths, BATCH)
    return _loader(dataset, workers, sampler=RandomSampler(dataset, replacement=True, num_samples=10**6))


def _loader(dataset, workers: int, sampler, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=workers,
        multiprocessing_context=worker_context() if workers else None,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


def endless(loader: DataLoader, dataset: WindowDataset | None) -> Iterator[dict[str, torch.Tensor]]:
    """Batches epoch after epoch (WindowDataset: a new epoch each time)."""
    while True:
        yield from loader
        if dataset is not None:
            dataset.set_epoch(dataset.epoch + 1)


def windows_per_second(batches: Iterator[dict[str, torch.Tensor]], seconds: float) -> float:
    """Throughput over about ``seconds``, after the first batch (worker start-up, compilation)."""
    next(batches)
    windows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        windows += len(next(batches)["x"])
    return windows / (time.perf_counter() - start)


def compare(store: Path, seconds: float) -> None:
    paths = build_npy(store)
    print(f"store {store.name}: {sum(len(np.load(p, mmap_mode='r')) for p in paths):,} valid windows, {len(paths)} subjects")
    print(f"batches of {BATCH} windows (3, 300), augment + {', '.join(TASKS)} (p = 0.5)")
    print(f"{'loader':<12}{'workers':>8}{'windows/s':>12}{'per worker':>12}")
    rates: dict[tuple[str, int], float] = {}
    for workers in (0, 1, 2):
        dataset, loader = accelstore_loader(store, workers)
        rates["accelstore", workers] = windows_per_second(endless(loader, dataset), seconds)
        del loader
        rates["baseline", workers] = windows_per_second(endless(baseline_loader(paths, workers), None), seconds)
        for name in ("accelstore", "baseline"):
            rate = rates[name, workers]
            print(f"{name:<12}{workers:>8}{rate:>12,.0f}{rate / max(workers, 1):>12,.0f}")
    ratios = ", ".join(f"{w} workers {rates['accelstore', w] / rates['baseline', w]:.1f}x" for w in (0, 1, 2))
    per_worker = ", ".join(f"{w} workers {rates['accelstore', w] / max(w, 1):,.0f}" for w in (0, 1, 2))
    print(f"windows/s per worker process, accelstore (target >= 20,000): {per_worker}")
    print(f"ratio accelstore / baseline (target >= 5x): {ratios}")


def object_store(store: Path, seconds: float) -> None:
    """WindowDataset from local disk against the same store in a loopback S3 bucket."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3_server import environment, start

    with tempfile.TemporaryDirectory() as folder:
        server = start(Path(folder) / "requests.jsonl")
        try:
            os.environ.update(environment(server.endpoint))  # before any DataLoader worker (or its forkserver) starts
            import s3fs

            fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
            fs.mkdir("bench")
            fs.put(str(store), "bench/store.zarr", recursive=True)
            url = "s3://bench/store.zarr"
            print(f"store {store.name}: local disk, and a copy in moto's S3 on loopback ({server.endpoint})")
            print(f"batches of {BATCH} windows (3, 300), augment + {', '.join(TASKS)} (p = 0.5)")
            epoch = WindowDataset(url, BATCH, seed=0)
            mark = server.mark
            windows = sum(len(batch["x"]) for batch in epoch)
            requests = Counter(r.method for r in server.requests_since(mark))
            acc = sum(1 for r in server.requests_since(mark) if r.method == "GET" and r.key.startswith("store.zarr/acc/c/"))
            shards = int(np.count_nonzero(open_store(url).day_summary("day_valid_windows")))
            print(f"one epoch, {windows:,} windows from {shards} shards: {acc} GETs of 'acc' shards, {requests['GET'] - acc} other GETs, {requests['HEAD']} HEADs")
            print(f"{'workers':>8}{'local':>12}{'s3':>12}")
            rates: dict[tuple[str, int], float] = {}
            for workers in (0, 1, 2):
                for where, path in (("local", store), ("s3", url)):
                    dataset, loader = accelstore_loader(path, workers)
                    rates[where, workers] = windows_per_second(endless(loader, dataset), seconds)
                    del loader
                print(f"{workers:>8}{rates['local', workers]:>12,.0f}{rates['s3', workers]:>12,.0f}")
        finally:
            server.stop()
    ratios = ", ".join(f"{w} workers {rates['s3', w] / rates['local', w]:.2f}x" for w in (0, 1, 2))
    print(f"ratio s3 / local, windows/s: {ratios}")


def train(store: Path, workers: int, seconds: float, batch: int) -> None:
    """harnet10 forward + backward in bf16 fed by the loader; the share of time spent waiting."""
    from accelstore.models.harnet import PretextModel, pretext_loss

    device = torch.device("cuda")
    model = PretextModel("harnet10", tasks=("aot", "permute", "time_w")).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    dataset = WindowDataset(store, batch, tasks=TASKS, augment=True, seed=0)
    batches = endless(_loader(dataset, workers, sampler=None, pin_memory=True), dataset)

    def step(data: dict[str, torch.Tensor]) -> None:
        x = data["x"].to(device, non_blocking=True)
        labels = {"aot": data["aot"], "permute": data["permute"], "time_w": data["time_warp"]}
        labels = {task: y.to(device, non_blocking=True) for task, y in labels.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = pretext_loss(model(x), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(5):  # warm-up: workers, cuDNN autotuning
        step(next(batches))
    torch.cuda.synchronize()
    waited = windows = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        before = time.perf_counter()
        data = next(batches)
        waited += time.perf_counter() - before
        step(data)
        windows += len(data["x"])
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    fixed = next(batches)
    compute_start = time.perf_counter()
    for _ in range(20):
        step(fixed)
    torch.cuda.synchronize()
    compute_rate = 20 * len(fixed["x"]) / (time.perf_counter() - compute_start)
    print(f"harnet10 bf16 on {torch.cuda.get_device_name()}, batch {batch}, {workers} loader workers")
    print(f"model alone (one batch reused): {compute_rate:,.0f} windows/s")
    print(f"with the loader: {windows / elapsed:,.0f} windows/s; waiting for data {100 * waited / elapsed:.1f} % of step time (goal < 5 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per loader and worker count")
    parser.add_argument("--store", type=Path, default=None, help="use this store instead of building one")
    parser.add_argument("--copies", type=int, default=1, help="replicate the store's participants this many times first")
    parser.add_argument("--train", action="store_true", help="feed harnet10 on CUDA instead of comparing loaders")
    parser.add_argument("--workers", type=int, default=16, help="--train: DataLoader workers")
    parser.add_argument("--batch", type=int, default=BATCH, help="--train: batch size")
    parser.add_argument("--object-store", action="store_true", help="local disk against the store's copy in a loopback S3 bucket")
    args = parser.parse_args()
    store = args.store or build_store(args.participants, args.days)
    if args.copies > 1:
        store = replicate(store, args.copies)
    if args.train:
        train(store, args.workers, args.seconds, args.batch)
    elif args.object_store:
        object_store(store, args.seconds)
    else:
        compare(store, args.seconds)


if __name__ == "__main__":
    main()
