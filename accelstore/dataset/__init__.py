"""Training batches from a store: :class:`WindowDataset`, the torch IterableDataset, and what the loader delivers per second."""

from accelstore.dataset.windows import WindowDataset, worker_context

__all__ = ["WindowDataset", "worker_context"]
