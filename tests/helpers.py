"""What the tests share that is not a fixture: where the real data lies, small recordings with a
known signal, and the command line run in this process or in one of its own.

Imported as ``from helpers import …``: pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in
pyproject.toml). Fixtures live in conftest.py.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

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


def signal(seconds: np.ndarray) -> np.ndarray:
    """x, y, z in g: slow sines around a 1 g z-axis, so interpolation error stays far below 1 milli-g."""
    return np.stack(
        [0.3 * np.sin(2 * np.pi * 0.05 * seconds), 0.2 * np.cos(2 * np.pi * 0.03 * seconds), 1 + 0.1 * np.sin(2 * np.pi * 0.02 * seconds)],
        axis=1,
    )


def write_csv(path: Path, start: str, end: str, rate: float = 50.0, gaps: tuple[tuple[str, str], ...] = ()) -> pd.DatetimeIndex:
    """Write samples from ``start`` to ``end`` at ``rate`` Hz, leaving out each [gap start, gap end)."""
    time = pd.date_range(start, end, freq=pd.Timedelta(seconds=1 / rate), inclusive="left").as_unit("ns")
    keep = np.ones(len(time), dtype=bool)
    for gap_start, gap_end in gaps:
        keep &= ~((time >= pd.Timestamp(gap_start)) & (time < pd.Timestamp(gap_end)))
    time = time[keep]
    seconds = (time - time[0].normalize()).total_seconds().to_numpy()
    xyz = signal(seconds)
    frame = pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M:%S.%f"), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    frame.to_csv(path, index=False, float_format="%.6f")
    return time


def run_cli(*args: str) -> Result:
    """``accelstore ARGS`` in this process (click's CliRunner): ``exit_code``, ``stdout`` and
    ``stderr`` apart, without the second of imports a process of its own costs.

    Log records go to pytest (``caplog``), not to ``stderr``: a test of what a run logs, or of
    anything else a real process shows (its workers' output, a signal), uses
    :func:`run_cli_process`.
    """
    from accelstore.cli import main  # here, so that a broken command line fails only the tests that run it

    return CliRunner().invoke(main, list(args), prog_name="accelstore")


def run_cli_process(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python -m accelstore ARGS`` in a process of its own; a hang fails the test after ``timeout`` seconds."""
    return subprocess.run([sys.executable, "-m", "accelstore", *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail the test, instead of hanging the suite, when what runs in this process takes longer
    than ``seconds``: SIGALRM fails it from the main thread (``pytest.fail`` raises a
    ``BaseException``, which neither the code under test, the command line's error handling nor
    CliRunner catches)."""

    def expire(signum, frame):
        pytest.fail(f"still running after {seconds} s")

    previous = signals.signal(signals.SIGALRM, expire)
    signals.alarm(seconds)
    try:
        yield
    finally:
        signals.alarm(0)
        signals.signal(signals.SIGALRM, previous)


def assert_help_explains(command: click.Command, offered: list[Field]) -> None:
    """Each config field a command offers is an option in its ``--help``, explained by the field's
    help text and showing the field's default (or that it is required)."""
    context = click.Context(command)
    options = {param.name: param for param in command.params if isinstance(param, click.Option)}
    help_text = CliRunner().invoke(command, ["--help"]).output
    for field in offered:
        option = options[field.name]
        assert all(name in help_text for name in option.opts + option.secondary_opts)
        explained = option.get_help_record(context)[1]
        assert explained.startswith(field.metadata["help"])
        if field.default is MISSING:
            assert "[required]" in explained
        elif option.is_flag and not option.secondary_opts:  # --compile, --no-validation: given, it sets the other value
            assert option.get_default(context) is field.default and option.flag_value is (not field.default)
        elif isinstance(field.default, bool):  # --augment/--no-augment names its default
            assert f"default: {'' if field.default else 'no-'}{field.name}" in explained
        elif field.default is not None:
            shown = ",".join(field.default) if isinstance(field.default, tuple) else str(field.default)
            assert f"default: {shown}" in explained
