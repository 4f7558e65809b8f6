"""``accelstore synth``, ``ingest`` and ``verify``: raw recordings into a store, and a check that it is whole."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

from accelstore.cli.errors import EXIT_OK, EXIT_PARTIAL, AccelstoreCommand
from accelstore.cli.options import (
    break_lease_option,
    dask_options,
    participants_option,
    show_progress,
)

log = logging.getLogger(__name__)


@click.command("synth", cls=AccelstoreCommand)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--participants", "-n", type=click.IntRange(min=1), default=3, show_default=True, help="How many recordings to write.")
@click.option("--days", type=click.FloatRange(min=0.01), default=2.0, show_default=True, help="Length of each recording, days.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: the same seed writes byte-identical files.")
@click.option("--gzip", is_flag=True, help="Write .cwa.gz instead of .cwa.")
@click.pass_context
def synth(ctx: click.Context, out: Path, participants: int, days: float, seed: int, gzip: bool) -> None:
    """Write realistic synthetic recordings as Axivity AX3 .cwa files into OUT."""
    from accelstore.synth import synthesize

    paths = synthesize(out, participants=participants, days=days, seed=seed, gzip=gzip, progress=show_progress(ctx))
    log.info("wrote %d recording(s) to %s", len(paths), out)


def _id_pattern(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--id-pattern``: a regular expression with a group, checked before anything runs."""
    if value is None:
        return None
    try:
        compiled = re.compile(value)
    except re.error as error:
        raise click.BadParameter(f"{value!r} is not a regular expression: {error}") from None
    if not compiled.groups:
        raise click.BadParameter(f"{value!r} has no group: its first group (…) is the participant id")
    return value


def _inputs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """``INPUTS``: local paths, checked to exist, or fsspec URLs (``s3://bucket/raw/``), passed on as given."""
    for given in value:
        if not _is_url(given) and not Path(given).exists():
            raise click.BadParameter(f"Path {given!r} does not exist.")
    return value


def _is_url(path: str) -> bool:
    return "://" in path


