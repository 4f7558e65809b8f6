"""``accelstore stream``: how fast the training loader delivers batches from a store, on this disk.

torch is imported when the command runs, not when the command line starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from accelstore.dataset.windows import WindowDataset


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

    from accelstore.dataset.windows import worker_context

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
