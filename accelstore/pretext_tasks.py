"""The self-supervised pretext tasks: their names, their order, and the published head names.

One vocabulary for every layer: the kernels apply the tasks in ``TASKS`` order, the validation
set and the loader label windows by these names, the command line offers them, and the model's
heads carry the names of the published checkpoints (ssl-wearables calls time warping's head
``time_w``), which ``HEAD_NAMES`` maps to — the only place the two spellings meet.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_TASKS", "HEAD_NAMES", "TASKS", "checked_tasks"]

TASKS: tuple[str, ...] = ("aot", "scale", "permute", "time_warp")
"""Every pretext task, in the order the kernels apply them: arrow of time (reversal), scaling,
segment permutation, time warping."""
DEFAULT_TASKS: tuple[str, ...] = ("aot", "permute", "time_warp")
"""The published model's tasks (Yuan et al. 2024 left scaling out)."""
HEAD_NAMES: dict[str, str] = {"aot": "aot", "scale": "scale", "permute": "permute", "time_warp": "time_w"}
"""Task name → the name of its head in the published checkpoints (``{head}_h.*`` parameters)."""


def checked_tasks(names: Iterable[str], allow_empty: bool = False) -> tuple[str, ...]:
    """``names`` in ``TASKS`` order without repeats; a ``ValueError`` naming any unknown task (or an empty list)."""
    names = list(names)
    unknown = [name for name in names if name not in TASKS]
    if unknown or not (names or allow_empty):
        raise ValueError(f"unknown or no pretext task(s) {unknown or names}; known: {', '.join(TASKS)}")
    return tuple(name for name in TASKS if name in names)
