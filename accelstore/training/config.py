"""The settings of a pre-training run, without importing torch.

Each field a user sets carries its command-line help in its metadata, from which
``accelstore pretrain`` builds its options (:func:`accelstore.cli.options.config_options`, which
documents the keys), so the command line and :class:`TrainConfig` cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelstore.models.variants import BACKBONE_FOR_WINDOW_S
from accelstore.pretext_tasks import DEFAULT_TASKS, TASKS, checked_tasks

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """One run of :func:`accelstore.training.pretrain.train`; saved as the run folder's config.json."""

    store: str
    out: str = field(metadata={
        "help": "Run folder: checkpoint.pt, best_encoder.pt, metrics.jsonl, config.json. Every rank must see it.", "folder": True})
    tasks: tuple[str, ...] = field(default=DEFAULT_TASKS, metadata={
        "help": f"Comma-separated pretext tasks, of: {', '.join(TASKS)}.", "choices": TASKS})
    window: int = field(default=10, metadata={
        "help": "Window length in seconds: harnet5, harnet10 or harnet30.", "choices": tuple(BACKBONE_FOR_WINDOW_S)})
    epochs: int = field(default=100, metadata={"help": "Most epochs to train.", "min": 1})
    batch_size: int = field(default=512, metadata={"help": "Windows per batch on each rank.", "min": 1})
    workers: int = field(default=4, metadata={
        "help": "DataLoader worker processes per rank (0: load in the training process).", "min": 0})
    width: float = field(default=1.0, metadata={
        "help": "Backbone channel multiplier (1: the published harnet; e.g. 0.125 for quick CPU runs).", "min": 0, "min_open": True})
    lr: float | None = field(default=None, metadata={
        "help": "Target learning rate. Default: 1e-4 × batch size × ranks / 512.", "min": 0, "min_open": True})
    warmup_epochs: int = field(default=5, metadata={"help": "Epochs of linear learning-rate warm-up (then constant).", "min": 0})
    patience: int = field(default=5, metadata={"help": "Stop after this many epochs without a lower validation loss.", "min": 1})
    checkpoint_every: int = field(default=1000, metadata={"help": "Also checkpoint every N steps (0: at epoch ends only).", "min": 0})
    log_every: int = field(default=50, metadata={"help": "Log training loss and accuracy every N steps.", "min": 1})
    max_steps: int | None = field(default=None, metadata={
        "help": "Stop after this many optimiser steps in all (counting those before a resume).", "min": 1})
    sampling: str = field(default="std", metadata={
        "help": "Draw windows with probability proportional to their movement (std), as the paper, or uniformly.",
        "choices": ("std", "uniform")})
    augment: bool = field(default=True, metadata={"help": "Random axis order and 3-D rotation before the pretext transforms."})
    seed: int = field(default=0, metadata={
        "help": "Seed of the weights, data order and transforms (each rank derives its own).", "min": 0})
    device: str | None = field(default=None, metadata={
        "help": "Where to train. Default: cuda when available.", "choices": ("cpu", "cuda")})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model."})
    deterministic: bool = field(default=False, metadata={"help": "Use deterministic algorithms only (slower; for reproducible runs)."})
    validate: bool = field(default=True, metadata={
        "help": "Train without the store's pretext validation set: no early stopping; best_encoder.pt is the last epoch's encoder.",
        "option": "--no-validation", "flag_value": False})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out exactly where its last checkpoint left it."})
    debug: bool = field(default=False, metadata={
        "help": "Also write, per rank, the ids of every training window consumed and the final weights to --out/debug/."})
    progress: bool = True  # a progress bar on rank 0 (the command line's --quiet turns it off)

    def __post_init__(self) -> None:
        self.tasks = checked_tasks(tuple(self.tasks))
        if self.window not in BACKBONE_FOR_WINDOW_S:
            raise ValueError(f"window must be one of {sorted(BACKBONE_FOR_WINDOW_S)} seconds, got {self.window}")
        if min(self.epochs, self.batch_size, self.log_every) < 1 or min(self.workers, self.warmup_epochs, self.checkpoint_every) < 0:
            raise ValueError("need epochs, batch_size, log_every >= 1 and workers, warmup_epochs, checkpoint_every >= 0")