@click.command("ingest", cls=AccelstoreCommand)
@click.argument("inputs", nargs=-1, required=True, callback=_inputs)
@click.option("-o", "--output", "store", type=str, default=None, help="The store (path or fsspec URL). Default: DIR.zarr beside the first input, when that is a local path; required when it is a URL.")
@dask_options
@click.option("--id-pattern", type=str, default=None, callback=_id_pattern, help="Regular expression whose first group is the participant id in a file name. Default: the name without extensions (UK Biobank names give the eid).")
@click.option("--lowpass-hz", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True, help="Butterworth low-pass cut-off, Hz.")
@click.option("--no-lowpass", is_flag=True, help="Skip the low-pass filter.")
@click.option("--no-calibrate", is_flag=True, help="Skip gravity calibration.")
@click.option("--no-nonwear", is_flag=True, help="Skip non-wear detection (non-wear windows then stay valid).")
@click.option("--processing", type=click.Choice(["numba", "actipy"]), default="numba", show_default=True, help="Which implementation runs the low-pass, calibration and non-wear steps: accelstore's Numba kernels, or actipy's own (the reference).")
@click.option("--max-days", type=click.IntRange(min=1), default=14, show_default=True, help="Days of window address space per participant when creating a store (grown on demand).")
@click.option("--reserve", type=click.IntRange(min=0), default=0, show_default=True, help="Participant rows to reserve when creating a store (e.g. 103712 for UK Biobank); rows grow on demand anyway.")
@click.option("--labels", is_flag=True, help="Labelled CSVs (Capture-24 layout: time,x,y,z,annotation): each window gets the annotation covering at least half of it, else -1; class names go in the store's attributes.")
@click.option("--label-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="With --labels: a CSV mapping raw annotations (first column) to classes (--label-column), to merge or rename classes.")
@click.option("--label-column", type=str, default=None, help="The label map's column holding the class (default: its second column).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True, help="Retries of a task after an unexpected (transient) error.")
@break_lease_option
@click.option("--csv-time-unit", type=click.Choice(["s", "ms", "us", "ns"]), default=None, help="Unit of CSV times given as numbers (epoch seconds, milliseconds, microseconds or nanoseconds), taken as the device's local clock. Without it, numeric times are refused: their unit cannot be told safely.")
@click.option("--csv-time-format", type=str, default=None, help="strptime format of CSV text times, e.g. '%d/%m/%Y %H:%M:%S' (add %z for a UTC offset). Without it only ISO-8601 (YYYY-MM-DD hh:mm:ss[.f][+hh:mm]) is read, and day/month orders are refused. An offset never shifts a time: the local clock is stored.")
@click.option("--max-span-days", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True, help="Refuse a recording whose first and last samples lie further apart than this, days (usually a clock that jumped); the message says where its largest gap is.")
@click.pass_context
def ingest(ctx, inputs, store, workers, scheduler, id_pattern, lowpass_hz, no_lowpass, no_calibrate, no_nonwear, processing, max_days, reserve, labels, label_map, label_column, retries, csv_time_unit, csv_time_format, max_span_days, break_lease) -> None:
    """Ingest raw device files (.cwa, .cwa.gz, .gt3x, GENEActiv .bin, CSV time,x,y,z) from INPUTS
    (folders or files: local paths or fsspec URLs such as s3://bucket/raw/) into a store.

    Re-running skips files already ingested (same size and hash) and redoes any participant left
    half-written. Exit status: 0 when every file went in, 1 when some failed (each is listed, and
    recorded in the store with its reason), 2 on bad usage.
    """
    from accelstore.pipelines.ingest import ingest as run_ingest
    from accelstore.readers import ProcessingOptions

    if store is None:
        if _is_url(inputs[0]):
            raise click.UsageError(f"-o/--output is required when the first input is a URL ({inputs[0]}): the default store lies beside a local first input")
        first = Path(inputs[0]).resolve()
        store = str(first.with_name(first.name + ".zarr") if first.is_dir() else first.parent.with_name(first.parent.name + ".zarr"))
    options = ProcessingOptions(
        lowpass_hz=None if no_lowpass else lowpass_hz, calibrate=not no_calibrate, detect_nonwear=not no_nonwear, engine=processing,
        csv_time_unit=csv_time_unit, csv_time_format=csv_time_format, max_span_days=max_span_days,
    )
    mapping = None
    if label_map is not None:
        from accelstore.readers.annotations import read_label_map

        try:
            mapping = read_label_map(label_map, label_column)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--label-map") from None
    report = run_ingest(
        list(inputs), store, options=options, workers=workers, scheduler=scheduler,
        id_pattern=id_pattern, max_days=max_days, reserve=reserve, labels=labels or mapping is not None, label_map=mapping, retries=retries, progress=show_progress(ctx), break_lease=break_lease,
    )
    click.echo(f"{store}: {len(report.written)} written, {len(report.unchanged)} unchanged, {len(report.failed)} failed")
    ctx.exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@click.command("verify", cls=AccelstoreCommand)
@click.argument("store", type=str)
@participants_option
@dask_options
@click.option("--no-mark", is_flag=True, help="Only report: do not mark damaged participants (marking takes the writer lease).")
@break_lease_option
@click.pass_context
def verify(ctx, store: str, participants: tuple[str, ...], workers: int | None, scheduler: str | None, no_mark: bool, break_lease: bool) -> None:
    """Check that STORE is whole: every chunk of every complete participant decodes and passes
    its checksum, every day with valid windows has its acceleration, and the table and day
    summaries agree with the window arrays.

    Each problem is listed. Damaged participants are marked (invisible to readers, the finding
    recorded against their source) so that the next `accelstore ingest` redoes them from their
    recorded source. Exit status: 0 intact, 1 damage found, 2 bad usage.
    """
    from accelstore.pipelines.verify import verify as run_verify

    try:
        report = run_verify(store, participants or None, workers=workers, scheduler=scheduler, mark=not no_mark, break_lease=break_lease, progress=show_progress(ctx))
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--participants") from None
    for problem in report.store_damage:
        click.echo(f"damaged: {problem}")
    for problems in report.damaged.values():
        for problem in problems:
            click.echo(f"damaged: {problem}")
    marked = " (marked: ingest redoes them)" if report.marked else ""
    click.echo(f"{store}: {len(report.checked)} participant(s) checked, {len(report.damaged)} damaged{marked}"
               + (", the table or day summaries damaged" if report.store_damage else ""))
    ctx.exit(EXIT_OK if report.ok else EXIT_PARTIAL)
