"""Self-supervised pre-training of harnet on a store (docs/architecture.md, "Pre-training"), in one process or under torchrun.

    accelstore pretrain STORE --out RUN/                                   # one process
    torchrun --nproc_per_node=8 -m accelstore pretrain STORE --out RUN/    # DDP on one node
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        -m accelstore pretrain STORE --out RUN/                            # DDP on four nodes

The file reads top to bottom: configuration, distributed setup, model and optimiser, data,
one training step, validation, metrics, checkpoints, and the loop. Choices:

- Learning rate: Adam (amsgrad) at ``1e-4 × global batch / 512`` unless ``lr`` is given, where the
  global batch is ``batch_size × world_size`` (``batch_size`` is per rank). The warm-up is per
  epoch: epoch ``e`` runs at ``min(1, (e + 1) / warmup_epochs)`` of the target and then stays
  there (the reference code's warm-up kept growing).
- Validation needs the store's fixed pretext set (``accelstore pretext``: held-out participants,
  10-s windows) holding every trained task: the trainer then never trains on the held-out
  participants, stops early after ``patience`` epochs without a lower validation loss and
  exports the encoder of the best epoch. Without that set it refuses to start, unless
  ``validate=False``: then there is no early stopping and ``best_encoder.pt`` is the last
  epoch's encoder.
- Ranks step in lockstep: each step they agree (on a gloo group, so that no GPU waits) whether
  every rank still has a batch, and the epoch ends for all at the first rank that runs out. So
  every rank has consumed the same number of batches, and one loader state resumes them all.
- Batch-norm statistics are local to each rank during a step (DDP broadcasts rank 0's at each
  forward); they are broadcast from rank 0 before validation and at the end, so that every rank
  validates and ends with the same model.
- Training batches are whole (``drop_last``); the last partial batch of a worker is skipped.

Files in the run folder (which every rank must see, across nodes too):
``config.json``; ``checkpoint.pt`` (model, optimiser, scheduler, loader state, progress, every
rank's RNG states; written every ``checkpoint_every`` steps and at each epoch's end, atomically,
loadable with ``torch.load(weights_only=True)``); ``best_encoder.pt`` (the backbone's plain
state_dict, which :func:`accelstore.models.harnet.load_pretrained` takes); ``metrics.jsonl`` (one JSON
object per logged step and per validation); ``tensorboard/`` when TensorBoard is installed; and
with ``debug``, ``debug/windows_rank{R}.csv`` (participant row, window, offset of every training
window rank R consumed) and ``debug/model_rank{R}.pt`` (its final weights).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from accelstore.dataset.windows import WindowDataset, worker_context
from accelstore.models.harnet import BACKBONE_FOR_WINDOW_S, PretextModel, pretext_loss
from accelstore.pretext_tasks import HEAD_NAMES
from accelstore.store import ValidationSet, read_holdout, read_validation_set
from accelstore.training.config import TrainConfig

log = logging.getLogger(__name__)

"""Pretext task (the loader's and the command line's name) → the model's head."""
CHECKPOINT, BEST_ENCODER, METRICS, CONFIG = "checkpoint.pt", "best_encoder.pt", "metrics.jsonl", "config.json"
RESUME_FIXED = ("store", "tasks", "window", "batch_size", "workers", "width", "lr", "sampling", "augment", "seed")
"""Settings a resumed run must share with the checkpoint's (the others may change, e.g. epochs)."""


@dataclass
class Progress:
    """Where the run is; saved in each checkpoint."""

    epoch: int = 0
    step: int = 0  # optimiser steps since the start
    batches: int = 0  # batches consumed in this epoch (the same on every rank)
    best_loss: float = math.inf
    bad_epochs: int = 0  # epochs since the validation loss last fell


# --------------------------------------------------------------------------- distributed setup


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    control: Any = None  # a gloo process group for control flow (None in one process)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """One process, or a DDP rank from torchrun's environment (NCCL on CUDA, gloo on CPU)."""
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return Dist(0, 0, 1, torch.device(kind))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    control = torch_dist.new_group(backend="gloo") if kind == "cuda" else torch_dist.group.WORLD
    return Dist(rank, local_rank, world_size, torch.device(kind, local_rank) if kind == "cuda" else torch.device(kind), control)


