"""accelstore: wearable-accelerometer corpora in one chunked Zarr store.

The public API, by step of the flow (docs/architecture.md):

- the store: ``ingest`` builds one from raw device files, ``open_store`` opens it for reading
  (a ``Store``), ``build_validation_set`` holds participants out for pre-training's validation;
- training: ``WindowDataset`` streams a store's windows to torch; ``TrainConfig`` and ``train``
  pre-train harnet on them; ``harnet5``, ``harnet10`` and ``harnet30`` build the published
  backbones, ``load_pretrained`` loads weights into one;
- evaluation: ``load_labelled`` reads a labelled store's windows, ``evaluate`` compares models
  on them as an ``EvaluationConfig`` says, ``write_report`` writes its report;
- ``synth``, the module of synthetic recordings (``accelstore synth``);
- the errors: ``AccelstoreError`` and its kinds, ``ReaderError`` for an unreadable raw file,
  ``CheckpointMismatchError`` for weights that do not fit a backbone.

Names load on first use (PEP 562), so that ``import accelstore`` imports neither numba, torch,
zarr nor xarray until a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import version
from typing import Any

__version__ = version("accelstore")

_HOMES: dict[str, tuple[str, ...]] = {
    "accelstore.store": ("Store", "open_store"),
    "accelstore.pipelines.ingest": ("ingest",),
    "accelstore.pipelines.pretext_validation": ("build_validation_set",),
    "accelstore.dataset.windows": ("WindowDataset",),
    "accelstore.models.harnet": ("CheckpointMismatchError", "harnet5", "harnet10", "harnet30", "load_pretrained"),
    "accelstore.training.config": ("TrainConfig",),
    "accelstore.training.pretrain": ("train",),
    "accelstore.evaluation.config": ("EvaluationConfig",),
    "accelstore.evaluation.evaluate": ("evaluate", "load_labelled"),
    "accelstore.evaluation.report": ("write_report",),
    "accelstore.errors": ("AccelstoreError", "InputError", "LeaseHeldError", "StoreDamageError", "StoreError"),
    "accelstore.readers": ("ReaderError",),
}
"""Module → the public names it defines."""
_MODULES = ("synth",)
"""Public submodules."""
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [*_HOME_OF, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")  # the import binds it here too
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_HOME_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
