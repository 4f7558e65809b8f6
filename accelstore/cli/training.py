"""``accelstore pretrain`` (self-supervised pre-training on a store, in one process or under torchrun) and
``accelstore stream`` (how fast the training loader delivers batches from a store, on this disk).

torch is imported when the command runs, not when the command line starts: ``pretrain``'s options
are built from the fields of :class:`accelstore.training.config.TrainConfig`, which does not import it.
"""

from __future__ import annotations

import logging
import os

import click

from accelstore.cli.errors import AccelstoreCommand
from accelstore.cli.options import comma_list, config_options, show_progress
from accelstore.pretext_tasks import DEFAULT_TASKS, TASKS
from accelstore.training.config import TrainConfig


@click.command("pretrain", cls=AccelstoreCommand)
@click.argument("store", type=str)
@config_options(TrainConfig)
@click.pass_context
def pretrain_command(ctx: click.Context, **settings: object) -> None:
    """Pre-train the harnet encoder on STORE with the pretext tasks (arrow of time, permutation,
    time warp), checkpointing to --out.

    In one process, or on several GPUs or nodes under torchrun:
    `torchrun --nproc_per_node=N -m accelstore pretrain STORE --out RUN/`. The validation set
    comes from the store's held-out participants (`accelstore pretext`); training stops after
    --patience epochs without improvement, and RUN/best_encoder.pt holds the best encoder.
    """
    from accelstore.training.pretrain import train

    main_rank = int(os.environ.get("RANK", 0)) == 0
    if not main_rank:
        logging.getLogger("accelstore").setLevel(logging.WARNING)
    try:
        config = TrainConfig(**settings, progress=show_progress(ctx))
        result = train(config)
    except (KeyError, ValueError) as error:  # an OSError (no checkpoint, a taken --out) is AccelstoreCommand's one line
        raise click.UsageError(str(error)) from None
    if main_rank:
        val = result.validation
        score = f"; last validation loss {val['loss']:.4f}, accuracy {val['acc']:.3f}" if val else ""
        click.echo(f"{config.out}: stopped ({result.stopped}) after {result.progress.step} steps, {result.progress.epoch} epochs{score}; "
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
