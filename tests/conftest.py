"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent).

Fixtures only; the plain helpers and constants the tests share are in helpers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import DEVICES, LABELLED


@pytest.fixture(scope="session")
def devices_dir() -> Path:
    if not DEVICES.is_dir():
        pytest.skip(f"real device files not found at {DEVICES} (../shared/data/devices beside the repository)")
    return DEVICES


@pytest.fixture(scope="session")
def labelled_dir() -> Path:
    if not LABELLED.is_dir():
        pytest.skip(f"labelled data not found at {LABELLED} (../shared/data/labelled beside the repository)")
    return LABELLED


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one test process per core), each test process and
    what it starts (torchrun ranks, DataLoader workers) computes on one thread: two processes
    each spreading torch's and OpenMP's thread pools over every core only fight for them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"

