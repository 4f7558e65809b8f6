"""The one place where a command's error becomes one line on stderr and an exit status.

Every ``accelstore`` command is an :class:`AccelstoreCommand` (the group, :class:`AccelstoreGroup`,
makes its own commands so; the command modules name the class), so the same handling applies
whether a command runs under ``accelstore`` or on its own (``python -m accelstore.cli.training``,
``CliRunner().invoke(command)``).

- click's own exceptions (usage errors: exit 2; ``ctx.exit``; an abort) go to click unchanged;
- an :class:`~accelstore.errors.AccelstoreError`: ``error: <message>``, exit its ``exit_status``
  (2 for most; 1 for :class:`~accelstore.errors.StoreDamageError`);
- an ``OSError``: ``error: <path>: <reason>``, exit 2 (a broken pipe, ``| head``, goes to click);
- anything else, a bug: ``error: <Type>: <message> (run with -v for the traceback)``, exit 1.

Under ``accelstore -v`` the traceback comes first, then the same line.
"""

from __future__ import annotations

import errno
import traceback

import click

from accelstore.errors import AccelstoreError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
EXIT_UNEXPECTED = 1


def error_line(error: Exception) -> tuple[str, int]:
    """The one line (without ``error: ``) and the exit status that ``error`` ends a command with."""
    if isinstance(error, AccelstoreError):
        return _one_line(str(error)) or type(error).__name__, error.exit_status
    if isinstance(error, OSError):
        return _os_error_line(error), EXIT_USAGE
    return f"{type(error).__name__}: {_one_line(str(error))}", EXIT_UNEXPECTED


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_error_line(error: OSError) -> str:
    """``PATH: reason`` (``PATH → PATH2: reason`` for a rename), else the error as it reads."""
    if error.filename is None or not error.strerror:
        return _one_line(str(error)) or type(error).__name__
    paths = f"{error.filename} → {error.filename2}" if error.filename2 is not None else f"{error.filename}"
    return f"{paths}: {error.strerror}"


def report(ctx: click.Context, error: Exception) -> None:
    """Print ``error`` as its one line (its traceback first under ``-v``) and exit with its status."""
    line, status = error_line(error)
    if ctx.find_root().params.get("verbose"):
        click.echo("".join(traceback.format_exception(error)).rstrip("\n"), err=True)
    elif not isinstance(error, (AccelstoreError, OSError)):
        line += " (run with -v for the traceback)"
    click.echo(f"error: {line}", err=True)
    raise click.exceptions.Exit(status)


class _ReportsErrors:
    """``invoke`` that ends any error but click's own with :func:`report`."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise
            report(ctx, error)
        except Exception as error:
            report(ctx, error)


class AccelstoreCommand(_ReportsErrors, click.Command):
    """A command whose errors end as one line and an exit status (this module's docstring)."""


class AccelstoreGroup(_ReportsErrors, click.Group):
    """The ``accelstore`` group: its commands are :class:`AccelstoreCommand`, and so are its own errors."""

    command_class = AccelstoreCommand
