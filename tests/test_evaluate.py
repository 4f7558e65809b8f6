"""Evaluation of encoders on labelled data (issue 6): the 22 features, the subject-wise protocol,
frozen backbones, determinism, and `accelstore evaluate` / `embed` end to end on real data."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

import accelstore
from accelstore.cli import main as accelstore_cli
from accelstore.cli.evaluation import embed_command, evaluate_command
from accelstore.evaluation.config import EvaluationConfig
from accelstore.evaluation.evaluate import (
    MODELS,
    NetworkSettings,
    build_network,
    class_weights,
    evaluate,
    load_labelled,
    subject_folds,
    train_network,
    validation_split,
)
from accelstore.evaluation.handcrafted_features import FEATURE_NAMES, hand_crafted_features
from accelstore.kernels.augment import augment
from accelstore.kernels.pretext_transforms import apply_pretext
from accelstore.models.harnet import PretextModel, pretext_loss
from accelstore.store import create_store
from accelstore.synth import synthesize_signal
from helpers import assert_help_explains

RATE = 30
TIME = np.arange(300) / RATE
NARROW = 0.125  # backbone width for tests
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODEL_TASK = {"aot": "aot", "permute": "permute", "time_warp": "time_w"}  # kernel name → model head


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared two-core machine two threads run 5-10× slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def features_of(*windows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(hand_crafted_features(np.stack(windows).astype(np.float32)), columns=FEATURE_NAMES)


def window(x=0.0, y=0.0, z=0.0) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y, z, TIME)[:3])


def sine(hz: float, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * TIME)


# --- the 22 features ------------------------------------------------------------------------------


def test_there_are_22_named_features():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 22
    assert hand_crafted_features(np.zeros((4, 3, 300), np.float32)).shape == (4, 22)


def test_a_sine_on_the_gravity_axis_shows_its_frequency_and_a_weaker_one_comes_second():
    f = features_of(window(z=1 + sine(2, 0.3)), window(z=1 + sine(2, 0.3) + sine(5, 0.1)))
    assert f["dominant_freq_1"].tolist() == pytest.approx([2.0, 2.0])
    assert f["dominant_freq_2"][1] == pytest.approx(5.0)


def test_a_sine_across_gravity_shows_at_twice_its_frequency_in_the_magnitude():
    f = features_of(window(x=sine(2, 0.5), z=1.0))
    assert f["dominant_freq_1"][0] == pytest.approx(4.0)


def test_a_constant_window_gives_zero_spread_and_no_nan():
    f = features_of(window(0.3, -0.7, 0.64), np.full((3, 300), 0.1))
    assert np.isfinite(f.to_numpy()).all()
    spread = [c for c in FEATURE_NAMES if c.endswith(("_std", "_range", "_mad"))]
    spread += ["corr_xy", "corr_xz", "corr_yz", "m_skew", "m_kurtosis", "spectral_entropy", "dominant_freq_1"]
    assert (f[spread].to_numpy() == 0).all()
    assert f[["x_mean", "y_mean", "z_mean"]].to_numpy()[0] == pytest.approx([0.3, -0.7, 0.64])


def test_a_still_window_at_one_g_has_no_deviation_from_one_g_in_any_orientation():
    directions = np.random.default_rng(1).normal(size=(5, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    f = features_of(*(window(*d) for d in directions), window(z=1.2))
    assert f["m_mean_abs_dev_1g"][:5].to_numpy() == pytest.approx(np.zeros(5), abs=1e-6)
    assert f["m_mean"][:5].to_numpy() == pytest.approx(np.ones(5), abs=1e-6)
    assert f["m_mean_abs_dev_1g"][5] == pytest.approx(0.2, abs=1e-6)


def test_correlations_of_known_signals():
    x = sine(1.5)
    f = features_of(window(x, x, -x), window(x, 2 * x + 0.5, 1.0), window(sine(1), np.cos(2 * np.pi * TIME), 1.0))
    assert f.loc[0, ["corr_xy", "corr_xz", "corr_yz"]].tolist() == pytest.approx([1, -1, -1], abs=1e-6)
    assert f.loc[1, "corr_xy"] == pytest.approx(1, abs=1e-6)
    assert f.loc[1, ["corr_xz", "corr_yz"]].tolist() == [0, 0]  # z does not vary
    assert f.loc[2, "corr_xy"] == pytest.approx(0, abs=1e-6)  # sine and cosine over whole periods


def test_axis_and_magnitude_statistics_match_reference_formulas():
    rng = np.random.default_rng(2)
    windows = rng.normal([[0.1], [-0.2], [1.0]], 0.3, size=(8, 3, 300)).astype(np.float32)
    windows[:4, 1] += rng.exponential(0.5, size=(4, 300)).astype(np.float32)  # skewed
    f = features_of(*windows)
    w = windows.astype(np.float64)
    m = np.linalg.norm(w, axis=1)
    np.testing.assert_allclose(f[["x_std", "y_std", "z_std"]], w.std(axis=2), rtol=1e-5)
    np.testing.assert_allclose(f[["x_range", "y_range", "z_range"]], w.max(axis=2) - w.min(axis=2), rtol=1e-5)
    np.testing.assert_allclose(f["corr_yz"], [np.corrcoef(v[1], v[2])[0, 1] for v in w], atol=1e-5)
    np.testing.assert_allclose(f["m_mad"], stats.median_abs_deviation(m, axis=1), rtol=1e-5)
    np.testing.assert_allclose(f["m_skew"], stats.skew(m, axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f["m_kurtosis"], stats.kurtosis(m, axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f["m_mean_abs_dev_1g"], np.abs(m - 1).mean(axis=1), rtol=1e-5)


def test_noise_has_a_higher_spectral_entropy_than_a_sine():
    noise = np.random.default_rng(3).normal(0, 0.2, (3, 300))
    f = features_of(window(z=1 + sine(2, 0.3)), window(z=1.0) + noise)
    assert f["spectral_entropy"][1] > f["spectral_entropy"][0] + 1


# --- protocol pieces --------------------------------------------------------------------------------


def test_up_to_ten_subjects_leave_one_out_and_more_are_split_five_fold_by_subject():
    ten = np.repeat([f"S{i}" for i in range(10)], 3)
    folds = subject_folds(ten, seed=0)
    assert len(folds) == 10
    assert all(len(set(ten[test])) == 1 and not set(ten[test]) & set(ten[train]) for train, test in folds)
    twelve = np.repeat(np.arange(12), 3)
    folds = subject_folds(twelve, seed=0)
    assert len(folds) == 5
    assert all(not set(twelve[test]) & set(twelve[train]) for train, test in folds)
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(twelve)))


def test_the_validation_split_holds_out_whole_training_subjects():
    groups = np.repeat(np.arange(6), 4)
    train = np.flatnonzero(groups != 0)
    fit, validation = validation_split(train, groups, 0.2, np.random.default_rng(0))
    assert len(np.unique(groups[validation])) == 1
    assert not set(groups[fit]) & set(groups[validation])
    assert sorted(np.concatenate([fit, validation])) == train.tolist()


def test_class_weights_balance_the_classes_present():
    y = np.array([0, 0, 0, 1, 3, 3])
    weights = class_weights(y, 5)
    assert weights[2] == weights[4] == 0
    totals = weights * np.bincount(y, minlength=5)
    assert totals[[0, 1, 3]] == pytest.approx([2.0, 2.0, 2.0])  # n / classes present each


def small_dataset(subjects: int = 3, per_subject: int = 24, seed: int = 0):
    """Windows of three 'activities' (1, 2, 3 Hz movement along gravity) with noise."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(3), subjects * per_subject // 3)
    X = window(z=1.0)[None] + rng.normal(0, 0.05, (len(y), 3, 300))
    X[:, 2] += np.sin(2 * np.pi * (1 + y)[:, None] * TIME) * 0.5
    groups = np.repeat([f"S{i}" for i in range(subjects)], per_subject)
    return X.astype(np.float32), y, groups


