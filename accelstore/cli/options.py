"""What several commands share: their common options, progress, and opening the store they name.

Each is defined once here, so that every command spells an option the same way and explains it
with the same words.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from accelstore.pipelines.clusters import ClusterConfig, job_script

if TYPE_CHECKING:
    from accelstore.store import Store

__all__ = [
    "break_lease_option", "comma_list", "config_options", "dask_options", "opened_store", "participants_option", "show_progress",
]

participants_option = click.option(
    "--participants", "participants", multiple=True,
    help="Only these participant ids (repeat the option). Default: every complete participant.",
)


def dask_options(command: Command) -> Command:
    """The options of a command that runs Dask tasks, one per field of
    :class:`~accelstore.pipelines.clusters.ClusterConfig`, decorating a command that takes
    ``workers`` and ``scheduler``.

    The command itself sees only those two: with ``--cluster`` it runs inside a batch-job cluster
    started for it, with ``scheduler`` that cluster's address, so that every pipeline runs on one
    unchanged; with ``--dry-run`` it does not run at all. Options that mean nothing together are
    refused (one line, exit 2) before anything starts.
    """
    names = [field.name for field in dataclasses.fields(ClusterConfig)]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        config = ClusterConfig(**{name: kwargs.pop(name) for name in names})
        if config.dry_run:
            click.echo(job_script(config.cluster), nl=False)
            click.get_current_context().exit(0)
        with config.scheduler_of_run() as scheduler:
            return command(*args, workers=config.workers, scheduler=scheduler, **kwargs)

    return config_options(ClusterConfig)(run)


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


Command = TypeVar("Command", bound=Callable[..., Any])

OPTION_METADATA = frozenset({"help", "option", "choices", "min", "max", "min_open", "folder", "flag_value"})
"""The keys of a config field's metadata that :func:`config_options` reads."""


def config_options(config: type, names: Sequence[str] | None = None) -> Callable[[Command], Command]:
    """A decorator adding one option per field of the dataclass ``config`` that has ``help`` in its
    metadata (or only the fields ``names``), in field order; each option's value is passed under
    the field's name, so that ``config(**values)`` builds the configuration.

    The option follows from the field's type, default and metadata:

    - ``help``: the option's help; a field without it is not an option.
    - ``option``: its name (default ``--field-name``).
    - a field without a default is a required option; every other default is shown.
    - ``choices``: the values allowed; on a ``tuple`` field, a comma-separated list of them.
    - ``min``, ``max``, ``min_open``: the range of an ``int`` or ``float``.
    - ``folder``: a folder path.
    - a ``bool`` defaulting to True is ``--name/--no-name``; one defaulting to False, or with
      ``flag_value``, a flag that sets it to ``flag_value`` (default: not the default).
    """
    fields = {field.name: field for field in dataclasses.fields(config) if "help" in field.metadata}
    hints = typing.get_type_hints(config)
    options = [_field_option(fields[name], hints[name]) for name in (fields if names is None else names)]

    def decorate(command: Command) -> Command:
        for option in reversed(options):  # the first field's option first in --help
            command = option(command)
        return command

    return decorate


def _field_option(field: dataclasses.Field, hint: Any) -> Callable[[Command], Command]:
    metadata = dict(field.metadata)
    unknown = set(metadata) - OPTION_METADATA
    if unknown:
        raise TypeError(f"field {field.name!r}: unknown option metadata {sorted(unknown)}")
    name = metadata.get("option", "--" + field.name.replace("_", "-"))
    kind = _without_none(hint)
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    default = None if required else field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    common: dict[str, Any] = {"help": metadata["help"]}
    if kind is bool:
        if "flag_value" in metadata or not default:
            return click.option(name, field.name, is_flag=True, flag_value=metadata.get("flag_value", not default), default=default, **common)
        return click.option(f"{name}/--no-{name.removeprefix('--')}", field.name, default=default, show_default=True, **common)
    common.update(required=required, show_default=True)
    choices = metadata.get("choices")
    if choices is not None and typing.get_origin(kind) is tuple:
        return click.option(name, field.name, default=None if default is None else ",".join(default), callback=comma_list(choices), **common)
    if choices is not None:  # click compares the text given; the callback turns it back into the field's type
        return click.option(name, field.name, type=click.Choice([str(choice) for choice in choices]),
                            default=None if default is None else str(default), callback=_converted_to(kind), **common)
    return click.option(name, field.name, type=_click_type(kind, metadata), default=default, **common)


def _without_none(hint: Any) -> Any:
    """``X | None`` → ``X``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (kind,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return kind
    return hint


def _click_type(kind: type, metadata: dict[str, Any]) -> click.ParamType | type:
    if metadata.get("folder"):
        return click.Path(file_okay=False)
    bounds = {key: metadata[key] for key in ("min", "max", "min_open") if key in metadata}
    if not bounds:
        return kind
    return (click.IntRange if kind is int else click.FloatRange)(**bounds)


def _converted_to(kind: type) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        return value if value is None else kind(value)

    return convert
