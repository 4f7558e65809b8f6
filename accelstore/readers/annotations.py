"""Annotations of labelled recordings (the Capture-24 CSV layout) → class codes.

A label map merges or renames raw annotations (as Capture-24's annotations map onto Walmsley's
four classes): a CSV whose first column is the raw annotation and another column the class.
Annotations the map does not name, and empty ones, count as no label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from accelstore.grid import NO_LABEL
from accelstore.readers import file_format

log = logging.getLogger(__name__)


def read_label_map(path: str | Path, column: str | None = None) -> dict[str, str]:
    """Raw annotation → class name, from a CSV (first column: the annotation; ``column``: the class,
    default the second column)."""
    frame = pd.read_csv(path, dtype=str)
    if frame.shape[1] < 2:
        raise ValueError(f"{path}: a label map needs two columns (annotation, class); found {list(frame.columns)}")
    column = column or frame.columns[1]
    if column not in frame.columns:
        raise ValueError(f"{path}: no column {column!r}; columns are {', '.join(frame.columns)}")
    pairs = frame[[frame.columns[0], column]].dropna()
    return dict(zip(pairs.iloc[:, 0].str.strip(), pairs[column].str.strip()))


def scan_classes(files: Iterable[Path], label_map: Mapping[str, str] | None) -> list[str]:
    """Sorted class names: those of the label map, or every annotation found in the CSV files."""
    if label_map is not None:
        return sorted(set(label_map.values()))
    found: set[str] = set()
    for path in files:
        if file_format(path) != ".csv":
            continue
        try:
            annotation = pd.read_csv(path, usecols=["annotation"], dtype=str)["annotation"]
        except (ValueError, OSError) as error:  # the file's own task reports it properly
            log.debug("no annotations from %s: %s", path, error)
            continue
        found.update(a.strip() for a in annotation.dropna().unique() if a.strip())
    return sorted(found)


def annotation_codes(annotation: np.ndarray, classes: list[str] | tuple[str, ...], label_map: Mapping[str, str] | None) -> np.ndarray:
    """One int16 class code per sample (``NO_LABEL`` where unannotated or not in the map)."""
    index = {name: code for code, name in enumerate(classes)}
    values, inverse = np.unique(pd.Series(annotation).fillna("").astype(str).str.strip().to_numpy(), return_inverse=True)
    if label_map is not None:
        values = np.array([label_map.get(v, "") for v in values], dtype=object)
    value_codes = np.array([index.get(v, NO_LABEL) for v in values], dtype=np.int16)
    return value_codes[inverse.ravel()]