@pytest.fixture(scope="module")
def random_encoder() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return PretextModel("harnet10", NARROW).state_dict()


def backbone_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in network.feature_extractor.state_dict().items()}


@pytest.mark.parametrize("model, backbone_changes", [("frozen", False), ("finetune", True)])
def test_a_frozen_backbone_keeps_its_weights_and_batchnorm_statistics(random_encoder, model, backbone_changes):
    X, y, groups = small_dataset()
    network = build_network(model, 3, 300, NARROW, random_encoder)
    before, head_before = backbone_state(network), network.classifier.linear2.weight.clone()
    fit, validation = np.flatnonzero(groups != "S0"), np.flatnonzero(groups == "S0")
    train_network(network, X, y, fit, validation, NetworkSettings(NARROW, epochs=2, batch_size=16, learning_rate=1e-3), 0)
    after = backbone_state(network)
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    assert not torch.equal(head_before, network.classifier.linear2.weight)  # it did train
    if backbone_changes:  # the check can see drift: fine-tuning moves weights and BN statistics
        assert any(k.endswith("running_mean") for k in set(before) - unchanged)
        assert any(k.endswith("weight") for k in set(before) - unchanged)
    else:
        assert unchanged == set(before)
        assert not network.train().feature_extractor.training


def test_training_augments_every_training_window_each_epoch_and_never_a_validation_window(monkeypatch):
    import accelstore.evaluation.evaluate as evaluation

    augmented: list[np.ndarray] = []

    def spy(x, seed, *, window_ids):
        augmented.append(np.asarray(window_ids))
        return augment(x, seed, window_ids=window_ids)

    monkeypatch.setattr(evaluation, "augment", spy)
    X, y, groups = small_dataset()
    fit, validation = np.flatnonzero(groups != "S0"), np.flatnonzero(groups == "S0")
    settings = NetworkSettings(NARROW, epochs=2, batch_size=16, patience=5)
    train_network(build_network("scratch", 3, 300, NARROW), X, y, fit, validation, settings, 0)
    assert sorted(np.concatenate(augmented)) == sorted(np.tile(fit, 2))
    augmented.clear()
    train_network(build_network("scratch", 3, 300, NARROW), X, y, fit, validation,
                  NetworkSettings(NARROW, epochs=1, batch_size=16, augment=False), 0)
    assert not augmented


