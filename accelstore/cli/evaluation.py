"""``accelstore evaluate`` and ``accelstore embed``: encoders on a labelled store.

Exit status: 0 success; 2 bad usage or input (an unknown model, a pre-trained model without
``--encoder``, a missing store or one without labels, an encoder that does not fit ``--width``).

torch, scikit-learn and matplotlib are imported when a command runs, so that they do not slow
down the start of every ``accelstore`` command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from accelstore.cli.errors import AccelstoreCommand
from accelstore.cli.options import comma_list, opened_store, show_progress

if TYPE_CHECKING:
    from accelstore.evaluation.evaluate import LabelledWindows

logger = logging.getLogger(__name__)
MODEL_NAMES = ("rf", "scratch", "frozen", "finetune")  # evaluate.MODELS, without importing torch here

WIDTH_HELP = "Channel width of the backbone relative to the published harnet (1); must match --encoder."
SEED_HELP = "Seed: the same seed gives the same results."


def _labelled(store: str) -> LabelledWindows:
    from accelstore.evaluation.evaluate import load_labelled

    try:
        return load_labelled(opened_store(store))
    except ValueError as error:  # no labels (not a store: StoreError, reported by AccelstoreCommand)
        raise click.BadParameter(str(error), param_hint="STORE") from None


@click.command("evaluate", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--encoder", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pre-trained encoder checkpoint (a state_dict, DDP-prefixed or a trainer checkpoint); needed for frozen and finetune.")
@click.option("--models", callback=comma_list(MODEL_NAMES), default=None,
              help=f"Comma-separated models out of {','.join(MODEL_NAMES)}. Default: all four with --encoder, else rf,scratch.")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help=WIDTH_HELP)
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Most epochs per network and fold (early stopping on a validation subject split ends most sooner).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Epochs without a lower validation loss before a network stops.")
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True, help="Windows per training batch.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Adam learning rate of the networks.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random axis order and 3-D rotation of the training windows (docs/architecture.md, 'Pretext tasks and augmentation').")
@click.option("--trees", type=click.IntRange(min=1), default=3000, show_default=True, help="Trees of the balanced random forest (the paper: 3,000).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Processes that grow the random forest's trees.")
@click.option("--device", type=str, default=None, help="Torch device for the networks. Default: cuda when available, else cpu.")
@click.option("--seed", type=int, default=0, show_default=True, help=SEED_HELP)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report folder: summary.md, summary.csv, subjects.csv, timings.csv, confusion_MODEL.png.")
@click.pass_context
def evaluate_command(ctx: click.Context, store: str, encoder: Path | None, models: tuple[str, ...] | None,
                     width: float, epochs: int, patience: int, batch_size: int, learning_rate: float, augment: bool, trees: int,
                     jobs: int, device: str | None, seed: int, output: Path) -> None:
    """Evaluate a random forest, harnet from scratch, and a pre-trained encoder frozen and fine-tuned
    on the labelled windows of STORE, by subject (leave-one-subject-out up to 10 subjects, else
    5-fold grouped); write the report to --output.

    Exit status: 0 done; 2 bad usage or input (an unknown model, frozen or finetune without
    --encoder, a store without labels, an encoder that does not fit --width).
    """
    from accelstore.evaluation.evaluate import MODELS, PRETRAINED_MODELS, evaluate
    from accelstore.evaluation.report import SUMMARY_MD, summary_markdown, write_report
    from accelstore.models.harnet import CheckpointMismatchError

    if models is None:
        models = MODELS if encoder else tuple(m for m in MODELS if m not in PRETRAINED_MODELS)
    if encoder is None and any(m in PRETRAINED_MODELS for m in models):
        raise click.BadParameter("frozen and finetune need --encoder", param_hint="--models")
    data = _labelled(store)
    logger.info("%d labelled windows of %d subjects, %d classes", len(data.y), len(np.unique(data.groups)),
                len(data.class_names))
    try:
        report = evaluate(data.X, data.y, data.groups, models=models, encoder=encoder, seed=seed, width=width,
                          epochs=epochs, n_estimators=trees, class_names=data.class_names, batch_size=batch_size,
                          learning_rate=learning_rate, patience=patience, augment=augment, device=device, n_jobs=jobs,
                          progress=show_progress(ctx))
    except CheckpointMismatchError as error:
        raise click.BadParameter(str(error), param_hint="--encoder/--width") from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="STORE") from None
    write_report(report, output)
    click.echo(summary_markdown(report))
    click.echo(f"report: {output / SUMMARY_MD}")


@click.command("embed", cls=AccelstoreCommand)
@click.argument("store", type=str)
@click.option("--encoder", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Pre-trained encoder checkpoint.")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help=WIDTH_HELP)
@click.option("--max-windows", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Windows drawn at random (t-SNE time grows fast with their number).")
@click.option("--seed", type=int, default=0, show_default=True, help=SEED_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The figure (.png).")
def embed_command(store: str, encoder: Path, width: float, max_windows: int, seed: int, output: Path) -> None:
    """Map the labelled windows of STORE to 2-D (UMAP when installed, else t-SNE): raw inputs, an
    untrained encoder and the given encoder side by side, coloured by label.

    Exit status: 0 done; 2 bad usage or input.
    """
    from accelstore.evaluation.report import embedding_figure, embedding_maps
    from accelstore.models.harnet import CheckpointMismatchError

    data = _labelled(store)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data.y), min(max_windows, len(data.y)), replace=False))
    try:
        maps = embedding_maps(data.X[chosen], encoder, width, seed)
    except CheckpointMismatchError as error:
        raise click.BadParameter(str(error), param_hint="--encoder/--width") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    embedding_figure(maps, data.y[chosen], data.class_names).savefig(output, dpi=120)
    click.echo(f"{len(chosen)} windows → {output}")
