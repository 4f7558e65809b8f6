"""The pre-training loop: DDP under real torchrun processes, exact resume after SIGKILL, checkpoints
that load with weights_only, the exported encoder, the warm-up, and pretext accuracy that rises.

The store holds the gait recordings of examples/pretrain_demo.py, written as .cwa files and
ingested: steps along gravity with a fast rise and a slow fall, so that every pretext task can be
learnt. (The days of ``accelstore.synth`` are mostly still, and their steps time-reversible.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from accelstore import open_store
from accelstore.cli.training import pretrain_command
from accelstore.models.harnet import Harnet, load_pretrained
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.pretext_validation import build_validation_set
from accelstore.readers import ProcessingOptions
from accelstore.training.config import TrainConfig
from accelstore.training.pretrain import build_optimizer, rng_states, set_rng_states, train
from helpers import assert_help_explains

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pretrain_demo import write_gait

PARTICIPANTS = 6  # of 3 hours; one is held out: 5 × 1,080 training windows
VALIDATION_WINDOWS = 1024
NARROW = ["--width", "0.125", "--log-every", "5"]
PRETRAIN = [sys.executable, "-m", "accelstore.cli.training"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("gait")
    write_gait(folder, PARTICIPANTS)
    path = str(folder / "gait.zarr")
    raw = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
    assert ingest([folder], path, options=raw, scheduler="synchronous", progress=False).ok
    build_validation_set(path, VALIDATION_WINDOWS, 0.2, seed=0, scheduler="synchronous", progress=False)
    return path


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def metrics(run: Path, split: str) -> list[dict]:
    return [record for line in (run / "metrics.jsonl").read_text().splitlines() if (record := json.loads(line))["split"] == split]


def holdout_rows(store: str) -> set[int]:
    opened = open_store(store)
    return {int(opened.participants.at[pid, "row"]) for pid in opened.group.attrs["holdout"]}


def test_two_torchrun_ranks_see_disjoint_data_and_end_with_identical_weights(store: str, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "accelstore.cli.training",
               store, "--out", str(run), *NARROW, "--batch-size", "32", "--workers", "0", "--max-steps", "6", "--checkpoint-every", "3", "--debug"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    seen = [np.loadtxt(run / "debug" / f"windows_rank{rank}.csv", delimiter=",", dtype=np.int64, ndmin=2) for rank in (0, 1)]
    assert [len(ids) for ids in seen] == [6 * 32, 6 * 32]
    ids = [set(map(tuple, rank_ids)) for rank_ids in seen]
    assert len(ids[0]) == len(ids[1]) == 6 * 32  # no window twice on a rank either
    assert not ids[0] & ids[1]
    assert not {participant for participant, _, _ in ids[0] | ids[1]} & holdout_rows(store)

    rank0, rank1 = load(run / "debug" / "model_rank0.pt"), load(run / "debug" / "model_rank1.pt")
    assert_same_tensors(rank0, rank1)
    checkpoint = load(run / "checkpoint.pt")  # plain types and tensors only
    assert_same_tensors(checkpoint["model"], rank0)
    assert checkpoint["progress"]["step"] == 6 and checkpoint["loader"]["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # seeds differ per rank

    encoder = Harnet("harnet10", width=0.125)
    report = load_pretrained(encoder, run / "best_encoder.pt")
    assert report.n_tensors == len(encoder.feature_extractor.state_dict())
    assert_same_tensors({f"feature_extractor.{k}": v for k, v in encoder.feature_extractor.state_dict().items()},
                        {k: v for k, v in rank0.items() if k.startswith("feature_extractor.")})  # fmt: skip
    assert load_pretrained(Harnet("harnet10", width=0.125), run / "checkpoint.pt").n_tensors == report.n_tensors
    assert [record["step"] for record in metrics(run, "train")] == [5]
    assert len(metrics(run, "val")) == 1


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(store: str, tmp_path: Path) -> None:
    # Two epochs of ~21 steps (std sampling draws half the windows); the kill comes right after the
    # first checkpoint (step 10), mid-epoch.
    options = [store, *NARROW, "--batch-size", "128", "--workers", "1", "--epochs", "2", "--checkpoint-every", "10", "--sampling", "std",
               "--lr", "1e-3", "--deterministic"]  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = subprocess.run([*PRETRAIN, *options, "--out", str(whole)], capture_output=True, text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    process = subprocess.Popen([*PRETRAIN, *options, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its first checkpoint"
    os.killpg(process.pid, signal.SIGKILL)  # the run, its DataLoader worker and forkserver
    assert process.wait() == -signal.SIGKILL
    interrupted_at = load(killed / "checkpoint.pt")["progress"]
    final = load(whole / "checkpoint.pt")
    assert 0 < interrupted_at["step"] < final["progress"]["step"]

    resumed = subprocess.run([*PRETRAIN, *options, "--out", str(killed), "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = load(killed / "checkpoint.pt")
    assert again["progress"] == final["progress"]
    assert_same_tensors(again["model"], final["model"])
    assert_same_tensors(load(killed / "best_encoder.pt"), load(whole / "best_encoder.pt"))
    assert [r["loss"] for r in metrics(killed, "val")] == [r["loss"] for r in metrics(whole, "val")]

    changed = CliRunner().invoke(pretrain_command, [*options, "--out", str(killed), "--resume", "--width", "0.25"])
    assert changed.exit_code == 2 and "width" in changed.output


@pytest.mark.slow
def test_pretext_accuracy_rises_well_above_chance(store: str, tmp_path: Path) -> None:
    # ~1 minute on 2 idle cores. Accuracy at the best validation loss (the exported encoder's).
    config = TrainConfig(store, str(tmp_path / "run"), width=0.125, batch_size=64, workers=0, epochs=8, lr=1e-3, warmup_epochs=1,
                         sampling="uniform", log_every=20, progress=False)  # fmt: skip
    started = time.monotonic()
    result = train(config)
    validations = metrics(tmp_path / "run", "val")
    best = min(validations, key=lambda record: record["loss"])
    accuracy = {task: best[f"acc/{task}"] for task in config.tasks}
    print(f"validation accuracy at the best epoch ({best['epoch']}), {time.monotonic() - started:.0f} s: {accuracy}")
    assert len(validations) == config.epochs and result.stopped == "epochs"
    assert result.progress.best_loss == best["loss"] < validations[0]["loss"]
    assert best["acc"] == pytest.approx(np.mean(list(accuracy.values())))
    assert best["acc"] >= 0.75


def test_warmup_rises_linearly_and_stops_at_the_target() -> None:
    config = TrainConfig("store", "out", lr=0.8, warmup_epochs=4)
    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), config, world_size=1)
    rates = []
    for _ in range(7):  # epochs
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8])
    assert optimizer.defaults["amsgrad"]
    default = build_optimizer(torch.nn.Linear(2, 2), TrainConfig("store", "out", batch_size=256, warmup_epochs=0), world_size=4)[0]
    assert default.param_groups[0]["lr"] == pytest.approx(1e-4 * 256 * 4 / 512)


def test_rng_states_survive_a_weights_only_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    set_rng_states(load(tmp_path / "rng.pt"))
    drawn = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2:] == expected[2:]


def test_refuses_what_it_cannot_do(store: str, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(pretrain_command, [store, "--out", str(tmp_path / "none"), "--resume"])
    assert missing.exit_code == 2 and "no checkpoint.pt" in missing.output
    five_seconds = runner.invoke(pretrain_command, [store, "--out", str(tmp_path / "five"), "--window", "5", *NARROW, "--workers", "0"])
    assert five_seconds.exit_code == 2 and "10-s windows" in five_seconds.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "checkpoint.pt").write_bytes(b"")
    taken = runner.invoke(pretrain_command, [store, "--out", str(tmp_path / "taken")])
    assert taken.exit_code == 2 and "already holds a run" in taken.output
    unknown = runner.invoke(pretrain_command, [store, "--out", str(tmp_path / "x"), "--tasks", "aot,spin"])
    assert unknown.exit_code == 2 and "spin" in unknown.output


PRETRAIN_OPTIONS = {
    "--out", "--tasks", "--window", "--epochs", "--batch-size", "--workers", "--width", "--lr", "--warmup-epochs", "--patience",
    "--checkpoint-every", "--log-every", "--max-steps", "--sampling", "--augment", "--no-augment", "--seed", "--device", "--compile",
    "--deterministic", "--no-validation", "--resume", "--debug",
}  # fmt: skip


def test_pretrain_explains_every_setting_it_offers_with_the_config_default() -> None:
    options = {param.name: param for param in pretrain_command.params if isinstance(param, click.Option)}
    offered = [field for field in fields(TrainConfig) if "help" in field.metadata]
    assert set(options) == {field.name for field in offered} == set(TrainConfig.__dataclass_fields__) - {"store", "progress"}
    assert {name for option in options.values() for name in option.opts + option.secondary_opts} == PRETRAIN_OPTIONS
    assert_help_explains(pretrain_command, offered)


def test_a_pretrain_command_line_gives_the_config_built_by_hand() -> None:
    assert TrainConfig(**pretrain_command.make_context("pretrain", ["S", "--out", "R"]).params) == TrainConfig("S", "R")
    every_option = ["S", "--out", "R", "--tasks", "time_warp,aot", "--window", "30", "--epochs", "3", "--batch-size", "16", "--workers", "0",
                    "--width", "0.25", "--lr", "0.001", "--warmup-epochs", "0", "--patience", "2", "--checkpoint-every", "0", "--log-every", "7",
                    "--max-steps", "9", "--sampling", "uniform", "--no-augment", "--seed", "4", "--device", "cpu", "--compile",
                    "--deterministic", "--no-validation", "--resume", "--debug"]  # fmt: skip
    by_hand = TrainConfig("S", "R", tasks=("aot", "time_warp"), window=30, epochs=3, batch_size=16, workers=0, width=0.25, lr=0.001,
                          warmup_epochs=0, patience=2, checkpoint_every=0, log_every=7, max_steps=9, sampling="uniform", augment=False,
                          seed=4, device="cpu", compile=True, deterministic=True, validate=False, resume=True, debug=True)  # fmt: skip
    parsed = TrainConfig(**pretrain_command.make_context("pretrain", every_option).params)
    assert parsed == by_hand and isinstance(parsed.window, int)
    defaults = TrainConfig("S", "R")
    unchanged = [field.name for field in fields(TrainConfig) if getattr(by_hand, field.name) == getattr(defaults, field.name)]
    assert unchanged == ["store", "out", "progress"]  # the command line above sets every other setting


@pytest.mark.parametrize("arguments, message", [
    (["--window", "7"], "'7' is not one of '5', '10', '30'"),
    (["--epochs", "0"], "0 is not in the range x>=1"),
    (["--width", "0"], "0 is not in the range x>0"),
    (["--tasks", "aot,spin"], "choose from aot, scale, permute, time_warp"),
    (["--device", "tpu"], "'tpu' is not one of 'cpu', 'cuda'"),
])
def test_pretrain_refuses_values_outside_the_config_s_range(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(pretrain_command, ["S", "--out", "R", *arguments])
    assert result.exit_code == 2 and message in result.output
