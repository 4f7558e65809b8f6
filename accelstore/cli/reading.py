"""``accelstore info``, ``query`` and ``plot``: what a store holds, one participant's windows, a picture of them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from accelstore.cli.errors import EXIT_PARTIAL, AccelstoreCommand
from accelstore.cli.options import opened_store


@click.command("info", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def info(store: str, as_json: bool) -> None:
    """Summarise STORE: participants, person-days, valid hours, bytes stored (the complete
    participants' data, as recorded at ingest, and the tables), devices, failures."""
    opened = opened_store(store)
    summary = opened.info()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"store          {summary['path']}")
    click.echo(f"participants   {summary['participants']} (rows reserved: {summary['rows']})")
    click.echo(f"person-days    {summary['person_days']:.2f}")
    click.echo(f"valid hours    {summary['valid_hours']:.2f}")
    click.echo(f"bytes stored   {summary['bytes_stored']:,}")
    if summary["person_days"]:
        click.echo(f"bytes/person-day {summary['bytes_stored'] / summary['person_days']:,.0f}")
    click.echo(f"devices        {', '.join(f'{k}: {v}' for k, v in summary['devices'].items()) or '-'}")
    click.echo(f"failures       {summary['failures']}")
    for _, row in opened.failures.iterrows():
        click.echo(f"  {row['message']}")


@click.command("query", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.argument("participant", type=str)
@click.option("--start", type=str, default=None, help="First time (device clock, e.g. '2024-03-01 08:00'). Default: the recording's start.")
@click.option("--end", type=str, default=None, help="End time, exclusive. Default: the recording's end.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to save: .csv (one row per sample), .npy (windows × 3 × 300, g) or .nc (NetCDF with time and valid).")
@click.pass_context
def query(ctx, store: str, participant: str, start: str | None, end: str | None, output: Path) -> None:
    """Save PARTICIPANT's windows between --start and --end from STORE."""
    from accelstore.store.window_files import save_windows

    opened = opened_store(store)
    try:
        opened.participant(participant)
    except KeyError as error:  # no such participant (a bad --start/--end is the store's InputError)
        click.echo(f"error: {error.args[0]}", err=True)
        ctx.exit(EXIT_PARTIAL)
    windows = opened.windows(participant, start, end)
    try:
        save_windows(windows, output)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--output") from None
    click.echo(f"{participant}: {windows.sizes['window']} windows ({int(windows['valid'].sum())} valid) → {output}")


@click.command("plot", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.argument("participant", type=str)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Image file to write (.png, .pdf, .svg).")
@click.pass_context
def plot_command(ctx: click.Context, store: str, participant: str, output: Path) -> None:
    """Plot PARTICIPANT's activity from STORE: one row per day, minute-level ENMO, non-wear shaded."""
    from accelstore.plot import plot_activity

    opened = opened_store(store)
    try:
        plot_activity(opened, participant, output)
    except KeyError as error:
        click.echo(f"error: {error.args[0]}", err=True)
        ctx.exit(EXIT_PARTIAL)
    except ValueError as error:  # matplotlib: a format it does not write
        raise click.BadParameter(str(error), param_hint="--output") from None
    click.echo(f"{participant} → {output}")
