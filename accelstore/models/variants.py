"""The published harnet variants and the window each one takes, without importing torch, so that
configurations and the command line can name them (docs/architecture.md, "Pre-training")."""

from __future__ import annotations

__all__ = ["BACKBONE_FOR_WINDOW_S"]

BACKBONE_FOR_WINDOW_S: dict[int, str] = {5: "harnet5", 10: "harnet10", 30: "harnet30"}
"""Window length in seconds (at 30 Hz) → the backbone whose stages shrink it to one time step."""
