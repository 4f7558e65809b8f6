"""The "harnet" ResNet-V2 1-D backbone of Yuan et al. 2024, its pretext and fine-tuning heads,
and a strict loader for the published checkpoints and our own.

Module and parameter names follow OxWearables/ssl-wearables exactly, so that its checkpoints
load: `feature_extractor.layer{1..5}.{i}.*` for the backbone, `aot_h` / `scale_h` / `permute_h` /
`time_w_h` for the pretext heads and `classifier` for the fine-tuning head.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from accelstore.models.variants import BACKBONE_FOR_WINDOW_S as BACKBONE_FOR_WINDOW_S  # re-exported
from accelstore.pretext_tasks import DEFAULT_TASKS, HEAD_NAMES, TASKS

logger = logging.getLogger(__name__)

Checkpoint = str | os.PathLike | Mapping[str, object]
"""A checkpoint file, or one already loaded (see `load_pretrained` for the forms it takes)."""


class Stage(NamedTuple):
    """One stage: Conv → n pre-activation ResBlocks → BN → ReLU → anti-aliased downsampling."""

    out_channels: int
    conv_kernel: int
    n_resblocks: int
    resblock_kernel: int
    factor: int  # downsampling stride
    order: int  # how many times the box filter is convolved with itself


# The strides shrink the window to exactly 1 time step: for harnet10 and harnet30 their product is the
# window length; harnet5's (108) reaches 1 from 150 samples through the rounding of each strided step.
HARNET_STAGES: dict[str, tuple[Stage, ...]] = {
    "harnet5": (  # 3 × 150: 30 Hz × 5 s
        Stage(64, 5, 2, 5, 2, 2),
        Stage(128, 5, 2, 5, 2, 2),
        Stage(256, 5, 2, 5, 3, 1),
        Stage(256, 5, 2, 5, 3, 1),
        Stage(512, 5, 0, 5, 3, 1),
    ),
    "harnet10": (  # 3 × 300
        Stage(64, 5, 2, 5, 2, 2),
        Stage(128, 5, 2, 5, 2, 2),
        Stage(256, 5, 2, 5, 5, 1),
        Stage(512, 5, 2, 5, 5, 1),
        Stage(1024, 5, 0, 5, 3, 1),
    ),
    "harnet30": (  # 3 × 900
        Stage(64, 5, 2, 5, 3, 1),
        Stage(128, 5, 2, 5, 3, 1),
        Stage(256, 5, 2, 5, 5, 1),
        Stage(512, 5, 2, 5, 5, 1),
        Stage(1024, 5, 0, 5, 4, 0),
    ),
}
PRETEXT_HEADS: tuple[str, ...] = tuple(HEAD_NAMES[task] for task in TASKS)
"""The pretext heads' names, as in the published checkpoints (``pretext_tasks.HEAD_NAMES``)."""
PUBLISHED_HEADS: tuple[str, ...] = tuple(HEAD_NAMES[task] for task in DEFAULT_TASKS)
HEAD_MODULES: tuple[str, ...] = tuple(f"{head}_h" for head in PRETEXT_HEADS) + ("classifier",)


def _circular_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv1d:
    """A 'same'-length convolution that wraps around the window instead of padding with zeros."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {kernel_size}")
    return nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     padding_mode="circular", bias=False)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv1 = _circular_conv(channels, channels, kernel_size)
        self.bn2 = nn.BatchNorm1d(channels)
        self.conv2 = _circular_conv(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.conv1(F.relu(self.bn1(x)))
        residual = self.conv2(F.relu(self.bn2(residual)))
        return x + residual


class Downsample(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): blur each channel, then keep every `factor`-th sample.

    The blur is a box of length `factor` convolved with itself `order` times (order 0: average
    pooling, 1: triangle, 2: quadratic B-spline), normalised to sum 1. It is fixed, so it is a
    buffer, not a parameter; it is persistent because the published checkpoints carry it.
    """

    def __init__(self, channels: int, factor: int, order: int) -> None:
        super().__init__()
        if factor < 2 or order * (factor - 1) % 2:
            raise ValueError(f"need factor >= 2 and order*(factor-1) even, got {factor=} {order=}")
        self.factor = factor
        self.padding = order * (factor - 1) // 2
        box = torch.ones(1, 1, factor, dtype=torch.float64)
        kernel = box
        for _ in range(order):  # full convolution (the box is symmetric, so no flip is needed)
            kernel = F.conv1d(kernel, box, padding=factor - 1)
        kernel = (kernel / kernel.sum()).float()
        self.register_buffer("kernel", kernel.repeat(channels, 1, 1))  # (C, 1, K): depth-wise

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.kernel, stride=self.factor, padding=self.padding,
                        groups=self.kernel.shape[0])


