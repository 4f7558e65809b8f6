"""Evaluation of encoders on labelled activity data, by subject (docs/architecture.md, "Evaluation").

Four models: ``rf``, a balanced random forest on the 22 hand-crafted features; ``scratch``, the
harnet classifier trained from random weights; ``frozen``, a pre-trained backbone that stays
fixed (no gradients and BatchNorm statistics unchanged) under a trained head; ``finetune``, a
pre-trained backbone trained with its head. Splits are by subject: leave-one-subject-out up to
``LOSO_MAX_SUBJECTS`` subjects, else ``N_GROUP_FOLDS``-fold grouped. The networks hold out a
fraction of the training subjects for early stopping on the class-weighted loss, and train with
random axis orders and rotations (docs/architecture.md, "Pretext tasks and augmentation"). Each test subject gets its macro F1 and Cohen's κ.
A run is a pure function of its inputs and ``seed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from imblearn.ensemble import BalancedRandomForestClassifier
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from torch import nn
from tqdm.auto import tqdm

from accelstore.evaluation.config import MODELS, PRETRAINED_MODELS, EvaluationConfig
from accelstore.evaluation.handcrafted_features import hand_crafted_features
from accelstore.grid import SAMPLE_RATE
from accelstore.kernels.augment import augment
from accelstore.models.harnet import (
    BACKBONE_FOR_WINDOW_S,
    Checkpoint,
    HarnetClassifier,
    load_pretrained,
)
from accelstore.store import Store, open_store

logger = logging.getLogger(__name__)

LOSO_MAX_SUBJECTS = 10
N_GROUP_FOLDS = 5

Encoder = Checkpoint
"""A checkpoint path or an already loaded state_dict (see ``model.load_pretrained``)."""


@dataclass(frozen=True)
class NetworkSettings:
    """How the networks are built and trained: the networks' part of an `EvaluationConfig`."""

    width: float = EvaluationConfig.width
    epochs: int = EvaluationConfig.epochs
    batch_size: int = EvaluationConfig.batch_size
    learning_rate: float = EvaluationConfig.learning_rate
    patience: int = EvaluationConfig.patience  # epochs without a lower validation loss before stopping
    validation_fraction: float = EvaluationConfig.validation_fraction  # of the training subjects, at least one
    augment: bool = EvaluationConfig.augment  # random axis order and 3-D rotation of every training window
    device: str | None = EvaluationConfig.device  # default: cuda when available, else cpu

    @classmethod
    def of(cls, config: EvaluationConfig) -> NetworkSettings:
        return cls(**{setting.name: getattr(config, setting.name) for setting in dataclasses.fields(cls)})

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class Report:
    """The outcome of `evaluate`: scores per model and test subject, predictions per window.

    ``y`` and the predictions are class codes, indices into ``class_names``; the tables name the
    classes."""

    class_names: list[str]
    y: np.ndarray
    groups: np.ndarray
    predictions: dict[str, np.ndarray]  # model → predicted class of every window (each is tested once)
    scores: pd.DataFrame  # model, fold, subject, windows, f1, kappa
    timings: pd.DataFrame  # model, fold, seconds, epochs
    settings: dict[str, object] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per model: mean and SD over test subjects of macro F1 and κ, seconds per fold."""
        by_model = self.scores.groupby("model", sort=False)
        table = pd.DataFrame({
            "f1_mean": by_model["f1"].mean(), "f1_sd": by_model["f1"].std(),
            "kappa_mean": by_model["kappa"].mean(), "kappa_sd": by_model["kappa"].std(),
            "subjects": by_model["subject"].nunique(),
        })
        table["seconds_per_fold"] = self.timings.groupby("model", sort=False)["seconds"].mean()
        return table

    def confusion(self, model: str) -> np.ndarray:
        """(classes, classes) counts over all test windows: row = true class, column = predicted."""
        return confusion_matrix(self.y, self.predictions[model], labels=np.arange(len(self.class_names)))

    def confusion_table(self, model: str) -> pd.DataFrame:
        """`confusion` with the class names: index the true class, columns the predicted one."""
        return pd.DataFrame(self.confusion(model), index=pd.Index(self.class_names, name="true"),
                            columns=pd.Index(self.class_names, name="predicted"))

    def per_class(self) -> pd.DataFrame:
        """One row per model and class (by name): its windows, and precision, recall and F1 over
        every test window."""
        codes = np.arange(len(self.class_names))
        tables = []
        for model, predicted in self.predictions.items():
            precision, recall, f1, windows = precision_recall_fscore_support(self.y, predicted, labels=codes, zero_division=0.0)
            tables.append(pd.DataFrame({"model": model, "class": self.class_names, "windows": windows,
                                        "precision": precision, "recall": recall, "f1": f1}))
        return pd.concat(tables, ignore_index=True)


@dataclass(frozen=True)
class LabelledWindows:
    """Valid labelled windows: ``X`` (n, 3, T) float32 g, ``y`` class codes, ``groups`` subject ids."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    class_names: list[str]


