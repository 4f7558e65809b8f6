"""What several commands share: their common options, progress, and opening the store they name.

Each is defined once here, so that every command spells an option the same way and explains it
with the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from accelstore.store import Store

__all__ = [
    "break_lease_option", "comma_list", "opened_store", "participants_option", "scheduler_option", "show_progress", "workers_option",
]

participants_option = click.option(
    "--participants", "participants", multiple=True,
    help="Only these participant ids (repeat the option). Default: every complete participant.",
)
workers_option = click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Worker processes of the local cluster (one thread each). Default: one per core.",
)
scheduler_option = click.option(
    "--scheduler", type=str, default=None,
    help="Use an existing Dask cluster: a scheduler address (tcp://host:8786) or a scheduler file (.json); "
    "'synchronous' runs every task in this process.",
)
break_lease_option = click.option(
    "--break-lease", is_flag=True,
    help="Take the store's writer lease even though another process holds it. Only for a holder that is certainly gone "
    "(e.g. killed on another host); a holder on this host whose process has ended is taken over without it.",
)


def comma_list(allowed: Sequence[str], allow_empty: bool = False) -> Callable[[click.Context, click.Parameter, str | None], tuple[str, ...] | None]:
    """A click callback: "a, b,a" → ("a", "b"), refusing names outside ``allowed`` (and, unless
    ``allow_empty``, an empty list) with a one-line usage error."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
        unknown = [name for name in names if name not in allowed]
        if unknown or not (names or allow_empty):
            raise click.BadParameter(f"choose from {', '.join(allowed)}, comma-separated; got {value!r}")
        return names

    return parse


def show_progress(ctx: click.Context) -> bool:
    """Whether the ``accelstore`` group asked for progress bars (it does unless ``--quiet``)."""
    obj = ctx.find_root().obj
    return bool(obj.get("progress", True)) if isinstance(obj, dict) else True


def opened_store(path: str) -> Store:
    """The store at ``path`` for reading. A path that is not a store raises the store layer's
    ``StoreError``, which every command reports as one line and exit status 2."""
    from accelstore.store import open_store

    return open_store(path)
