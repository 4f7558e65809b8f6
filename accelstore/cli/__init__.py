"""The ``accelstore`` command line.

Every command's errors end in one place, :mod:`accelstore.cli.errors`: one line ``error: …`` on
stderr and an exit status, with a traceback only under ``-v``. Exit status, for every command:

- 0 success;
- 1 the command ran but not everything succeeded (``ingest``: at least one file failed;
  ``features``: some participants failed; ``query``, ``plot``: no such participant), the store is
  damaged (:class:`~accelstore.errors.StoreDamageError`), or an unexpected error (a bug; the
  line says to run with ``-v`` for its traceback);
- 2 bad usage or input: click's usage errors (an unknown option, a bad value), an
  :class:`~accelstore.errors.AccelstoreError` (a path that is not a store, a time outside the
  recording, an unusable ``--scheduler``, a held writer lease), or an ``OSError`` (a path that
  cannot be read or written: the line names it and the reason).
"""

from __future__ import annotations

import logging
import sys

import click

from accelstore.cli import evaluation, ingest, pipelines, reading, training
from accelstore.cli.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, AccelstoreGroup

log = logging.getLogger("accelstore")

__all__ = ["EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "main"]


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("distributed", "numba", "fsspec", "asyncio", "botocore", "aiobotocore", "s3fs"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(cls=AccelstoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log debug messages too, and show the traceback of an error.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """accelstore: wearable-accelerometer corpora in one chunked Zarr store.

    An error ends a command with one line on stderr, "error: ...", and an exit status (-v adds
    the traceback).

    \b
    Exit status, for every command:
      0  success
      1  partly done (ingest: some files failed; features: some participants
         failed; query, plot: no such participant), a damaged store, or an
         unexpected error (a bug: run with -v for its traceback)
      2  bad usage or input: an unknown option or bad value, a path that is not
         a store or cannot be read or written, an unusable --scheduler, a store
         another writer holds
    """
    _setup_logging(verbose, quiet)
    ctx.obj = {"progress": not quiet}


for command in (
    ingest.synth, ingest.ingest, reading.info, reading.query, ingest.verify, pipelines.features_command, pipelines.pretext_command,
    reading.plot_command, training.stream_command, training.pretrain_command, evaluation.evaluate_command, evaluation.embed_command,
):
    main.add_command(command)
