"""The store's fixed pretext validation set and hold-out: how they are kept, written and read.

The set (built by :mod:`accelstore.pipelines.pretext_validation`) lives in the sub-group
``pretext/``, marked complete last so that a build killed half-way leaves no set. The ids of the
participants it was drawn from are the root attribute ``holdout``, written before the set, so that
even a failed build keeps them out of training (docs/architecture.md, "Pre-training").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from accelstore.grid import WINDOW_SAMPLES
from accelstore.store.reading import Store
from accelstore.store.writing import MetadataWriter

log = logging.getLogger(__name__)

VALIDATION_SET_GROUP = "pretext"
"""The sub-group holding the validation set."""
HOLDOUT_ATTR = "holdout"
"""Root attribute: ids of the held-out participants, which the trainer must never train on."""
X_CHUNK = 1024


@dataclass
class ValidationSet:
    """The stored validation set: inputs in g, one label array per task, and where each came from."""

    x: np.ndarray  # float32 (N, 3, 300)
    labels: dict[str, np.ndarray]  # task → int64 (N,)
    row: np.ndarray  # int64 (N,): participant row
    window: np.ndarray  # int64 (N,): window index from the participant's day 0
    holdout: list[str]
    attrs: dict


def read_holdout(store: Store | str) -> list[str] | None:
    """The ids of the store's held-out participants; None when it holds none out."""
    opened = store if isinstance(store, Store) else Store(str(store))
    holdout = opened.group.attrs.get(HOLDOUT_ATTR)
    return None if holdout is None else [str(pid) for pid in holdout]


def read_validation_set(store: Store | str) -> ValidationSet:
    """The store's validation set; ValueError when there is none or it was not finished."""
    opened = store if isinstance(store, Store) else Store(str(store))
    group = opened.group
    if VALIDATION_SET_GROUP not in group or not group[VALIDATION_SET_GROUP].attrs.get("complete", False):
        raise ValueError(f"{opened.path}: no complete pretext validation set (run `accelstore pretext`)")
    subgroup = group[VALIDATION_SET_GROUP]
    attrs = dict(subgroup.attrs)
    return ValidationSet(
        x=subgroup["x"][:],
        labels={name: subgroup[f"label_{name}"][:] for name in attrs["tasks"]},
        row=subgroup["row"][:],
        window=subgroup["window"][:],
        holdout=read_holdout(opened) or [],
        attrs=attrs,
    )


def record_holdout(writer: MetadataWriter, holdout: list[str]) -> None:
    """Write the hold-out (before the set, so that even a failed build keeps them out of training)."""
    previous = writer.group.attrs.get(HOLDOUT_ATTR)
    if previous is not None and sorted(previous) != holdout:
        log.warning(
            "the hold-out changes (%d participant(s) leave it): a model trained on the old split has seen the new one",
            len(set(previous) - set(holdout)),
        )
    writer.set_attrs(**{HOLDOUT_ATTR: holdout})


def write_validation_set(
    writer: MetadataWriter, x: np.ndarray, labels: dict[str, np.ndarray], rows: np.ndarray, windows: np.ndarray, attrs: dict
) -> None:
    """Replace the store's validation set; it becomes visible only once whole (``complete`` last).

    ``x`` (N, 3, 300) g, ``labels`` task → (N,), ``rows``/``windows`` where each window came from,
    ``attrs`` how the set was drawn (kept as the sub-group's attributes).
    """
    writer.check_lease()
    subgroup = writer.group.create_group(VALIDATION_SET_GROUP, overwrite=True, attributes={"complete": False})
    subgroup.create_array("x", data=x, chunks=(min(X_CHUNK, len(x)), 3, WINDOW_SAMPLES), attributes={"units": "g"})
    for name, values in labels.items():
        subgroup.create_array(f"label_{name}", data=values, attributes={"meaning": f"1 where {name} was applied"})
    subgroup.create_array("row", data=rows, attributes={"meaning": "participant row"})
    subgroup.create_array("window", data=windows, attributes={"meaning": "window index from the participant's day 0"})
    subgroup.attrs.update({**attrs, "complete": True})  # last: the set is visible only once whole

