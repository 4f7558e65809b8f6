"""The paper's comparison on the watch_exercises data: random forest, harnet from scratch, and an
encoder pre-trained on synthetic recordings, frozen and fine-tuned, leave-one-subject-out.

    python examples/evaluate_watch.py OUT [--width 0.25] [--pretrain-steps 300] [--device cpu]

The pipeline, each step skipped when its output exists in OUT: ingest the labelled CSVs
(``accelstore ingest --labels``); write synthetic recordings, ingest them, build their pretext
validation set and pre-train an encoder on them (``accelstore synth``, ``ingest``, ``pretext``,
``python -m accelstore.cli.training``); evaluate; write the report to OUT/report and log
the summary and the seconds per fold.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import click

import accelstore

logger = logging.getLogger("evaluate_watch")

WATCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "labelled" / "watch_exercises"


def run(*arguments: str) -> None:
    """Run one accelstore command in a fresh process (as a user would), failing loudly."""
    logger.info("$ %s", " ".join(arguments))
    subprocess.run([sys.executable, "-m", *arguments], check=True)


def pretrained_encoder(out: Path, width: float, steps: int, participants: int, days: float, device: str) -> Path:
    encoder = out / "pretrain" / "best_encoder.pt"
    if encoder.exists():
        return encoder
    store = out / "synth.zarr"
    if not store.exists():
        run("accelstore", "-q", "synth", str(out / "synth"), "-n", str(participants), "--days", str(days), "--seed", "0")
        run("accelstore", "-q", "ingest", str(out / "synth"), "-o", str(store), "--scheduler", "synchronous")
        run("accelstore", "-q", "pretext", str(store), "--windows", "1000", "--holdout-fraction", "0.25",
            "--seed", "0", "--scheduler", "synchronous")
    run("accelstore.cli.training", str(store), "--out", str(out / "pretrain"), "--width", str(width),
        "--batch-size", "128", "--workers", "0", "--lr", "1e-3", "--warmup-epochs", "0", "--epochs", "100",
        "--max-steps", str(steps), "--log-every", "50", "--device", device)
    return encoder


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=WATCH, show_default=True,
              help="The labelled CSVs (time,x,y,z,annotation).")
@click.option("--width", type=float, default=0.25, show_default=True, help="Backbone width (1: the published harnet).")
@click.option("--pretrain-steps", type=int, default=300, show_default=True, help="Pre-training optimiser steps.")
@click.option("--participants", type=int, default=4, show_default=True, help="Synthetic recordings to pre-train on.")
@click.option("--days", type=float, default=1.0, show_default=True, help="Days per synthetic recording.")
@click.option("--epochs", type=int, default=100, show_default=True, help="Most fine-tuning epochs per fold.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Fine-tuning learning rate.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Rotate and reorder axes in training.")
@click.option("--trees", type=int, default=3000, show_default=True, help="Random-forest trees.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Random-forest processes.")
@click.option("--device", type=str, default="cpu", show_default=True, help="Torch device.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation.")
def main(out: Path, data: Path, width: float, pretrain_steps: int, participants: int, days: float,
         epochs: int, lr: float, augment: bool, trees: int, jobs: int, device: str, seed: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out.mkdir(parents=True, exist_ok=True)
    store = out / "watch.zarr"
    if not store.exists():
        run("accelstore", "-q", "ingest", str(data), "-o", str(store), "--labels", "--scheduler", "synchronous")
    encoder = pretrained_encoder(out, width, pretrain_steps, participants, days, device)

    labelled = accelstore.load_labelled(str(store))
    config = accelstore.EvaluationConfig(width=width, epochs=epochs, learning_rate=lr, augment=augment, trees=trees, jobs=jobs,
                                         device=device, seed=seed)  # every model: there is an encoder
    report = accelstore.evaluate(labelled.X, labelled.y, labelled.groups, config, encoder=encoder, class_names=labelled.class_names)
    accelstore.write_report(report, out / "report")
    logger.info("summary\n%s", report.summary().to_string(float_format="%.3f"))
    seconds = report.timings.groupby("model", sort=False).agg(seconds_per_fold=("seconds", "mean"),
                                                              epochs_per_fold=("epochs", "mean"))
    logger.info("time per fold\n%s", seconds.to_string(float_format="%.1f"))


if __name__ == "__main__":
    main()
