"""Training throughput: harnet10 fed by accelstore's loader vs the paper-style loader, one run.

Both loaders are those of bench/loader.py (imported, not copied): ``WindowDataset`` over the
synthetic store it builds in bench/out/loader/, and the baseline that loads one ``.npy`` per
subject and transforms window by window with NumPy/SciPy. Each delivers batches of 256 10-s
windows, augmented, with aot, permute and time_warp. The step is the trainer's own
(``accelstore.training.pretrain.train_step``: Adam with amsgrad, bf16 autocast on CUDA) on a fresh
harnet10 for each loader. Timed after ``--warmup`` steps (worker start-up, cuDNN autotuning,
``torch.compile``): windows/s, and the share of the time spent waiting for the next batch.
"model alone" reuses one batch already on the device: the model's own ceiling.

Run: python bench/train.py [--steps 5] [--workers 0]
     python bench/train.py --device cuda --workers 14 --steps 200 --loaders accelstore [--compile] [--store S]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from loader import TASKS, SubjectNpyDataset, _loader, build_npy, build_store, endless  # bench/loader.py
from torch.utils.data import RandomSampler

from accelstore.dataset.windows import WindowDataset
from accelstore.training.pretrain import TrainConfig, build_model, build_optimizer, configure_backends, train_step

BATCH_SIZE = 256


@dataclass(frozen=True)
class Rate:
    windows_per_s: float
    waiting: float  # share of the time spent in next(batches)


class Trainer:
    """A fresh harnet10 and its optimiser; ``step`` is one training step on one batch."""

    def __init__(self, device: torch.device, compile_model: bool) -> None:
        config = TrainConfig(store="", out="", tasks=TASKS)
        model = build_model(config).to(device)
        self.optimizer = build_optimizer(model, config, world_size=1)[0]
        self.model = torch.compile(model) if compile_model else model
        self.device = device

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        train_step(self.model, self.optimizer, batch, TASKS, self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def measure(trainer: Trainer, batches: Iterator[dict[str, torch.Tensor]], warmup: int, steps: int) -> Rate:
    for _ in range(warmup):
        trainer.step(next(batches))
    trainer.synchronize()
    waited = windows = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        before = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - before
        trainer.step(batch)
        windows += len(batch["x"])
    trainer.synchronize()
    elapsed = time.perf_counter() - start
    return Rate(windows / elapsed, waited / elapsed)


def model_alone(trainer: Trainer, batch: dict[str, torch.Tensor], steps: int) -> float:
    """Windows/s with one batch, already on the device, reused."""
    on_device = {name: tensor.to(trainer.device) for name, tensor in batch.items()}
    trainer.step(on_device)
    trainer.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(on_device)
    trainer.synchronize()
    return steps * len(batch["x"]) / (time.perf_counter() - start)


def loaders(name: str, store, workers: int, pin_memory: bool) -> Iterator[dict[str, torch.Tensor]]:
    if name == "accelstore":
        dataset = WindowDataset(store, BATCH_SIZE, tasks=TASKS, augment=True, seed=0, drop_last=True)  # as the trainer
        return endless(_loader(dataset, workers, sampler=None, pin_memory=pin_memory), dataset)
    subjects = SubjectNpyDataset(build_npy(store), BATCH_SIZE)
    sampler = RandomSampler(subjects, replacement=True, num_samples=10**6)
    return endless(_loader(subjects, workers, sampler=sampler, pin_memory=pin_memory), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--loaders", default="accelstore,baseline", help="comma-separated: accelstore, baseline")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of each loader")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loader")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (bench/loader.py sets 1 for its workers)")
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--store", type=Path, default=None, help="use this store instead of building one (accelstore loader only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configure_backends(deterministic=False)
    device = torch.device(args.device)
    store = args.store or build_store(args.participants, args.days)
    names = args.loaders.split(",")
    compiled = ", torch.compile" if args.compile else ""
    precision = "bf16 autocast" if device.type == "cuda" else "float32"
    print(f"harnet10 (3, 300), batch {BATCH_SIZE}, {precision}{compiled} on {torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU, {args.threads} threads'}")
    print(f"augment + {', '.join(TASKS)}; {args.workers} DataLoader worker(s); {args.steps} timed steps after {args.warmup}")
    rates: dict[str, Rate] = {}
    for name in names:
        trainer = Trainer(device, args.compile)
        batches = loaders(name, store, args.workers, pin_memory=device.type == "cuda")
        rates[name] = rate = measure(trainer, batches, args.warmup, args.steps)
        alone = model_alone(trainer, next(batches), args.steps)
        print(f"{name:<11} {rate.windows_per_s:>9,.0f} windows/s, waiting for data {100 * rate.waiting:5.1f} % of the time; model alone {alone:,.0f} windows/s")
    if {"accelstore", "baseline"} <= rates.keys():
        ratio = rates["accelstore"].windows_per_s / rates["baseline"].windows_per_s
        print(f"ratio accelstore / baseline, training windows/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
