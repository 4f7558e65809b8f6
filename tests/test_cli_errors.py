"""Errors at the command line: each a typed line on stderr and a documented exit status; a task's
deterministic error is never retried, a transient one is; a real run ends without a traceback and
without killed workers."""

from __future__ import annotations

import copy
import errno
import socket
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from accelstore.cli import main
from accelstore.cli.pipelines import features_command
from accelstore.errors import InputError, LeaseHeldError, StoreDamageError
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.runner import SCHEDULER_CONNECT_TIMEOUT, TaskError, dask_client, run_tasks, scheduler_address
from accelstore.readers import ReaderError
from accelstore.synth import synthesize
from helpers import run_cli, run_cli_process, time_limit, write_csv


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def logged_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that carry a traceback: in a process of its own, its stderr would show them."""
    return [record.getMessage() for record in caplog.records if record.exc_info]




@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    write_csv(folder / "S1.csv", "2024-05-01 09:00:00", "2024-05-01 09:02:00")
    return folder


# ---------------------------------------------------------------- --scheduler


def test_a_missing_scheduler_file_fails_at_once_with_exit_2(raw, tmp_path, caplog):
    missing = tmp_path / "scheduler.json"  # distributed alone would wait for it to appear, forever
    with time_limit(60):
        run = run_cli("-q", "ingest", str(raw), "-o", str(tmp_path / "s.zarr"), "--scheduler", str(missing))
    assert run.exit_code == 2, run.output
    assert error_lines(run.stderr) == [f"error: --scheduler {missing}: no such scheduler file"]
    assert "Traceback" not in run.stderr and logged_tracebacks(caplog) == []


def test_an_unreachable_scheduler_fails_after_the_connect_timeout_with_exit_2(raw, tmp_path, caplog):
    with socket.socket() as reserved:  # bound, never listening: connections to it are refused
        reserved.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{reserved.getsockname()[1]}"
        with time_limit(60):
            run = run_cli("-q", "ingest", str(raw), "-o", str(tmp_path / "s.zarr"), "--scheduler", address)
    assert run.exit_code == 2, run.output
    assert error_lines(run.stderr) == [f"error: --scheduler: could not connect to {address} within {SCHEDULER_CONNECT_TIMEOUT} s"]
    assert "Traceback" not in run.stderr and logged_tracebacks(caplog) == []


@pytest.mark.parametrize("content", ['{"port": 8786}', "not json", "", '{"address": 8786}', "[1, 2]"])
def test_a_file_that_is_not_a_scheduler_file_is_an_input_error(tmp_path, content):
    path = tmp_path / "scheduler.json"
    path.write_text(content)
    with pytest.raises(InputError, match=r"^--scheduler .*scheduler\.json: not a Dask scheduler file"):
        scheduler_address(str(path))


@pytest.mark.parametrize("address", ["nonsense", "foo://host:1", "tcp://127.0.0.1:notaport"])
def test_a_malformed_scheduler_address_is_an_input_error_at_once(address):
    with pytest.raises(InputError, match=r"^--scheduler: not a scheduler address"):
        scheduler_address(address)


# ---------------------------------------------------------------- the group's one place for errors


@click.command("explode")
@click.argument("kind")
def explode(kind: str) -> None:
    """Test only: raise what KIND names (a plain click command: the group's handling covers it)."""
    raise {
        "bug": RuntimeError("the flux capacitor\n  broke"),
        "input": InputError("--start 2030 is after the recording"),
        "damage": StoreDamageError("s.zarr: participant 'P1', day 3: a chunk of 'acc' is damaged"),
        "lease": LeaseHeldError("s.zarr: held by ingest, pid 12, on host"),
        "permission": PermissionError(errno.EACCES, "Permission denied", "/data/out.zarr"),
        "rename": FileExistsError(errno.EEXIST, "File exists", "/a", None, "/b"),
        "oserror": OSError("--resume: no checkpoint.pt in run/"),
        "usage": click.BadParameter("no good", param_hint="KIND"),
    }[kind]


def group_with_explode() -> click.Group:
    group = copy.copy(main)
    group.commands = {**main.commands, "explode": explode}  # the real group stays as it is
    return group


@pytest.mark.parametrize("kind, status, line", [
    ("bug", 1, "error: RuntimeError: the flux capacitor broke (run with -v for the traceback)"),
    ("input", 2, "error: --start 2030 is after the recording"),
    ("damage", 1, "error: s.zarr: participant 'P1', day 3: a chunk of 'acc' is damaged"),
    ("lease", 2, "error: s.zarr: held by ingest, pid 12, on host"),
    ("permission", 2, "error: /data/out.zarr: Permission denied"),
    ("rename", 2, "error: /a → /b: File exists"),
    ("oserror", 2, "error: --resume: no checkpoint.pt in run/"),
])  # fmt: skip
def test_an_error_is_one_line_and_its_exit_status(kind, status, line):
    result = CliRunner().invoke(group_with_explode(), ["explode", kind])
    assert result.exit_code == status, result.output
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""


def test_with_v_an_unexpected_error_shows_its_traceback_then_the_line():
    result = CliRunner().invoke(group_with_explode(), ["-v", "explode", "bug"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any("raise {" in line for line in lines)  # the frame in explode
    assert lines[-1] == "error: RuntimeError: the flux capacitor broke"


def test_click_usage_errors_keep_their_exit_status_2():
    result = CliRunner().invoke(group_with_explode(), ["explode", "usage"])
    assert result.exit_code == 2 and "Invalid value for KIND: no good" in result.stderr
    assert run_cli("info").exit_code == 2  # a missing argument
    assert run_cli("nonsense").exit_code == 2


def test_a_command_run_on_its_own_reports_the_same_way(tmp_path):
    result = CliRunner().invoke(features_command, [str(tmp_path / "absent.zarr")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'absent.zarr'}: no accelstore store here"]


# ---------------------------------------------------------------- OSErrors and bad paths: exit 2, one line


def test_an_output_that_cannot_be_created_is_one_line_naming_it(raw):
    result = run_cli("-q", "ingest", str(raw), "-o", "/proc/forbidden.zarr")
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.stderr)
    assert line.startswith("error: /proc/forbidden.zarr") and "Traceback" not in result.output
    result = run_cli("-q", "synth", "/proc/forbidden", "--participants", "1", "--days", "0.01")
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == ["error: /proc/forbidden: No such file or directory"]


def test_a_store_path_that_is_a_plain_file_is_one_line(tmp_path, raw):
    plain = tmp_path / "plain.zarr"
    plain.write_text("not a store")
    for arguments in (["info", str(plain)], ["-q", "ingest", str(raw), "-o", str(plain)], ["features", str(plain)]):
        result = run_cli(*arguments)
        assert result.exit_code == 2, (arguments, result.output)
        [line] = error_lines(result.stderr)
        assert line.startswith(f"error: {plain}: "), arguments


@pytest.mark.parametrize("pattern, reason", [("(P\\d+", "is not a regular expression: missing ), unterminated subpattern"),
                                             ("P\\d+", "has no group")])
def test_a_bad_id_pattern_is_refused_before_anything_runs(raw, tmp_path, pattern, reason):
    store = tmp_path / "never.zarr"
    result = run_cli("-q", "ingest", str(raw), "-o", str(store), "--id-pattern", pattern)
    assert result.exit_code == 2
    assert "Invalid value for '--id-pattern'" in result.stderr and reason in result.stderr
    assert not store.exists()


# ---------------------------------------------------------------- tasks: deterministic errors are not retried


def _attempt(task: tuple[str, str]) -> str:
    """Record the attempt in the task's log file, then fail as ``kind`` says."""
    kind, log = task
    with open(log, "a") as attempts:
        attempts.write("attempt\n")
    if kind == "reader":
        raise ReaderError(log, "bad block header")
    if kind == "damage":
        raise StoreDamageError("a chunk of 'acc' is damaged")
    if kind == "value":
        raise ValueError("no windows")
    if kind == "oserror":
        raise OSError(errno.EIO, "Input/output error", log)
    return kind


KINDS = {"reader": 1, "damage": 1, "value": 1, "oserror": 3, "fine": 1}  # attempts with retries=2


def _check_attempts(results: dict, tasks: list[tuple[str, str]]) -> None:
    assert sorted(results) == sorted(tasks)
    attempts = {kind: len(Path(log).read_text().splitlines()) for kind, log in tasks}
    assert attempts == KINDS
    messages = {kind: results[(kind, log)] for kind, log in tasks}
    log_of = dict(tasks)
    assert messages["fine"] == "fine"
    assert messages["reader"] == TaskError(f"ReaderError: {log_of['reader']}: unreadable: bad block header")
    assert messages["damage"] == TaskError("StoreDamageError: a chunk of 'acc' is damaged")
    assert messages["value"] == TaskError("ValueError: no windows")
    assert messages["oserror"] == TaskError(f"OSError: [Errno 5] Input/output error: '{log_of['oserror']}'")


def _tasks(folder: Path) -> list[tuple[str, str]]:
    folder.mkdir()
    return [(kind, str(folder / f"{kind}.log")) for kind in KINDS]


def test_in_this_process_only_transient_errors_are_retried(tmp_path):
    tasks = _tasks(tmp_path / "attempts")
    _check_attempts(dict(run_tasks(None, _attempt, tasks, retries=2)), tasks)


def test_on_a_local_cluster_only_transient_errors_are_retried_and_workers_print_no_traceback(tmp_path, capfd):
    tasks = _tasks(tmp_path / "attempts")
    with dask_client(1, None) as client:
        results = dict(run_tasks(client, _attempt, tasks, retries=2))
    _check_attempts(results, tasks)
    printed = capfd.readouterr().err  # the worker processes write to this process's stderr
    assert "Compute Failed" not in printed and "Traceback" not in printed
    assert "still alive" not in printed


# ---------------------------------------------------------------- a real run; queries of a store


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """A real run, in a process of its own: what its workers print lands on its stderr."""
    root = tmp_path_factory.mktemp("real")
    synthesize(root / "raw", participants=2, days=0.05, seed=3)
    store = root / "store.zarr"
    run = run_cli_process("ingest", str(root / "raw"), "-o", str(store), "--workers", "2", timeout=300)
    return run, store


def test_a_real_ingest_ends_without_a_traceback_or_a_killed_worker(ingested):
    run, _ = ingested
    assert run.returncode == 0, run.stderr
    assert "2 written, 0 unchanged, 0 failed" in run.stdout
    assert "Traceback" not in run.stderr
    assert "still alive" not in run.stderr and "killing" not in run.stderr, run.stderr  # the nanny killed no worker


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two synthetic participants ingested in this process: a store to query."""
    root = tmp_path_factory.mktemp("queried")
    synthesize(root / "raw", participants=2, days=0.05, seed=3)
    store = root / "store.zarr"
    assert ingest([root / "raw"], str(store), scheduler="synchronous", progress=False).ok
    return store


def test_query_errors_are_the_stores_own(store, tmp_path):
    query = ["query", str(store), "P001", "-o", str(tmp_path / "q.npy")]
    backwards = run_cli(*query, "--start", "2030-01-02", "--end", "2030-01-01")
    assert backwards.exit_code == 2
    [line] = error_lines(backwards.stderr)
    assert line.startswith("error: --start") and "Usage" not in backwards.stderr  # InputError, not blamed on usage
    unknown = run_cli("query", str(store), "NOPE", "-o", str(tmp_path / "q.npy"))
    assert unknown.exit_code == 1
    [line] = error_lines(unknown.stderr)
    assert line.startswith("error: participant 'NOPE' is not in")
    unwritable = run_cli("query", str(store), "P001", "-o", "/proc/q.npy")
    assert unwritable.exit_code == 2
    [line] = error_lines(unwritable.stderr)
    assert line.startswith("error: /proc/q.npy: ")
    bad_format = run_cli("query", str(store), "P001", "-o", str(tmp_path / "q.xyz"))
    assert bad_format.exit_code == 2 and "Invalid value for --output" in bad_format.stderr
