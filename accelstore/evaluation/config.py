"""The settings of an evaluation run, without importing torch.

Each field a user sets carries its command-line help in its metadata, from which
``accelstore evaluate`` builds its options (:func:`accelstore.cli.options.config_options`, which
documents the keys), so the command line and :class:`EvaluationConfig` cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MODELS", "PRETRAINED_MODELS", "EvaluationConfig"]

MODELS: tuple[str, ...] = ("rf", "scratch", "frozen", "finetune")
PRETRAINED_MODELS: tuple[str, ...] = ("frozen", "finetune")
"""The models that start from a pre-trained encoder."""


@dataclass(frozen=True)
class EvaluationConfig:
    """How :func:`accelstore.evaluation.evaluate.evaluate` runs: which models, how the networks are
    built and trained, the random forest, and the seed that makes the run reproducible."""

    models: tuple[str, ...] | None = field(default=None, metadata={
        "help": f"Comma-separated models out of {','.join(MODELS)}. Default: all four with --encoder, else rf,scratch.",
        "choices": MODELS})
    width: float = field(default=1.0, metadata={
        "help": "Channel width of the backbone relative to the published harnet (1); must match --encoder.", "min": 0, "min_open": True})
    epochs: int = field(default=100, metadata={
        "help": "Most epochs per network and fold (early stopping on a validation subject split ends most sooner).", "min": 1})
    patience: int = field(default=5, metadata={"help": "Epochs without a lower validation loss before a network stops.", "min": 1})
    batch_size: int = field(default=64, metadata={"help": "Windows per training batch.", "min": 2})
    learning_rate: float = field(default=1e-4, metadata={
        "help": "Adam learning rate of the networks.", "option": "--lr", "min": 0, "min_open": True})
    augment: bool = field(default=True, metadata={
        "help": "Random axis order and 3-D rotation of the training windows (docs/architecture.md, 'Pretext tasks and augmentation')."})
    trees: int = field(default=3000, metadata={"help": "Trees of the balanced random forest (the paper: 3,000).", "min": 1})
    jobs: int = field(default=1, metadata={"help": "Processes that grow the random forest's trees.", "min": 1})
    device: str | None = field(default=None, metadata={"help": "Torch device for the networks. Default: cuda when available, else cpu."})
    seed: int = field(default=0, metadata={"help": "Seed: the same seed gives the same results."})
    validation_fraction: float = 0.2  # of each fold's training subjects (at least one) held out for early stopping

    def models_for(self, with_encoder: bool) -> tuple[str, ...]:
        """The models to run: ``models``, or by default all four with an encoder, else those that need none."""
        if self.models is not None:
            return tuple(self.models)
        return MODELS if with_encoder else tuple(model for model in MODELS if model not in PRETRAINED_MODELS)
