"""Writing an evaluation `Report`: Markdown and CSV tables (per model, subject and class) and a
confusion-matrix PNG per model, the classes named as the report names them;
and the 2-D feature maps of ``accelstore embed``.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas, never through pyplot,
so nothing depends on a display or on pyplot's global state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from accelstore.evaluation.evaluate import (
    Encoder,
    Report,
    backbone_for,
    deterministic_torch,
    forward_batches,
)
from accelstore.models.harnet import Harnet, load_pretrained

logger = logging.getLogger(__name__)

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
SUBJECTS_CSV = "subjects.csv"
CLASSES_CSV = "classes.csv"
TIMINGS_CSV = "timings.csv"


def confusion_png(model: str) -> str:
    return f"confusion_{model}.png"


def summary_markdown(report: Report) -> str:
    """The summary table (mean ± SD over test subjects) and the settings, as Markdown."""
    summary = report.summary()
    lines = ["| model | macro F1 | Cohen's κ | subjects | s / fold |", "|---|---|---|---|---|"]
    for model, row in summary.iterrows():
        lines.append(f"| {model} | {row.f1_mean:.3f} ± {row.f1_sd:.3f} | {row.kappa_mean:.3f} ± "
                     f"{row.kappa_sd:.3f} | {int(row.subjects)} | {row.seconds_per_fold:.1f} |")
    settings = ", ".join(f"{key} {value}" for key, value in report.settings.items())
    classes = ", ".join(report.class_names)
    return "\n".join([*lines, "", f"Mean ± SD over test subjects. {settings}.", "", f"Classes: {classes}.", ""])


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write the tables and one confusion-matrix PNG per model into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / SUMMARY_MD, out / SUMMARY_CSV, out / SUBJECTS_CSV, out / CLASSES_CSV, out / TIMINGS_CSV]
    paths[0].write_text(summary_markdown(report), encoding="utf-8")
    report.summary().to_csv(paths[1], index_label="model")
    report.scores.to_csv(paths[2], index=False)
    report.per_class().to_csv(paths[3], index=False)
    report.timings.to_csv(paths[4], index=False)
    for model in report.predictions:
        path = out / confusion_png(model)
        confusion_figure(report.confusion(model), report.class_names, model).savefig(path, dpi=120)
        paths.append(path)
    logger.info("wrote %d report files to %s", len(paths), out)
    return paths


def confusion_figure(counts: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Rows normalised to the true class (colour), with the counts written in the cells."""
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 1.5 + 0.6 * len(class_names)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if share[row, column] > 0.5 else "black")
    figure.colorbar(image, ax=axes, label="share of the true class")
    return figure


def project_2d(features: np.ndarray, seed: int) -> np.ndarray:
    """(n, d) → (n, 2): UMAP when ``umap-learn`` is installed, else scikit-learn's t-SNE."""
    features = features.reshape(len(features), -1)
    try:
        import umap
    except ImportError:
        perplexity = min(30.0, (len(features) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(features)


def embedding_maps(X: np.ndarray, encoder: Encoder, width: float, seed: int) -> dict[str, np.ndarray]:
    """2-D maps of windows ``X``: of the raw inputs, of an untrained backbone's features (random
    weights drawn with ``seed``) and of the pre-trained ``encoder``'s features."""
    name = backbone_for(X.shape[-1])
    with deterministic_torch(seed):
        untrained = Harnet(name, width)
    trained = Harnet(name, width)
    load_pretrained(trained, encoder)
    inputs = {"raw input": X, "untrained encoder": forward_batches(untrained, X),
              "pre-trained encoder": forward_batches(trained, X)}
    return {title: project_2d(values, seed) for title, values in inputs.items()}


def embedding_figure(maps: Mapping[str, np.ndarray], y: np.ndarray, class_names: Sequence[str]) -> Figure:
    """One scatter panel per 2-D map (title → (n, 2)), points coloured by class."""
    figure = Figure(figsize=(4.5 * len(maps) + 1.5, 4.5), layout="constrained")
    panels = figure.subplots(1, len(maps), squeeze=False)[0]
    palette = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    for axes, (title, points) in zip(panels, maps.items()):
        for code, name in enumerate(class_names):
            mine = y == code
            axes.scatter(points[mine, 0], points[mine, 1], s=6, color=palette(code % palette.N), label=name)
        axes.set_title(title)
        axes.set_xticks([])
        axes.set_yticks([])
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", markerscale=2)
    return figure
