"""``accelstore features`` and ``pretext``: Dask jobs that recompute a store's window features and build its pretext validation set."""

from __future__ import annotations

import click

from accelstore.cli.errors import EXIT_OK, EXIT_PARTIAL, AccelstoreCommand
from accelstore.cli.options import (
    break_lease_option,
    comma_list,
    dask_options,
    participants_option,
    show_progress,
)
from accelstore.pretext_tasks import DEFAULT_TASKS, TASKS


@click.command("features", cls=AccelstoreCommand)
@click.argument("store", type=str)
@participants_option
@dask_options
@break_lease_option
@click.pass_context
def features_command(ctx: click.Context, store: str, participants: tuple[str, ...], workers: int | None, scheduler: str | None, break_lease: bool) -> None:
    """Recompute valid, std, enmo and the day summary of STORE from its acceleration.

    Idempotent: participants whose stored features already match are left untouched.
    Exit status: 0 done, 1 some participants failed, 2 bad usage (unknown participant, not a store).
    """
    from accelstore.pipelines.features import recompute

    try:
        report = recompute(store, participants or None, workers=workers, scheduler=scheduler, progress=show_progress(ctx), break_lease=break_lease)
    except KeyError as error:  # an unknown participant; not a store, a damaged one: StoreError, for AccelstoreCommand
        raise click.BadParameter(str(error.args[0]), param_hint="--participants") from None
    click.echo(f"{store}: {len(report.recomputed)} recomputed, {len(report.changed)} changed, {len(report.failed)} failed")
    for pid, message in sorted(report.failed.items()):
        click.echo(f"  {pid}: {message}", err=True)
    ctx.exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@click.command("pretext", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--windows", type=click.IntRange(min=1), required=True, help="Windows in the validation set.")
@click.option("--holdout-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), required=True, help="Fraction of participants held out of training.")
@click.option("--seed", type=int, required=True, help="Seed of the hold-out, the draw and the transforms.")
@click.option("--tasks", type=str, default=",".join(DEFAULT_TASKS), show_default=True, callback=comma_list(TASKS), help=f"Comma-separated pretext tasks, of: {', '.join(TASKS)}.")
@dask_options
@break_lease_option
@click.pass_context
def pretext_command(ctx: click.Context, store: str, windows: int, holdout_fraction: float, seed: int, tasks: tuple[str, ...], workers: int | None, scheduler: str | None, break_lease: bool) -> None:
    """Build STORE's fixed pretext validation set from held-out participants.

    Holds out a seeded fraction of the participants (recorded in the store so that training skips
    them), draws --windows of their valid windows with probability proportional to std, applies
    the pretext transforms and stores inputs and labels under pretext/ in STORE.
    """
    from accelstore.pipelines.pretext_validation import build_validation_set

    try:
        report = build_validation_set(
            store, windows, holdout_fraction, seed, tasks, workers=workers, scheduler=scheduler, progress=show_progress(ctx),
            break_lease=break_lease,
        )
    except ValueError as error:  # too few participants, …; not a store: StoreError, for AccelstoreCommand
        raise click.UsageError(str(error)) from None
    click.echo(f"{store}: {report.windows} windows from {len(report.drawn)} of {len(report.holdout)} held-out participant(s)")