def load_labelled(store: Store | str) -> LabelledWindows:
    """The valid windows with a label (code ≥ 0) of every complete participant of a labelled store."""
    store = open_store(store) if isinstance(store, str) else store
    if not store.labelled:
        raise ValueError(f"{store.path} has no labels (ingest it with --labels)")
    windows, labels, subjects = [], [], []
    for participant in store.select().index:
        recording = store.windows(participant)  # the whole recording, in g, with the query's damage checks
        label = recording["label"].to_numpy()
        keep = recording["valid"].to_numpy() & (label >= 0)
        windows.append(recording.to_numpy()[keep])
        labels.append(label[keep].astype(np.int64))
        subjects.append(np.full(int(keep.sum()), participant, dtype=object))
    if not sum(map(len, labels)):
        raise ValueError(f"{store.path} has no valid labelled windows")
    return LabelledWindows(np.concatenate(windows), np.concatenate(labels),
                           np.concatenate(subjects), [str(c) for c in store.classes])


# --- splits -------------------------------------------------------------------------------------


def subject_folds(groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) window indices: leave-one-subject-out up to ``LOSO_MAX_SUBJECTS`` subjects,
    else ``N_GROUP_FOLDS`` folds of whole subjects (shuffled with ``seed``)."""
    n_subjects = len(np.unique(groups))
    if n_subjects < 2:
        raise ValueError(f"need at least 2 subjects for subject-wise splits, got {n_subjects}")
    splitter = (LeaveOneGroupOut() if n_subjects <= LOSO_MAX_SUBJECTS
                else GroupKFold(N_GROUP_FOLDS, shuffle=True, random_state=seed))
    index = np.zeros(len(groups))
    return list(splitter.split(index, groups=groups))


def validation_split(train: np.ndarray, groups: np.ndarray, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices by subject into (fit, validation); no validation with one subject."""
    subjects = np.unique(groups[train])
    if len(subjects) < 2:
        logger.warning("one training subject: no validation split, no early stopping")
        return train, train[:0]
    n_validation = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    held_out = rng.choice(subjects, n_validation, replace=False)
    in_validation = np.isin(groups[train], held_out)
    return train[~in_validation], train[in_validation]


def _seed_of(*keys: int) -> int:
    """A 63-bit seed derived from the run seed and e.g. fold and epoch."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seed torch and require deterministic algorithms; restore the previous setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# --- networks -----------------------------------------------------------------------------------


class FrozenBackboneClassifier(HarnetClassifier):
    """The classifier with a fixed backbone: no gradients, and BatchNorm always in eval mode, so
    that its running statistics stay those of pre-training whatever ``.train()`` is called."""

    def __init__(self, name: str = "harnet10", n_classes: int = 2, width: float = 1.0) -> None:
        super().__init__(name, n_classes, width)
        self.feature_extractor.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenBackboneClassifier:
        super().train(mode)
        self.feature_extractor.eval()
        return self


def backbone_for(window_samples: int) -> str:
    """The harnet variant for windows of this many samples at 30 Hz."""
    seconds, remainder = divmod(window_samples, SAMPLE_RATE)
    if remainder or seconds not in BACKBONE_FOR_WINDOW_S:
        raise ValueError(f"no backbone for windows of {window_samples} samples at {SAMPLE_RATE} Hz; "
                         f"expected {[s * SAMPLE_RATE for s in BACKBONE_FOR_WINDOW_S]}")
    return BACKBONE_FOR_WINDOW_S[seconds]


def build_network(model: str, n_classes: int, window_samples: int, width: float,
                  encoder: Encoder | None = None) -> HarnetClassifier:
    """``scratch``: random weights; ``frozen`` / ``finetune``: the encoder's backbone loaded."""
    name = backbone_for(window_samples)
    if model == "scratch":
        return HarnetClassifier(name, n_classes, width)
    if encoder is None:
        raise ValueError(f"model {model!r} needs a pre-trained encoder")
    network = (FrozenBackboneClassifier if model == "frozen" else HarnetClassifier)(name, n_classes, width)
    load_pretrained(network, encoder)
    return network


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequencies, n / (classes present × count); 0 for a class absent from ``y``."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    return np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 0.0)