def teardown_distributed(dist: Dist) -> None:
    if dist.world_size > 1:
        torch_dist.destroy_process_group()


def all_ranks_have(batch: object, dist: Dist) -> bool:
    """Whether every rank got a batch this step (each rank must call this every step)."""
    if dist.world_size == 1:
        return batch is not None
    have = torch.tensor([batch is not None], dtype=torch.int32)
    torch_dist.all_reduce(have, op=torch_dist.ReduceOp.MIN, group=dist.control)
    return bool(have.item())


def sum_over_ranks(values: Tensor, dist: Dist) -> Tensor:
    if dist.world_size > 1:
        torch_dist.all_reduce(values)
    return values


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """Batch-norm statistics from rank 0 to every rank."""
    if dist.world_size > 1:
        for buffer in model.buffers():
            torch_dist.broadcast(buffer, src=0)


# --------------------------------------------------------------------------- seeds and RNG states


def rank_seed(seed: int, rank: int) -> int:
    """A rank's seed, derived from the run's seed (never the clock)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """This process's RNG states as tensors and plain types (so ``weights_only`` loads them)."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached": cached},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))


def gather_rng_states(dist: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG states, in rank order (each rank must call this)."""
    mine = rng_states()
    if dist.world_size == 1:
        return [mine]
    states: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(states, mine, group=dist.control)
    return states


# --------------------------------------------------------------------------- model and optimiser


def target_lr(config: TrainConfig, world_size: int) -> float:
    return config.lr if config.lr is not None else 1e-4 * config.batch_size * world_size / 512


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """Linear warm-up over ``warmup_epochs`` epochs that stops at the target."""
    return min(1.0, (epoch + 1) / warmup_epochs) if warmup_epochs else 1.0


def build_model(config: TrainConfig) -> PretextModel:
    """The same initial weights on every rank: the run's seed, not the rank's."""
    torch.manual_seed(config.seed)
    heads = [HEAD_NAMES[task] for task in config.tasks]
    return PretextModel(BACKBONE_FOR_WINDOW_S[config.window], config.width, heads)


def build_optimizer(model: nn.Module, config: TrainConfig, world_size: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.Adam(model.parameters(), lr=target_lr(config, world_size), amsgrad=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: warmup_factor(epoch, config.warmup_epochs))
    return optimizer, scheduler


def configure_backends(deterministic: bool) -> None:
    """Deterministic algorithms only, or cuDNN's autotuner (batch shapes are fixed: drop_last)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA; full precision elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# --------------------------------------------------------------------------- data


def training_split(store: str) -> str | None:
    """Leave the held-out participants out whenever the store names them."""
    return "train" if read_holdout(store) is not None else None


def build_dataset(config: TrainConfig, dist: Dist) -> WindowDataset:
    return WindowDataset(
        config.store, config.batch_size, seconds=config.window, sampling=config.sampling, tasks=config.tasks,
        augment=config.augment, seed=config.seed, split=training_split(config.store), drop_last=True,
        rank=dist.rank, world_size=dist.world_size,
    )  # fmt: skip


def build_loader(dataset: WindowDataset, config: TrainConfig, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset, batch_size=None, num_workers=config.workers, persistent_workers=config.workers > 0,
        multiprocessing_context=worker_context() if config.workers else None, pin_memory=device.type == "cuda",
    )  # fmt: skip


def load_validation(config: TrainConfig, dist: Dist) -> ValidationSet | None:
    """This rank's share of the store's fixed pretext validation set (None without validation)."""
    if not config.validate:
        log.warning("no validation: no early stopping, and best_encoder.pt is the last epoch's encoder")
        return None
    try:
        validation = read_validation_set(config.store)
    except ValueError as error:
        raise ValueError(f"{error}; or train without validation (--no-validation)") from None
    missing = [task for task in config.tasks if task not in validation.labels]
    if missing or config.window != 10:
        raise ValueError(f"the store's validation set has 10-s windows and tasks {list(validation.labels)}; "
                         f"this run trains {list(config.tasks)} on {config.window}-s windows: rebuild it, or train without validation (--no-validation)")
    share = slice(dist.rank, None, dist.world_size)
    labels = {task: validation.labels[task][share] for task in config.tasks}
    log.info("validation: %d windows from %d held-out participant(s)", len(validation.x), len(validation.holdout))
    return ValidationSet(validation.x[share], labels, validation.row[share], validation.window[share], validation.holdout, validation.attrs)


# --------------------------------------------------------------------------- one step


def to_device(batch: Mapping[str, Tensor], tasks: Sequence[str], device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """Inputs and labels keyed by the model's head names."""
    x = batch["x"].to(device, non_blocking=True)
    return x, {HEAD_NAMES[task]: batch[task].to(device, non_blocking=True) for task in tasks}


def task_stats(logits: Mapping[str, Tensor], labels: Mapping[str, Tensor]) -> Tensor:
    """[summed cross-entropy per task…, correct per task…, windows] of one batch, float64."""
    with torch.no_grad():
        losses = [F.cross_entropy(out.float(), labels[head], reduction="sum") for head, out in logits.items()]
        correct = [(out.argmax(1) == labels[head]).sum() for head, out in logits.items()]
        n = torch.full((), len(next(iter(labels.values()))), device=losses[0].device)  # a fill: no host-device sync
        return torch.stack([*losses, *correct, n]).double()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Mapping[str, Tensor], tasks: Sequence[str], device: torch.device) -> Tensor:
    """One optimiser step on the mean of the tasks' cross-entropies; returns the batch's stats."""
    x, labels = to_device(batch, tasks, device)
    with autocast(device):
        logits = model(x)
        loss = pretext_loss(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return task_stats(logits, labels)


def summarise(stats: Tensor, tasks: Sequence[str]) -> dict[str, float]:
    """Per-task and mean loss and accuracy from summed stats."""
    values = stats.tolist()
    k, n = len(tasks), max(values[-1], 1.0)
    summary = {f"loss/{task}": values[i] / n for i, task in enumerate(tasks)}
    summary |= {f"acc/{task}": values[k + i] / n for i, task in enumerate(tasks)}
    summary["loss"] = sum(summary[f"loss/{task}"] for task in tasks) / k
    summary["acc"] = sum(summary[f"acc/{task}"] for task in tasks) / k
    return summary


# --------------------------------------------------------------------------- validation


def validation_metrics(model: PretextModel, validation: ValidationSet, config: TrainConfig, dist: Dist) -> dict[str, float]:
    """Loss and accuracy on the whole validation set (each rank evaluates its share)."""
    model.eval()
    stats = torch.zeros(2 * len(config.tasks) + 1, dtype=torch.float64, device=dist.device)
    with torch.no_grad(), autocast(dist.device):
        for start in range(0, len(validation.x), config.batch_size):
            part = slice(start, start + config.batch_size)
            batch = {"x": torch.from_numpy(validation.x[part])} | {t: torch.from_numpy(v[part]) for t, v in validation.labels.items()}
            x, labels = to_device(batch, config.tasks, dist.device)
            stats += task_stats(model(x), labels)
    model.train()
    return summarise(sum_over_ranks(stats, dist), config.tasks)


# --------------------------------------------------------------------------- metrics


class MetricsLog:
    """JSON lines in ``metrics.jsonl`` and, when installed, TensorBoard; rank 0 writes."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.file: IO[str] | None = (out / METRICS).open("a") if enabled else None
        self.tensorboard = _summary_writer(out) if enabled else None

    def write(self, split: str, progress: Progress, values: Mapping[str, float]) -> None:
        if self.file is None:
            return
        record = {"split": split, "epoch": progress.epoch, "step": progress.step, **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"{split}/{key}", value, progress.step)

    def close(self) -> None:
        for sink in (self.file, self.tensorboard):
            if sink is not None:
                sink.close()


def _summary_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("TensorBoard is not installed: metrics go to %s only", METRICS)
        return None
    return SummaryWriter(str(out / "tensorboard"))


@dataclass
class Meter:
    """Training stats and windows since the last log line."""

    stats: Tensor | None = None
    windows: int = 0
    since: float = field(default_factory=time.perf_counter)

    def add(self, stats: Tensor, windows: int) -> None:
        self.stats = stats if self.stats is None else self.stats + stats
        self.windows += windows

    def flush(self, tasks: Sequence[str], dist: Dist) -> dict[str, float]:
        """Summary over every rank since the last flush (each rank must call this), then reset."""
        elapsed = time.perf_counter() - self.since
        summary = summarise(sum_over_ranks(self.stats, dist), tasks)
        summary["windows_per_s"] = self.windows * dist.world_size / elapsed
        self.stats, self.windows, self.since = None, 0, time.perf_counter()
        return summary


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, model: nn.Module, optimizer, scheduler, dataset: WindowDataset, progress: Progress, config: TrainConfig, dist: Dist) -> None:
    """Everything an exact resume needs, written atomically by rank 0 (every rank must call this)."""
    states = gather_rng_states(dist)
    if not dist.main:
        return
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "loader": dataset.state_dict(progress.batches),
        "progress": asdict(progress),
        "rng": states,
        "config": asdict(config),
    }
    _save_atomically(checkpoint, out / CHECKPOINT)
    log.debug("checkpoint at step %d (epoch %d, batch %d)", progress.step, progress.epoch, progress.batches)


def _save_atomically(obj: object, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def load_checkpoint(out: Path, model: nn.Module, optimizer, scheduler, dataset: WindowDataset, config: TrainConfig, dist: Dist) -> Progress:
    checkpoint = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
    changed = [key for key in RESUME_FIXED if _plain(checkpoint["config"][key]) != _plain(getattr(config, key))]
    if changed:
        raise ValueError(f"cannot resume {out}: {', '.join(changed)} differ from the checkpoint's")
    if len(checkpoint["rng"]) != dist.world_size:
        raise ValueError(f"cannot resume {out}: it ran on {len(checkpoint['rng'])} rank(s), this run has {dist.world_size}")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    dataset.load_state_dict(checkpoint["loader"])
    set_rng_states(checkpoint["rng"][dist.rank])
    progress = Progress(**checkpoint["progress"])
    log.info("resumed %s at step %d (epoch %d, batch %d)", out, progress.step, progress.epoch, progress.batches)
    return progress


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def export_encoder(model: PretextModel, path: Path) -> None:
    """The backbone alone, as a plain state_dict (what ``load_pretrained`` takes)."""
    backbone = {key: value for key, value in model.state_dict().items() if key.startswith("feature_extractor.")}
    _save_atomically(backbone, path)


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class TrainResult:
    out: Path
    progress: Progress
    stopped: str  # "epochs", "patience" or "max_steps"
    validation: dict[str, float]  # the last validation's summary (empty without validation)


def train(config: TrainConfig) -> TrainResult:
    """Pre-train until ``epochs``, early stopping or ``max_steps``; see the module docstring."""
    dist = setup_distributed(config.device)
    try:
        return _train(config, dist)
    finally:
        teardown_distributed(dist)


def _check_out(config: TrainConfig) -> Path:
    """The run folder: a new one, or one with a checkpoint to resume."""
    out = Path(config.out)
    has_checkpoint = (out / CHECKPOINT).exists()
    if config.resume and not has_checkpoint:
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    if not config.resume and has_checkpoint:
        raise FileExistsError(f"{out} already holds a run: resume it, or choose another output folder")
    return out


def _create_out(out: Path, config: TrainConfig, dist: Dist) -> None:
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(asdict(config), indent=2) + "\n")
        if config.debug:
            (out / "debug").mkdir(exist_ok=True)
    if dist.world_size > 1:
        torch_dist.barrier(group=dist.control)


def finished(progress: Progress, config: TrainConfig) -> str:
    """Why training should stop now ("" if it should go on)."""
    if config.max_steps is not None and progress.step >= config.max_steps:
        return "max_steps"
    if progress.bad_epochs >= config.patience:
        return "patience"
    return "epochs" if progress.epoch >= config.epochs else ""


def _train(config: TrainConfig, dist: Dist) -> TrainResult:
    configure_backends(config.deterministic)
    out = _check_out(config)
    model = build_model(config).to(dist.device)
    optimizer, scheduler = build_optimizer(model, config, dist.world_size)
    validation = load_validation(config, dist)
    dataset = build_dataset(config, dist)
    _create_out(out, config, dist)
    if config.resume:
        progress = load_checkpoint(out, model, optimizer, scheduler, dataset, config, dist)
    else:
        progress = Progress()
        seed_everything(rank_seed(config.seed, dist.rank))
    ddp = model
    if dist.world_size > 1:
        ddp = DistributedDataParallel(model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    step_model = torch.compile(ddp) if config.compile else ddp
    loader = build_loader(dataset, config, dist.device)
    metrics = MetricsLog(out, dist.main)
    windows_file = (out / "debug" / f"windows_rank{dist.rank}.csv").open("a") if config.debug else None
    bar = tqdm(total=config.max_steps, initial=progress.step, unit="step", disable=not (dist.main and config.progress))
    log.info("%s width %g, tasks %s, %d rank(s) × batch %d on %s, lr %.2e", model.name, config.width, ",".join(config.tasks),
             dist.world_size, config.batch_size, dist.device, target_lr(config, dist.world_size))
    last_validation: dict[str, float] = {}

    def checkpoint() -> None:
        save_checkpoint(out, model, optimizer, scheduler, dataset, progress, config, dist)

    def validate() -> dict[str, float]:
        sync_buffers(model, dist)
        if validation is None:
            return {}
        summary = validation_metrics(model, validation, config, dist)
        metrics.write("val", progress, summary)
        log.info("epoch %d step %d: validation loss %.4f, accuracy %.3f", progress.epoch, progress.step, summary["loss"], summary["acc"])
        return summary

    meter = Meter()
    while not finished(progress, config):
        dataset.set_epoch(progress.epoch)  # keeps a resume point loaded for this epoch
        batches: Iterator[dict[str, Tensor]] = iter(loader)
        while not finished(progress, config) and all_ranks_have(batch := next(batches, None), dist):
            meter.add(train_step(step_model, optimizer, batch, config.tasks, dist.device), len(batch["x"]))
            progress.step += 1
            progress.batches += 1
            bar.update()
            if windows_file is not None:
                record_windows(windows_file, batch)
            if progress.step % config.log_every == 0:
                summary = meter.flush(config.tasks, dist) | {"lr": optimizer.param_groups[0]["lr"]}
                metrics.write("train", progress, summary)
                bar.set_postfix(loss=f"{summary['loss']:.3f}", acc=f"{summary['acc']:.3f}", windows_s=f"{summary['windows_per_s']:,.0f}")
            if config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                checkpoint()
        epoch_ended = not finished(progress, config)  # else max_steps stopped it mid-epoch
        if epoch_ended and progress.batches == 0:
            raise ValueError(f"epoch {progress.epoch}: a rank had no whole batch of {config.batch_size} (too few windows for this batch and world size)")
        last_validation = validate()
        improved = _keep_if_best(last_validation, model, out, progress, dist)
        if epoch_ended:  # patience counts whole epochs only
            progress.bad_epochs = 0 if improved or validation is None else progress.bad_epochs + 1
            progress.epoch, progress.batches = progress.epoch + 1, 0
            scheduler.step()
            dataset.set_epoch(progress.epoch)
        checkpoint()
    bar.close()
    metrics.close()
    if windows_file is not None:
        windows_file.close()
        torch.save(model.state_dict(), out / "debug" / f"model_rank{dist.rank}.pt")
    stopped = finished(progress, config)
    log.info("stopped (%s) after %d step(s), %d epoch(s); best validation loss %.4f", stopped, progress.step, progress.epoch, progress.best_loss)
    return TrainResult(out, progress, stopped, last_validation)


def record_windows(file: IO[str], batch: Mapping[str, Tensor]) -> None:
    """Append the batch's (participant row, window, offset) ids, one window a line."""
    ids = torch.stack([batch["participant"], batch["window"], batch["offset"]], dim=1)
    np.savetxt(file, ids.numpy(), fmt="%d", delimiter=",")


def _keep_if_best(summary: Mapping[str, float], model: PretextModel, out: Path, progress: Progress, dist: Dist) -> bool:
    """Export the encoder if the validation loss fell (always, without validation); say whether it fell."""
    improved = bool(summary) and summary["loss"] < progress.best_loss
    if improved:
        progress.best_loss = summary["loss"]
    if (improved or not summary) and dist.main:
        export_encoder(model, out / BEST_ENCODER)
    return improved
