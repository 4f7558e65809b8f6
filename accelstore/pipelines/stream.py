"""``accelstore stream``: how fast the training loader delivers batches from a store, on this disk.

torch is imported when the command runs, not when the command line starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click
import numpy as np

from accelstore.cli_errors import AccelstoreCommand
from accelstore.cli_lists import comma_list
from accelstore.kernels.pretext import TASKS

if TYPE_CHECKING:
    from accelstore.dataset import WindowDataset


@dataclass
class StreamReport:
    """What ``stream`` measured: counts, timing and batch statistics."""

    batches: int = 0
    windows: int = 0
    first_batch_s: float = 0.0
    """Seconds until the first batch arrived (worker start-up, first reads)."""
    steady_s: float = 0.0
    """Seconds from the first batch to the last."""
    sums: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Count, sum and sum of squares of every value of ``x``."""
    labels: dict[str, float] = field(default_factory=dict)
    """Per task: how many windows were labelled 1."""

    @property
    def windows_per_second(self) -> float:
        """Throughput after the first batch (all batches when there is only one)."""
        if self.batches < 2:
            return self.windows / max(self.first_batch_s, 1e-9)
        return (self.windows - self.windows / self.batches) / max(self.steady_s, 1e-9)

    @property
    def mean(self) -> float:
        return self.sums[1] / self.sums[0]

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.sums[2] / self.sums[0] - self.mean**2, 0.0)))


def stream(dataset: WindowDataset, workers: int, batches: int) -> StreamReport:
    """Take ``batches`` batches from ``dataset`` through a DataLoader with ``workers`` worker
    processes (epoch after epoch if needed) and measure them."""
    from torch.utils.data import DataLoader

    from accelstore.dataset import worker_context

    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        multiprocessing_context=worker_context() if workers else None,
        persistent_workers=workers > 0,
    )
    report = StreamReport(labels={task: 0.0 for task in dataset.tasks})
    start = time.perf_counter()
    while report.batches < batches:
        delivered = report.batches
        for batch in loader:
            if report.batches == 0:
                report.first_batch_s = time.perf_counter() - start
            x = batch["x"].double()
            report.sums += (x.numel(), float(x.sum()), float((x * x).sum()))
            for task in dataset.tasks:
                report.labels[task] += float(batch[task].sum())
            report.windows += len(x)
            report.batches += 1
            if report.batches == batches:
                break
        if report.batches == delivered:
            raise ValueError("the dataset yields no batches")
        dataset.set_epoch(dataset.epoch + 1)
    report.steady_s = time.perf_counter() - start - report.first_batch_s
    return report


@click.command("stream", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader worker processes (0: load in this process).")
@click.option("--batches", type=click.IntRange(min=1), default=200, show_default=True, help="Batches to take before reporting.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True, help="Windows per batch.")
@click.option("--window", type=click.Choice(["5", "10", "30"]), default="10", show_default=True, help="Window length, seconds.")
@click.option("--tasks", type=str, default="aot,permute,time_warp", show_default=True, callback=comma_list(TASKS, allow_empty=True), help="Comma-separated pretext tasks ('' for none).")
@click.option("--sampling", type=click.Choice(["uniform", "std"]), default="uniform", show_default=True, help="Windows drawn uniformly or with probability proportional to std.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random axis order and rotation.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the shuffle, sampling and transforms.")
def stream_command(store: str, workers: int, batches: int, batch_size: int, window: str, tasks: tuple[str, ...], sampling: str, augment: bool, seed: int) -> None:
    """Stream training batches from STORE and print the loader's speed and batch statistics."""
    from accelstore.dataset import WindowDataset

    names = tasks
    try:
        dataset = WindowDataset(store, batch_size, seconds=int(window), sampling=sampling, tasks=names, augment=augment, seed=seed)
    except (ValueError, KeyError) as error:  # a path that is not a store: StoreError, reported by AccelstoreCommand
        raise click.BadParameter(str(error)) from None
    report = stream(dataset, workers, batches)
    shape = f"(3, {dataset.length.samples})"
    click.echo(f"store        {dataset.path}")
    click.echo(f"batches      {report.batches} of up to {batch_size} windows {shape}, {workers} worker(s), tasks: {', '.join(names) or '-'}, augment {'on' if augment else 'off'}")
    click.echo(f"first batch  {report.first_batch_s:.2f} s after start")
    click.echo(f"speed        {report.windows_per_second:,.0f} windows/s after the first batch ({report.windows:,} windows)")
    click.echo(f"x            mean {report.mean:+.4f} g, std {report.std:.4f} g")
    balance = ", ".join(f"{task} {count / report.windows:.3f}" for task, count in report.labels.items())
    click.echo(f"labels = 1   {balance or '-'}")
