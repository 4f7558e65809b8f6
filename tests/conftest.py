"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ACCELSTORE_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEVICES = SHARED_DATA / "devices"
LABELLED = SHARED_DATA / "labelled"

GOOD_DEVICE_FILES = (
    "GGIRread__ax3_testfile.cwa",
    "GGIRread__ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa",
    "GGIRread__ax6_testfile.cwa",
    "skdh__ax3_sample.cwa",
    "skdh__ax6_sample.cwa",
    "skdh__gnactv_sample.bin",
    "openmovement__example-610-steps.cwa",
    "GGIR__actigraph_testfile.gt3x",
)
UNSUPPORTED_FILE = "GGIRread__genea_testfile.bin"
TRUNCATED_FILE = "GGIRread__GENEActiv_testfile.bin"


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
