"""``accelstore pretrain`` (self-supervised pre-training on a store, in one process or under torchrun) and
``accelstore stream`` (how fast the training loader delivers batches from a store, on this disk).

torch is imported when the command runs, not when the command line starts; the defaults here are
those of :class:`accelstore.training.pretrain.TrainConfig` (a test holds them equal).
"""

from __future__ import annotations

import logging
import os

import click

from accelstore.cli.errors import AccelstoreCommand
from accelstore.cli.options import comma_list
from accelstore.pretext_tasks import DEFAULT_TASKS, TASKS


@click.command("pretrain", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoint.pt, best_encoder.pt, metrics.jsonl, config.json. Every rank must see it.")
@click.option("--tasks", default=",".join(DEFAULT_TASKS), show_default=True, callback=comma_list(TASKS), help=f"Comma-separated pretext tasks, of: {', '.join(TASKS)}.")
@click.option("--window", type=click.Choice(["5", "10", "30"]), default="10", show_default=True, help="Window length in seconds: harnet5, harnet10 or harnet30.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Most epochs to train.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True, help="Windows per batch on each rank.")
@click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True, help="DataLoader worker processes per rank (0: load in the training process).")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Backbone channel multiplier (1: the published harnet; e.g. 0.125 for quick CPU runs).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Target learning rate. Default: 1e-4 × batch size × ranks / 512.")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=5, show_default=True, help="Epochs of linear learning-rate warm-up (then constant).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True, help="Stop after this many epochs without a lower validation loss.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=1000, show_default=True, help="Also checkpoint every N steps (0: at epoch ends only).")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True, help="Log training loss and accuracy every N steps.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many optimiser steps in all (counting those before a resume).")
@click.option("--sampling", type=click.Choice(["std", "uniform"]), default="std", show_default=True, help="Draw windows with probability proportional to their movement (std), as the paper, or uniformly.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random axis order and 3-D rotation before the pretext transforms.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the weights, data order and transforms (each rank derives its own).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Where to train. Default: cuda when available.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model.")
@click.option("--deterministic", is_flag=True, help="Use deterministic algorithms only (slower; for reproducible runs).")
@click.option("--no-validation", is_flag=True, help="Train without the store's pretext validation set: no early stopping; best_encoder.pt is the last epoch's encoder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left it.")
@click.option("--debug", is_flag=True, help="Also write, per rank, the ids of every training window consumed and the final weights to --out/debug/.")
@click.pass_context
def pretrain_command(
    ctx: click.Context, store: str, out: str, tasks: tuple[str, ...], window: str, epochs: int, batch_size: int, workers: int,
    width: float, lr: float | None, warmup_epochs: int, patience: int, checkpoint_every: int, log_every: int,
    max_steps: int | None, sampling: str, augment: bool, seed: int, device: str | None, compile_model: bool,
    deterministic: bool, no_validation: bool, resume: bool, debug: bool,
) -> None:  # fmt: skip
    """Pre-train the harnet encoder on STORE with the pretext tasks (arrow of time, permutation,
    time warp), checkpointing to --out.

    In one process, or on several GPUs or nodes under torchrun:
    `torchrun --nproc_per_node=N -m accelstore pretrain STORE --out RUN/`. The validation set
    comes from the store's held-out participants (`accelstore pretext`); training stops after
    --patience epochs without improvement, and RUN/best_encoder.pt holds the best encoder.
    """
    from accelstore.training.pretrain import TrainConfig, train

    main_rank = int(os.environ.get("RANK", 0)) == 0
    if not main_rank:
        logging.getLogger("accelstore").setLevel(logging.WARNING)
    try:
        config = TrainConfig(
            store=store, out=out, tasks=tasks, window=int(window), epochs=epochs, batch_size=batch_size,
            workers=workers, width=width, lr=lr, warmup_epochs=warmup_epochs, patience=patience,
            checkpoint_every=checkpoint_every, log_every=log_every, max_steps=max_steps, sampling=sampling,
            augment=augment, seed=seed, device=device, compile=compile_model, deterministic=deterministic,
            validate=not no_validation, resume=resume, debug=debug, progress=(ctx.obj or {}).get("progress", True),
        )  # fmt: skip
        result = train(config)
    except (KeyError, ValueError) as error:  # an OSError (no checkpoint, a taken --out) is AccelstoreCommand's one line
        raise click.UsageError(str(error)) from None
    if main_rank:
        val = result.validation
        score = f"; last validation loss {val['loss']:.4f}, accuracy {val['acc']:.3f}" if val else ""
        click.echo(f"{out}: stopped ({result.stopped}) after {result.progress.step} steps, {result.progress.epoch} epochs{score}; "
                   f"encoder in {result.out / 'best_encoder.pt'}")


@click.command("stream", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader worker processes (0: load in this process).")
@click.option("--batches", type=click.IntRange(min=1), default=200, show_default=True, help="Batches to take before reporting.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True, help="Windows per batch.")
@click.option("--window", type=click.Choice(["5", "10", "30"]), default="10", show_default=True, help="Window length, seconds.")
@click.option("--tasks", type=str, default=",".join(DEFAULT_TASKS), show_default=True, callback=comma_list(TASKS, allow_empty=True), help="Comma-separated pretext tasks ('' for none).")
@click.option("--sampling", type=click.Choice(["uniform", "std"]), default="uniform", show_default=True, help="Windows drawn uniformly or with probability proportional to std.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random axis order and rotation.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the shuffle, sampling and transforms.")
def stream_command(store: str, workers: int, batches: int, batch_size: int, window: str, tasks: tuple[str, ...], sampling: str, augment: bool, seed: int) -> None:
    """Stream training batches from STORE and print the loader's speed and batch statistics."""
    from accelstore.dataset.throughput import stream
    from accelstore.dataset.windows import WindowDataset

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


if __name__ == "__main__":  # `python -m accelstore.cli.training`, e.g. under torchrun
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pretrain_command()