def test_the_evaluation_is_deterministic_for_a_seed(random_encoder):
    X, y, groups = small_dataset()
    config = EvaluationConfig(models=("rf", "scratch", "frozen", "finetune"), width=NARROW, epochs=2, trees=20, batch_size=16, seed=3)
    run = dict(encoder=random_encoder, progress=False)
    first, second = evaluate(X, y, groups, config, **run), evaluate(X, y, groups, config, **run)
    pd.testing.assert_frame_equal(first.scores, second.scores)
    for model in config.models:
        np.testing.assert_array_equal(first.predictions[model], second.predictions[model])
    assert first.scores.groupby("model")["subject"].nunique().eq(3).all()


def test_pretrained_models_need_an_encoder_and_labels_must_be_codes():
    X, y, groups = small_dataset()
    with pytest.raises(ValueError, match="need an encoder"):
        evaluate(X, y, groups, EvaluationConfig(models=("frozen",)), progress=False)
    with pytest.raises(ValueError, match="class codes"):
        evaluate(X, y - 1, groups, EvaluationConfig(models=("rf",)), progress=False)
    with pytest.raises(ValueError, match="1 labels are missing or not among the classes"):
        evaluate(X, np.where(np.arange(len(y)) == 5, "run", "sit"), groups, EvaluationConfig(models=("rf",)),
                 class_names=["sit", "stand"], progress=False)
    assert EvaluationConfig().models_for(with_encoder=False) == ("rf", "scratch")
    assert EvaluationConfig().models_for(with_encoder=True) == MODELS


ACTIVITIES = np.array(["lying", "sitting", "walking"])  # sorted: codes 0, 1, 2 as in small_dataset