def _make_stage(in_channels: int, stage: Stage) -> nn.Sequential:
    # Indices matter for the published keys: 0 conv, 1..n ResBlocks, then BN, ReLU, Downsample.
    return nn.Sequential(
        _circular_conv(in_channels, stage.out_channels, stage.conv_kernel),
        *(ResBlock(stage.out_channels, stage.resblock_kernel) for _ in range(stage.n_resblocks)),
        nn.BatchNorm1d(stage.out_channels),
        nn.ReLU(inplace=True),
        Downsample(stage.out_channels, stage.factor, stage.order),
    )


def init_weights(module: nn.Module) -> None:
    """Kaiming normal (fan_out, relu) for conv and linear weights, zero linear biases, BN γ=1 β=0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Harnet(nn.Module):
    """The backbone: (B, 3, window samples) → (B, feature_dim).

    `width` scales every stage's channels (rounded, at least 1), for narrow models in tests and
    CPU runs; the published network is width 1.
    """

    def __init__(self, name: str = "harnet10", width: float = 1.0) -> None:
        super().__init__()
        if name not in HARNET_STAGES:
            raise ValueError(f"unknown backbone {name!r}; choose from {sorted(HARNET_STAGES)}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.name = name
        self.width = width
        self.feature_extractor = nn.Sequential()
        channels = 3  # x, y, z
        for i, stage in enumerate(HARNET_STAGES[name], start=1):
            scaled = stage._replace(out_channels=max(1, round(stage.out_channels * width)))
            self.feature_extractor.add_module(f"layer{i}", _make_stage(channels, scaled))
            channels = scaled.out_channels
        self.feature_dim = channels
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        features = self.feature_extractor(x)
        if features.shape[-1] != 1:  # a wrong window length would otherwise flatten silently
            raise ValueError(f"{self.name} got windows of {x.shape[-1]} samples; time shrank "
                             f"to {features.shape[-1]}, not 1")
        return features.flatten(1)


def build_backbone(name: str = "harnet10", width: float = 1.0) -> Harnet:
    """The backbone by name (see `BACKBONE_FOR_WINDOW_S` for the window length each one takes)."""
    return Harnet(name, width)


def harnet5(pretrained: Checkpoint | None = None, width: float = 1.0) -> Harnet:
    """The harnet5 backbone: 5-s windows at 30 Hz, (B, 3, 150) → (B, 512 × width) features.

    With ``pretrained`` (a checkpoint path or state_dict, e.g. of the published ssl-wearables
    model or of ``accelstore pretrain``'s best_encoder.pt), its weights are loaded strictly by
    :func:`load_pretrained`, which raises `CheckpointMismatchError` if they do not fit.
    """
    return _published("harnet5", pretrained, width)


def harnet10(pretrained: Checkpoint | None = None, width: float = 1.0) -> Harnet:
    """The harnet10 backbone: 10-s windows at 30 Hz, (B, 3, 300) → (B, 1024 × width) features.

    ``pretrained`` as for :func:`harnet5`.
    """
    return _published("harnet10", pretrained, width)


def harnet30(pretrained: Checkpoint | None = None, width: float = 1.0) -> Harnet:
    """The harnet30 backbone: 30-s windows at 30 Hz, (B, 3, 900) → (B, 1024 × width) features.

    ``pretrained`` as for :func:`harnet5`.
    """
    return _published("harnet30", pretrained, width)


def _published(name: str, pretrained: Checkpoint | None, width: float) -> Harnet:
    backbone = Harnet(name, width)
    if pretrained is not None:
        load_pretrained(backbone, pretrained)
    return backbone


class PretextHead(nn.Module):
    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(feature_dim, 2)  # transformed or not

    def forward(self, features: Tensor) -> Tensor:
        return self.linear1(features)


class PretextModel(Harnet):
    """Backbone + one binary head per enabled pretext task; forward returns {task: logits}."""

    def __init__(self, name: str = "harnet10", width: float = 1.0,
                 tasks: Sequence[str] = PUBLISHED_HEADS) -> None:
        super().__init__(name, width)
        unknown = set(tasks) - set(PRETEXT_HEADS)
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {PRETEXT_HEADS}, got {tasks}")
        self.tasks = tuple(t for t in PRETEXT_HEADS if t in tasks)
        for task in self.tasks:
            head = PretextHead(self.feature_dim)
            init_weights(head)
            self.add_module(f"{task}_h", head)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = super().forward(x)
        return {task: getattr(self, f"{task}_h")(features) for task in self.tasks}


def pretext_loss(logits: Mapping[str, Tensor], labels: Mapping[str, Tensor]) -> Tensor:
    """Mean over the tasks in `logits` of their cross-entropies (extra keys in `labels` are ignored)."""
    losses = [F.cross_entropy(task_logits, labels[task]) for task, task_logits in logits.items()]
    return torch.stack(losses).mean()


class ClassifierHead(nn.Module):
    def __init__(self, feature_dim: int, n_classes: int, hidden: int = 512) -> None:
        super().__init__()
        self.linear1 = nn.Linear(feature_dim, hidden)
        self.linear2 = nn.Linear(hidden, n_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear2(F.relu(self.linear1(features)))


class HarnetClassifier(Harnet):
    """Backbone + the fine-tuning MLP head: (B, 3, L) → (B, n_classes) logits."""

    def __init__(self, name: str = "harnet10", n_classes: int = 2, width: float = 1.0) -> None:
        super().__init__(name, width)
        self.classifier = ClassifierHead(self.feature_dim, n_classes)
        init_weights(self.classifier)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(super().forward(x))


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the backbone; raised before any weight is copied."""


@dataclass(frozen=True)
class LoadReport:
    source: str
    n_tensors: int
    ignored_heads: tuple[str, ...]

    def __str__(self) -> str:
        heads = ", ".join(self.ignored_heads) or "none"
        return f"loaded {self.n_tensors} backbone tensors from {self.source}; ignored heads: {heads}"


def _backbone_state_dict(checkpoint: object) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Unwrap a trainer checkpoint and a DDP `module.` prefix; split backbone keys from heads."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]  # our trainer's checkpoint: {"model": ..., "optimizer": ...}
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise CheckpointMismatchError(f"expected a non-empty state_dict, got {type(checkpoint).__name__}")
    state = dict(checkpoint)
    if all(key.startswith("module.") for key in state):  # saved from a DDP-wrapped model
        state = {key.removeprefix("module."): value for key, value in state.items()}
    backbone, heads, unknown = {}, set(), []
    for key, value in state.items():
        top = key.split(".", 1)[0]
        if top == "feature_extractor":
            backbone[key] = value
        elif top in HEAD_MODULES:
            heads.add(top)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError("unexpected keys outside the backbone and known heads: "
                                      + _first(f"{k} {_shape(state[k])}" for k in unknown))
    return backbone, tuple(sorted(heads))


def _first(descriptions: Iterable[str], n: int = 3) -> str:
    """The first `n` offending keys, and how many more there are."""
    descriptions = list(descriptions)
    more = f" (+{len(descriptions) - n} more)" if len(descriptions) > n else ""
    return ", ".join(descriptions[:n]) + more


def _shape(tensor: object) -> tuple[int, ...] | str:
    return tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__


def load_pretrained(model: nn.Module, checkpoint: Checkpoint) -> LoadReport:
    """Load backbone weights into `model` (a `Harnet` or any model with its `feature_extractor`).

    `checkpoint` is a path or an already loaded object: a plain state_dict, the same with the DDP
    `module.` prefix, or our trainer's `{"model": state_dict, ...}`; of a whole pre-training or
    fine-tuning model, or of a backbone alone. Head weights are ignored (the report names them).
    Everything is checked before anything is copied, so a mismatch leaves `model` untouched and
    raises `CheckpointMismatchError`. (`nn.Module.load_state_dict(strict=True)` copies what matches
    before it raises, i.e. it can leave a half-loaded model behind.)
    """
    source = "state_dict"
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    loaded, ignored_heads = _backbone_state_dict(checkpoint)

    target = model.feature_extractor
    expected = {f"feature_extractor.{k}": v for k, v in target.state_dict().items()}
    missing = [f"{k} {_shape(v)}" for k, v in expected.items() if k not in loaded]
    unexpected = [f"{k} {_shape(v)}" for k, v in loaded.items() if k not in expected]
    wrong_shape = [f"{k} {_shape(loaded[k])} vs model {_shape(v)}" for k, v in expected.items()
                   if k in loaded and _shape(loaded[k]) != _shape(v)]
    problems = [f"{what} {_first(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit {type(model).__name__} "
                                      f"(feature_dim {getattr(model, 'feature_dim', '?')}): "
                                      + "; ".join(problems))

    target.load_state_dict({k.removeprefix("feature_extractor."): v for k, v in loaded.items()})
    report = LoadReport(source, len(loaded), ignored_heads)
    logger.info("%s", report)
    return report
