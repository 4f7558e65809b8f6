"""``accelstore evaluate`` and ``accelstore embed``: encoders on a labelled store.

Exit status: 0 success; 2 bad usage or input (an unknown model, a pre-trained model without
``--encoder``, a missing store or one without labels, an encoder that does not fit ``--width``).

torch, scikit-learn and matplotlib are imported when a command runs, so that they do not slow
down the start of every ``accelstore`` command; the run settings' options are built from the
fields of :class:`accelstore.evaluation.config.EvaluationConfig`, which imports none of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from accelstore.cli.errors import AccelstoreCommand
from accelstore.cli.options import config_options, opened_store, show_progress
from accelstore.evaluation.config import PRETRAINED_MODELS, EvaluationConfig

if TYPE_CHECKING:
    from accelstore.evaluation.evaluate import LabelledWindows

logger = logging.getLogger(__name__)


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
@config_options(EvaluationConfig)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report folder: summary.md, summary.csv, subjects.csv, classes.csv, timings.csv, confusion_MODEL.png.")
@click.pass_context
def evaluate_command(ctx: click.Context, store: str, encoder: Path | None, output: Path, **settings: object) -> None:
    """Evaluate a random forest, harnet from scratch, and a pre-trained encoder frozen and fine-tuned
    on the labelled windows of STORE, by subject (leave-one-subject-out up to 10 subjects, else
    5-fold grouped); write the report to --output.

    Exit status: 0 done; 2 bad usage or input (an unknown model, frozen or finetune without
    --encoder, a store without labels, an encoder that does not fit --width).
    """
    from accelstore.evaluation.evaluate import evaluate
    from accelstore.evaluation.report import SUMMARY_MD, summary_markdown, write_report
    from accelstore.models.harnet import CheckpointMismatchError

    config = EvaluationConfig(**settings)
    if encoder is None and any(m in PRETRAINED_MODELS for m in config.models_for(with_encoder=False)):
        raise click.BadParameter("frozen and finetune need --encoder", param_hint="--models")
    data = _labelled(store)
    logger.info("%d labelled windows of %d subjects, %d classes", len(data.y), len(np.unique(data.groups)),
                len(data.class_names))
    try:
        report = evaluate(data.X, data.y, data.groups, config, encoder=encoder, class_names=data.class_names,
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
@config_options(EvaluationConfig, ["width"])
@click.option("--max-windows", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Windows drawn at random (t-SNE time grows fast with their number).")
@config_options(EvaluationConfig, ["seed"])
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