def test_string_labels_give_the_scores_of_their_codes_and_name_the_classes(tmp_path):
    X, y, groups = small_dataset()
    config = accelstore.EvaluationConfig(models=("rf", "scratch"), width=NARROW, epochs=1, trees=20, batch_size=16, seed=1)
    by_code = accelstore.evaluate(X, y, groups, config, progress=False)
    by_name = accelstore.evaluate(X, list(ACTIVITIES[y]), groups, config, progress=False)  # as read from a CSV
    pd.testing.assert_frame_equal(by_name.scores, by_code.scores)
    assert by_code.class_names == ["0", "1", "2"] and by_name.class_names == list(ACTIVITIES)
    per_class = by_name.per_class()
    assert per_class["class"].tolist() == [*ACTIVITIES, *ACTIVITIES] and per_class["windows"].tolist() == [24] * 6
    assert per_class.drop(columns="class").equals(by_code.per_class().drop(columns="class"))
    table = by_name.confusion_table("rf")
    assert table.index.tolist() == table.columns.tolist() == list(ACTIVITIES)
    assert (table.to_numpy() == by_code.confusion("rf")).all() and table.to_numpy().sum() == len(y)
    accelstore.write_report(by_name, tmp_path)
    assert pd.read_csv(tmp_path / "classes.csv")["class"].tolist() == per_class["class"].tolist()
    assert "Classes: lying, sitting, walking." in (tmp_path / "summary.md").read_text()

    ordered = accelstore.evaluate(X, ACTIVITIES[y], groups, EvaluationConfig(models=("rf",), trees=20, seed=1),
                                  class_names=ACTIVITIES[::-1], progress=False)  # walking is class 0 now
    reversed_codes = accelstore.evaluate(X, 2 - y, groups, EvaluationConfig(models=("rf",), trees=20, seed=1), progress=False)
    assert ordered.class_names == ["walking", "sitting", "lying"]
    np.testing.assert_array_equal(ordered.y, 2 - y)
    pd.testing.assert_frame_equal(ordered.scores, reversed_codes.scores)


# --- end to end on real labelled data ---------------------------------------------------------