@dataclass(frozen=True)
class TrainingLog:
    epochs: int  # epochs run
    best_epoch: int  # 1-based epoch whose weights were kept (the last one without validation)
    validation_losses: list[float]


def train_network(network: nn.Module, X: np.ndarray, y: np.ndarray, fit: np.ndarray,
                  validation: np.ndarray, settings: NetworkSettings, seed: int) -> TrainingLog:
    """Train ``network`` on windows ``fit`` of (X, y) with the class-weighted cross-entropy, Adam,
    augmentation, and early stopping on the loss of windows ``validation``; keep the best weights."""
    device = settings.torch_device
    network.to(device)
    n_classes = int(network.classifier.linear2.out_features)
    weight = torch.as_tensor(class_weights(y[fit], n_classes), dtype=torch.float32, device=device)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.learning_rate, amsgrad=True)
    rng = np.random.default_rng(_seed_of(seed))
    best_loss, best_epoch, best_state, losses = np.inf, 0, None, []
    for epoch in range(1, settings.epochs + 1):
        network.train()
        order = rng.permutation(fit)
        for first in range(0, len(order), settings.batch_size):
            batch = np.sort(order[first:first + settings.batch_size])
            if len(batch) < 2:  # BatchNorm cannot normalise a single window
                continue
            windows = augment(X[batch], _seed_of(seed, epoch), window_ids=batch) if settings.augment else X[batch]
            logits = network(torch.from_numpy(windows).to(device))
            loss = F.cross_entropy(logits, torch.from_numpy(y[batch]).to(device), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not len(validation):
            best_epoch = epoch
            continue
        logits = torch.from_numpy(forward_batches(network, X[validation], settings.batch_size, device))
        losses.append(float(F.cross_entropy(logits, torch.from_numpy(y[validation]), weight=weight.cpu())))
        if losses[-1] < best_loss:
            best_loss, best_epoch = losses[-1], epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        elif epoch - best_epoch >= settings.patience:
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    return TrainingLog(epoch, best_epoch, losses)


@torch.inference_mode()
def forward_batches(network: nn.Module, X: np.ndarray, batch_size: int = 256,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """``network``'s float32 outputs (a classifier's logits, a backbone's features) for windows
    ``X``, in eval mode, batch by batch."""
    network.eval().to(device)
    parts = [network(torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size])).to(device)).float().cpu()
             for i in range(0, len(X), batch_size)]
    return torch.cat(parts).numpy()


# --- the protocol -------------------------------------------------------------------------------


def _check_inputs(X: np.ndarray, y: np.ndarray, groups: np.ndarray, models: Sequence[str],
                  encoder: Encoder | None) -> None:
    if X.ndim != 3 or X.shape[1] != 3 or len(X) != len(y) or len(y) != len(groups):
        raise ValueError(f"expected X (n, 3, T), y (n,), groups (n,); got {X.shape}, {y.shape}, {groups.shape}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be a non-empty subset of {MODELS}, got {list(models)}")
    if encoder is None and any(m in PRETRAINED_MODELS for m in models):
        raise ValueError(f"{', '.join(m for m in models if m in PRETRAINED_MODELS)} need an encoder")


def _subject_scores(model: str, fold: int, y: np.ndarray, predicted: np.ndarray,
                    subjects: np.ndarray) -> list[dict[str, object]]:
    """Macro F1 (over the classes in the subject's truth or predictions) and κ per test subject."""
    rows = []
    for subject in pd.unique(subjects):
        mine = subjects == subject
        rows.append({
            "model": model, "fold": fold, "subject": subject, "windows": int(mine.sum()),
            "f1": f1_score(y[mine], predicted[mine], average="macro", zero_division=0.0),
            "kappa": cohen_kappa_score(y[mine], predicted[mine]),
        })
    return rows


