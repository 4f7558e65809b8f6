"""The command line end to end on synthetic recordings: synth → ingest (default output) → info."""

from __future__ import annotations

import subprocess
import sys

from accelstore import open_store


def accelstore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "accelstore", *args], capture_output=True, text=True, timeout=600)


def test_synth_then_ingest_with_the_default_output_beside_the_folder(tmp_path):
    raw = tmp_path / "cohort"
    made = accelstore("synth", str(raw), "--participants", "2", "--days", "0.05", "--seed", "4", "--gzip")
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in raw.iterdir()) == ["P001.cwa.gz", "P002.cwa.gz"]

    run = accelstore("-q", "ingest", str(raw), "--workers", "1")
    assert run.returncode == 0, run.stderr
    store = tmp_path / "cohort.zarr"
    assert store.is_dir()
    table = open_store(str(store)).participants
    assert sorted(table.index) == ["P001", "P002"]
    assert (table["valid_windows"] > 0.9 * (table["n_windows"] - table["first_window"])).all()

    info = accelstore("info", str(store))
    assert info.returncode == 0 and "participants   2" in info.stdout


def test_every_option_of_every_command_has_help_text():
    import click

    from accelstore.cli import main

    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and len(param.help) > 10, f"accelstore {name} {param.opts[0]} has no explanation"
        assert command.help, f"accelstore {name} has no description"


def test_ingest_help_documents_the_exit_status():
    assert "Exit status" in accelstore("ingest", "--help").stdout


def test_usage_errors_exit_with_2(tmp_path):
    assert accelstore("ingest", str(tmp_path / "missing")).returncode == 2
    assert accelstore("ingest", str(tmp_path), "--workers", "0").returncode == 2