def pretrain_encoder(path: Path, width: float, steps: int = 20, seed: int = 0) -> list[float]:
    """A quick pretext pre-training (arrow of time, permutation, time warp) on a synthetic
    recording resampled to 30 Hz windows; saves the state_dict; returns the losses."""
    recording = synthesize_signal(days=0.05, seed=seed)
    grid = np.arange(int(recording.time[-1] * RATE) // 300 * 300) / RATE
    xyz = np.stack([np.interp(grid, recording.time, recording.xyz[:, axis]) for axis in range(3)])
    windows = xyz.reshape(3, -1, 300).transpose(1, 0, 2).astype(np.float32)
    torch.manual_seed(seed)
    model = PretextModel("harnet10", width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng, losses = np.random.default_rng(seed), []
    for step in range(steps):
        batch, labels = apply_pretext(windows[rng.choice(len(windows), 64)], list(MODEL_TASK), seed=step)
        loss = pretext_loss(model(torch.from_numpy(batch)),
                            {MODEL_TASK[task]: torch.from_numpy(label) for task, label in labels.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    torch.save(model.state_dict(), path)
    return losses


@pytest.fixture(scope="module")
def watch_store(labelled_dir: Path, tmp_path_factory) -> str:
    store = str(tmp_path_factory.mktemp("watch") / "watch.zarr")
    result = CliRunner().invoke(accelstore_cli, ["-q", "ingest", str(labelled_dir / "watch_exercises"),
                                                 "-o", store, "--labels", "--scheduler", "synchronous"])
    assert result.exit_code == 0, result.output
    return store


@pytest.fixture(scope="module")
def narrow_encoder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    losses = pretrain_encoder(path, NARROW)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learnt something
    return path


@pytest.mark.slow
def test_evaluate_runs_end_to_end_on_the_watch_exercises(watch_store, narrow_encoder, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(evaluate_command, [
        watch_store, "--encoder", str(narrow_encoder), "--models", "rf,scratch,frozen,finetune",
        "--width", str(NARROW), "--epochs", "1", "--trees", "100", "--batch-size", "32", "-o", str(out)])
    assert result.exit_code == 0, result.output

    data = load_labelled(watch_store)
    subjects = pd.read_csv(out / "subjects.csv")
    assert sorted(subjects["model"].unique()) == ["finetune", "frozen", "rf", "scratch"]
    for _, scores in subjects.groupby("model"):  # leave-one-subject-out: 10 folds, one subject each
        assert sorted(scores["subject"]) == [f"P{i:02d}" for i in range(1, 11)]
        assert scores["fold"].nunique() == 10 and scores["windows"].sum() == len(data.y)
    summary = pd.read_csv(out / "summary.csv", index_col="model")
    assert summary.loc["rf", "f1_mean"] > 0.4  # seven exercises: chance is ~0.14
    markdown = (out / "summary.md").read_text()
    assert all(f"| {model} |" in markdown for model in summary.index)
    for model in summary.index:
        assert (out / f"confusion_{model}.png").read_bytes().startswith(PNG_MAGIC)
    assert len(pd.read_csv(out / "timings.csv")) == 40


@pytest.mark.slow
def test_embed_draws_three_maps(watch_store, narrow_encoder, tmp_path):
    out = tmp_path / "map.png"
    result = CliRunner().invoke(embed_command, [watch_store, "--encoder", str(narrow_encoder),
                                                "--width", str(NARROW), "--max-windows", "150", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_the_command_line_names_the_models_that_evaluate_knows():
    assert ",".join(MODELS) in CliRunner().invoke(evaluate_command, ["--help"]).output
    every_model = evaluate_command.make_context("evaluate", ["S", "-o", "out", "--models", ",".join(MODELS)]).params
    assert every_model["models"] == MODELS


EVALUATE_OPTIONS = {"--models", "--width", "--epochs", "--patience", "--batch-size", "--lr", "--augment", "--no-augment", "--trees",
                    "--jobs", "--device", "--seed"}  # besides --encoder and -o/--output, which are not settings


def test_evaluate_explains_every_setting_it_offers_with_the_config_default():
    options = {param.name: param for param in evaluate_command.params if isinstance(param, click.Option)}
    offered = [field for field in fields(EvaluationConfig) if "help" in field.metadata]
    assert set(options) - {"encoder", "output"} == {field.name for field in offered}
    assert {name for field in offered for name in options[field.name].opts + options[field.name].secondary_opts} == EVALUATE_OPTIONS
    assert_help_explains(evaluate_command, offered)


def test_an_evaluate_command_line_gives_the_config_built_by_hand():
    def parsed(*arguments: str) -> EvaluationConfig:
        params = evaluate_command.make_context("evaluate", ["S", "-o", "out", *arguments]).params
        return EvaluationConfig(**{name: value for name, value in params.items() if name not in ("store", "encoder", "output")})

    assert parsed() == EvaluationConfig()
    by_hand = EvaluationConfig(models=("rf", "frozen"), width=0.5, epochs=3, patience=2, batch_size=8, learning_rate=0.01,
                               augment=False, trees=10, jobs=2, device="cpu", seed=7)
    assert parsed("--models", "rf,frozen", "--width", "0.5", "--epochs", "3", "--patience", "2", "--batch-size", "8", "--lr", "0.01",
                  "--no-augment", "--trees", "10", "--jobs", "2", "--device", "cpu", "--seed", "7") == by_hand
    unchanged = [field.name for field in fields(EvaluationConfig) if getattr(by_hand, field.name) == getattr(EvaluationConfig(), field.name)]
    assert unchanged == ["validation_fraction"]  # the command line above sets every other setting
    for name in ("width", "seed"):  # embed offers these two settings as evaluate does
        embed, evaluation = ({param.name: param for param in command.params}[name].get_help_record(click.Context(command))
                             for command in (embed_command, evaluate_command))
        assert embed == evaluation


@pytest.mark.parametrize("arguments, message", [
    (["--models", "frozen"], "need --encoder"),
    (["--models", "rf,forest"], "choose from"),
])
def test_evaluate_rejects_bad_usage_with_exit_status_2(tmp_path, arguments, message):
    result = CliRunner().invoke(evaluate_command, [str(tmp_path), *arguments, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output


def test_evaluate_rejects_a_missing_or_unlabelled_store(tmp_path):
    result = CliRunner().invoke(evaluate_command, [str(tmp_path / "absent.zarr"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no accelstore store" in result.output
    create_store(str(tmp_path / "unlabelled.zarr"), max_days=1)
    result = CliRunner().invoke(evaluate_command, [str(tmp_path / "unlabelled.zarr"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no labels" in result.output


def test_evaluate_rejects_an_encoder_of_another_width(watch_store, narrow_encoder, tmp_path):
    result = CliRunner().invoke(evaluate_command, [watch_store, "--encoder", str(narrow_encoder),
                                                   "--models", "frozen", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "does not fit" in result.output  # width 1 vs a narrow encoder
