"""Self-supervised pre-training end to end on a laptop CPU, in a few minutes.

Synthesises a few participants as .cwa files, ingests them into a store, holds one out for the
fixed pretext validation set, pre-trains a narrow harnet10 (channels ÷ 8) with the three
published pretext tasks, and draws the loss and accuracy curves into OUT/curves.png.

    python examples/pretrain_demo.py [OUT] [--source gait|synth] [--participants 6] [--epochs 12]

Running it again reuses the store and continues the run where it stopped (``--resume``).

Two sources of recordings:

- ``gait`` (default): three hours of walking per participant: steps along gravity with a fast rise
  and a slow fall, a cadence (1-2.5 Hz), amplitude and posture that drift smoothly. The arrow of
  time shows in every window, whatever the rotation, so the tasks can be learnt: in a few CPU
  minutes arrow of time and time warp pass 90 % on the held-out participant; permutation rises
  last. (tests/test_train.py trains on these recordings too.)
- ``synth``: the realistic days of ``accelstore.synth``. Little is learnt from them in minutes:
  most windows are still (sleep, sitting), where no transform is visible, and their steps are
  time-reversible (the gait harmonics have independent random phases), so the arrow of time
  stays at chance whatever the training.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import accelstore
from accelstore import synth

log = logging.getLogger("pretrain_demo")

GAIT_RATE_HZ = 50.0
GAIT_HOURS = 3.0


def drifting(rng: np.random.Generator, t: np.ndarray, period_s: float, low: float, high: float) -> np.ndarray:
    """A value drifting smoothly in [low, high]: three sines with periods around ``period_s``."""
    phases = rng.uniform(0, 2 * np.pi, 3)
    periods = period_s * rng.uniform(0.5, 2, 3)
    wave = sum(np.sin(2 * np.pi * t / p + phase) for p, phase in zip(periods, phases)) / 3
    return low + (high - low) * (wave + 1) / 2


def gait_recording(hours: float, seed: int) -> synth.SyntheticRecording:
    """Walking with a time-asymmetric step, in a slowly turning posture, with sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(hours * 3600 * GAIT_RATE_HZ)) / GAIT_RATE_HZ
    phase = 2 * np.pi * np.cumsum(drifting(rng, t, 300, 1.0, 2.5)) / GAIT_RATE_HZ  # cadence 1-2.5 Hz
    amplitude = drifting(rng, t, 600, 0.2, 0.8)
    step = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)  # fast rise, slow fall
    tilt, turn = drifting(rng, t, 900, -1.2, 1.2), drifting(rng, t, 1200, -np.pi, np.pi)
    up = np.stack([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), np.cos(tilt)], axis=1)
    side = np.stack([np.cos(tilt) * np.cos(turn), np.cos(tilt) * np.sin(turn), -np.sin(tilt)], axis=1)
    swing = 0.3 * amplitude * np.sin(phase / 2 + rng.uniform(0, 2 * np.pi))
    xyz = up * (1 + amplitude * step)[:, None] + side * swing[:, None] + rng.normal(0, 0.005, (len(t), 3))
    activity = np.full(len(t), synth.WALKING, np.int8)
    return synth.SyntheticRecording(np.datetime64("2024-03-01T10:00:00", "ns"), GAIT_RATE_HZ, t, xyz.astype(np.float32), activity, np.empty((0, 2)))


def write_gait(folder: Path, participants: int, hours: float = GAIT_HOURS) -> list[Path]:
    """``G0.cwa`` … in ``folder``: one gait recording per participant, seeded by its number."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"G{i}.cwa" for i in range(participants)]
    for i, path in enumerate(paths):
        synth.write_cwa(path, gait_recording(hours, seed=i), device_id=100 + i)
    return paths


def build_store(out: Path, source: str, participants: int) -> str:
    """Recordings → store → validation set from one held-out participant (once)."""
    store = out / "store.zarr"
    if not (store / "pretext").exists():
        if source == "gait":
            write_gait(out / "raw", participants)
        else:
            synth.synthesize(out / "raw", participants=participants, days=0.5, seed=0)
        report = accelstore.ingest([out / "raw"], str(store), workers=2, progress=False)
        if not report.ok:
            raise RuntimeError(f"ingest failed: {report.failed}")
        accelstore.build_validation_set(str(store), windows=1024, holdout_fraction=1 / participants, seed=0, workers=2, progress=False)
        log.info("store %s: %d participants of %s, one held out", store, participants, source)
    return str(store)


def plot_curves(run: Path, tasks: tuple[str, ...], path: Path) -> None:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], color="0.6", label="training (mean of tasks)")
    for task in tasks:
        steps = [r["step"] for r in val]
        loss_axes.plot(steps, [r[f"loss/{task}"] for r in val], marker="o", label=f"validation, {task}")
        acc_axes.plot(steps, [r[f"acc/{task}"] for r in val], marker="o", label=task)
    acc_axes.axhline(0.5, color="0.6", linestyle=":", label="chance")
    loss_axes.set(xlabel="step", ylabel="cross-entropy", title="Pretext loss", ylim=(0, 1.5))
    acc_axes.set(xlabel="step", ylabel="accuracy", title="Validation accuracy (held-out participant)", ylim=(0.3, 1.0))
    loss_axes.legend()
    acc_axes.legend()
    figure.savefig(path, dpi=120)
    log.info("curves in %s", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=Path("demo/pretrain"))
    parser.add_argument("--source", choices=["gait", "synth"], default="gait", help="which recordings to synthesise")
    parser.add_argument("--participants", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--width", type=float, default=0.125)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    store = build_store(args.out, args.source, args.participants)
    run = args.out / "run"
    config = accelstore.TrainConfig(store, str(run), width=args.width, batch_size=64, workers=1, epochs=args.epochs, lr=1e-3,
                                    warmup_epochs=1, sampling="uniform", log_every=20, resume=(run / "checkpoint.pt").exists())  # fmt: skip
    result = accelstore.train(config)
    log.info("stopped (%s) after %d steps; encoder in %s", result.stopped, result.progress.step, run / "best_encoder.pt")
    plot_curves(run, config.tasks, args.out / "curves.png")


if __name__ == "__main__":
    main()
