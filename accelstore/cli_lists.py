"""Comma-separated option values checked against the names a command knows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click


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