def evaluate(
    X: np.ndarray,
    y: Sequence[Hashable] | np.ndarray,
    groups: np.ndarray,
    config: EvaluationConfig | None = None,
    *,
    encoder: Encoder | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> Report:
    """Evaluate the models of ``config`` (default: ``EvaluationConfig()``) on windows ``X`` (n, 3, T)
    float32 g with labels ``y`` of subjects ``groups``, by subject. Deterministic for its seed.

    Labels are any hashable values, e.g. strings read from a CSV: each is a class named by its
    ``str``, in sorted order, or in the order of ``class_names``. Integer labels are class codes
    0, 1, … naming ``class_names[code]`` (by default the code); negative codes, which mark
    unlabelled windows, are refused. ``encoder`` (a checkpoint path or state_dict of a backbone of
    the config's ``width``) is needed for ``frozen`` and ``finetune``.
    """
    config = config or EvaluationConfig()
    X, groups = np.ascontiguousarray(X, np.float32), np.asarray(groups)
    y, class_names = _class_codes(y, class_names)
    models = list(config.models_for(encoder is not None))
    _check_inputs(X, y, groups, models, encoder)
    settings = NetworkSettings.of(config)
    seed = config.seed
    if isinstance(encoder, (str, os.PathLike)):
        encoder = torch.load(encoder, map_location="cpu", weights_only=True)
    folds = subject_folds(groups, seed)
    features = _timed_features(X) if "rf" in models else None

    predictions = {m: np.full(len(y), -1, np.int64) for m in models}
    scores, timings = [], []
    with tqdm(total=len(folds), desc="evaluate", unit="fold", disable=not progress) as bar:
        for fold, (train, test) in enumerate(folds):
            for model in models:
                bar.set_postfix(model=model)
                started = time.perf_counter()
                if model == "rf":
                    predicted, epochs_run = _fit_predict_forest(features, y, train, test, config.trees, seed, config.jobs), 0
                else:
                    predicted, epochs_run = _fit_predict_network(model, X, y, groups, train, test, len(class_names),
                                                                 encoder, settings, _seed_of(seed, fold))
                seconds = time.perf_counter() - started
                predictions[model][test] = predicted
                scores += _subject_scores(model, fold, y[test], predicted, groups[test])
                timings.append({"model": model, "fold": fold, "seconds": seconds, "epochs": epochs_run})
                logger.info("fold %d/%d %s: F1 %.3f on %s (%.1f s)", fold + 1, len(folds), model,
                            f1_score(y[test], predicted, average="macro", zero_division=0.0),
                            ", ".join(map(str, pd.unique(groups[test]))), seconds)
            bar.update()

    split = "leave-one-subject-out" if len(folds) == len(np.unique(groups)) else f"{len(folds)}-fold grouped"
    return Report(
        class_names, y, groups, predictions, pd.DataFrame(scores), pd.DataFrame(timings),
        settings={"seed": seed, "split": split, "folds": len(folds), "windows": len(y),
                  "subjects": len(np.unique(groups)), "backbone": backbone_for(X.shape[-1]), "width": config.width,
                  "max_epochs": config.epochs, "trees": config.trees, "batch_size": config.batch_size,
                  "learning_rate": config.learning_rate, "patience": config.patience, "augment": config.augment},
    )


def _class_codes(y: Sequence[Hashable] | np.ndarray, class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels ``y`` as class codes 0 …, and the names of the classes (see `evaluate`)."""
    labels = np.asarray(y)
    if labels.dtype.kind in "iu":
        if labels.min(initial=0) < 0:
            raise ValueError("integer labels are class codes >= 0 (negative codes mark unlabelled windows: drop them first)")
        n_classes = int(labels.max(initial=-1)) + 1 if class_names is None else len(class_names)
        if labels.max(initial=-1) >= n_classes:
            raise ValueError(f"class code {labels.max()} but only {n_classes} class names")
        return labels.astype(np.int64), [str(name) for name in (range(n_classes) if class_names is None else class_names)]
    if class_names is None:
        codes, classes = pd.factorize(labels, sort=True)
    else:
        classes = list(class_names)
        codes = pd.Index(classes).get_indexer(labels)
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} labels are missing or not among the classes {[str(c) for c in classes]}")
    return codes.astype(np.int64), [str(name) for name in classes]


def _timed_features(X: np.ndarray) -> np.ndarray:
    started = time.perf_counter()
    features = hand_crafted_features(X)
    logger.info("hand-crafted features of %d windows: %.1f s", len(X), time.perf_counter() - started)
    return features


def _fit_predict_forest(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                        n_estimators: int, seed: int, n_jobs: int) -> np.ndarray:
    forest = BalancedRandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    forest.fit(features[train], y[train])
    return forest.predict(features[test]).astype(np.int64)


def _fit_predict_network(model: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                         train: np.ndarray, test: np.ndarray, n_classes: int, encoder: Encoder | None,
                         settings: NetworkSettings, seed: int) -> tuple[np.ndarray, int]:
    fit, validation = validation_split(train, groups, settings.validation_fraction,
                                       np.random.default_rng(seed))
    with deterministic_torch(seed):
        network = build_network(model, n_classes, X.shape[-1], settings.width, encoder)
        log = train_network(network, X, y, fit, validation, settings, seed)
        logits = forward_batches(network, X[test], settings.batch_size, settings.torch_device)
    return logits.argmax(axis=1).astype(np.int64), log.epochs
