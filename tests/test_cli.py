"""The command line end to end on synthetic recordings: synth → ingest (default output) → info.

Commands run in this process (click's CliRunner); one test runs ``python -m accelstore`` itself.
"""

from __future__ import annotations

import click

from accelstore import open_store
from accelstore.cli import main
from helpers import run_cli, run_cli_process


def test_synth_then_ingest_with_the_default_output_beside_the_folder(tmp_path):
    raw = tmp_path / "cohort"
    made = run_cli("synth", str(raw), "--participants", "2", "--days", "0.05", "--seed", "4", "--gzip")
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in raw.iterdir()) == ["P001.cwa.gz", "P002.cwa.gz"]

    run = run_cli("-q", "ingest", str(raw), "--workers", "1")
    assert run.exit_code == 0, run.output
    store = tmp_path / "cohort.zarr"
    assert store.is_dir()
    table = open_store(str(store)).participants
    assert sorted(table.index) == ["P001", "P002"]
    assert (table["valid_windows"] > 0.9 * (table["n_windows"] - table["first_window"])).all()

    info = run_cli("info", str(store))
    assert info.exit_code == 0 and "participants   2" in info.stdout


def test_every_option_of_every_command_has_help_text():
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and len(param.help) > 10, f"accelstore {name} {param.opts[0]} has no explanation"
        assert command.help, f"accelstore {name} has no description"


def test_ingest_help_documents_the_exit_status():
    shown = run_cli("ingest", "--help")
    assert shown.exit_code == 0 and "Exit status" in shown.stdout


def test_usage_errors_exit_with_2(tmp_path):
    assert run_cli("ingest", str(tmp_path / "missing")).exit_code == 2
    assert run_cli("ingest", str(tmp_path), "--workers", "0").exit_code == 2


def test_python_m_accelstore_is_the_command_line_and_its_status_the_processs(tmp_path):
    """The entry point itself, in an interpreter of its own: ``python -m accelstore`` runs the click
    group, and the process exits with the command's status (2: a usage error)."""
    missing = tmp_path / "missing"
    run = run_cli_process("ingest", str(missing), timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("Usage: python -m accelstore ingest [OPTIONS] INPUTS...")
    assert run.stderr.splitlines()[-1] == f"Error: Invalid value for 'INPUTS...': Path '{missing}' does not exist."
    assert run.stdout == ""


def test_quiet_synth_draws_no_progress_bar_and_the_files_are_the_same(tmp_path):
    loud, quiet = run_cli("synth", str(tmp_path / "loud"), "-n", "2", "--days", "0.02"), run_cli("-q", "synth", str(tmp_path / "quiet"), "-n", "2", "--days", "0.02")
    assert loud.exit_code == quiet.exit_code == 0, (loud.stderr, quiet.stderr)
    assert "synthesize" in loud.stderr and "synthesize" not in quiet.stderr  # tqdm draws on stderr
    for name in ("P001.cwa", "P002.cwa"):
        assert (tmp_path / "loud" / name).read_bytes() == (tmp_path / "quiet" / name).read_bytes()
