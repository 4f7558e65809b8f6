"""Features recompute, the pretext validation set and the activity plot, on small ingested CSV stores.

One LocalCluster (two single-threaded worker processes) serves the whole module, reached through
``scheduler=ADDRESS``; the same pipelines also run with ``scheduler="synchronous"`` (every task in
this process, no Dask) and must give the same bytes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from matplotlib.image import imread

from accelstore import open_store
from accelstore.cli.pipelines import features_command, pretext_command
from accelstore.cli.reading import plot_command
from accelstore.errors import StoreDamageError
from accelstore.grid import ACC_FILL, WINDOWS_PER_DAY, window_ids
from accelstore.kernels.pretext_transforms import apply_pretext
from accelstore.pipelines.features import recompute
from accelstore.pipelines.ingest import ingest
from accelstore.pipelines.pretext_validation import build_validation_set, choose_holdout, selection_keys
from accelstore.plot import BOTTOM_IN, DAY_ROW_IN, DPI, INVALID_COLOUR, TOP_IN, WIDTH_IN, minute_activity, plot_activity
from accelstore.readers import ProcessingOptions
from accelstore.store import HOLDOUT_ATTR, acc_to_g, read_validation_set
from helpers import write_csv

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)
IDS = ["P1", "P2", "P3", "P4", "P5"]
FEATURES = ("valid", "std", "enmo", "day_valid_windows", "day_std_sum", "valid_windows")
SYNC = "synchronous"
WEEK_GAP = ("2024-03-05 02:00:00", "2024-03-05 05:30:00")


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def store(tmp_path_factory, cluster) -> Path:
    """Five short recordings at 10 Hz; P1 crosses midnight, P1 and P4 have gaps."""
    raw = tmp_path_factory.mktemp("csv")
    write_csv(raw / "P1.csv", "2024-03-01 23:45:00", "2024-03-02 00:20:00", rate=10, gaps=(("2024-03-02 00:05:00", "2024-03-02 00:07:00"),))
    write_csv(raw / "P2.csv", "2024-03-03 08:00:00", "2024-03-03 08:30:00", rate=10)
    write_csv(raw / "P3.csv", "2024-03-04 10:00:00", "2024-03-04 10:25:00", rate=10)
    write_csv(raw / "P4.csv", "2024-03-05 14:00:00", "2024-03-05 14:30:00", rate=10, gaps=(("2024-03-05 14:10:00", "2024-03-05 14:11:00"),))
    write_csv(raw / "P5.csv", "2024-03-06 18:00:00", "2024-03-06 18:20:00", rate=10)
    path = raw.parent / "small.zarr"
    assert ingest([raw], str(path), options=RAW, scheduler=cluster, progress=False).ok
    return path


def copy_of(store: Path, tmp_path: Path, name: str = "copy.zarr") -> str:
    target = tmp_path / name
    shutil.copytree(store, target)
    return str(target)


def features_of(path: str) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return {name: group[name][:] for name in FEATURES}


def assert_same_features(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name in FEATURES:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)  # NaN == NaN here


def rows_of(path: str) -> dict[str, int]:
    return open_store(path).participants["row"].to_dict()


def corrupt(path: str, participant: str) -> None:
    """Scribble over a participant's features and day summary, as a buggy or interrupted run might."""
    group = zarr.open_group(path, mode="r+")
    row = rows_of(path)[participant]
    group["std"][row, :] = 0.5
    group["enmo"][row, :] = np.nan
    group["valid"][row, :] = ~group["valid"][row, :]
    group["day_std_sum"][row, :] = 0
    group["valid_windows"][row] = 0


def flip_byte(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def shard_mtimes(path: str) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for name in ("valid", "std", "enmo") for p in (Path(path) / name).rglob("*") if p.is_file()}


def tasks_run_by(address: str) -> set[str]:
    from dask.distributed import Client

    with Client(address) as client:
        return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


# ---------------------------------------------------------------- features


def test_recompute_reproduces_what_ingest_wrote_and_rewrites_nothing(store, tmp_path):
    path = copy_of(store, tmp_path)
    ingested, mtimes = features_of(path), shard_mtimes(path)
    report = recompute(path, scheduler=SYNC, progress=False)
    assert sorted(report.recomputed) == IDS and report.changed == [] and report.ok
    assert_same_features(features_of(path), ingested)
    assert shard_mtimes(path) == mtimes  # nothing rewritten when nothing differs
    assert (ingested["day_valid_windows"][rows_of(path)["P1"], :2] > 0).all()  # a recording over two days


def test_recompute_restores_corrupted_features_identically_on_a_cluster_and_in_process(store, tmp_path, cluster):
    on_cluster, in_process = copy_of(store, tmp_path, "a.zarr"), copy_of(store, tmp_path, "b.zarr")
    ingested = features_of(on_cluster)
    for path in (on_cluster, in_process):
        corrupt(path, "P1")
        corrupt(path, "P3")
    assert not np.array_equal(features_of(on_cluster)["std"], ingested["std"], equal_nan=True)
    cluster_report = recompute(on_cluster, scheduler=cluster, progress=False)
    process_report = recompute(in_process, scheduler=SYNC, progress=False)
    assert "recompute_participant" in tasks_run_by(cluster)
    assert sorted(cluster_report.changed) == sorted(process_report.changed) == ["P1", "P3"]
    assert_same_features(features_of(on_cluster), ingested)
    assert_same_features(features_of(in_process), ingested)
    again = recompute(in_process, scheduler=SYNC, progress=False)  # idempotent
    assert again.changed == [] and sorted(again.recomputed) == IDS
    assert_same_features(features_of(in_process), ingested)


def test_recompute_touches_only_the_named_participants(store, tmp_path):
    path = copy_of(store, tmp_path)
    ingested = features_of(path)
    corrupt(path, "P1")
    corrupt(path, "P2")
    report = recompute(path, participants=["P2"], scheduler=SYNC, progress=False)
    assert report.recomputed == ["P2"] and report.changed == ["P2"]
    after, rows = features_of(path), rows_of(path)
    np.testing.assert_array_equal(after["std"][rows["P2"]], ingested["std"][rows["P2"]])
    assert (after["std"][rows["P1"]] == 0.5).all()
    with pytest.raises(KeyError, match="P9"):
        recompute(path, participants=["P2", "P9"], scheduler=SYNC, progress=False)


def test_recompute_derives_validity_and_day_summary_from_acc(store, tmp_path):
    path = copy_of(store, tmp_path)
    rows, table = rows_of(path), open_store(path).participants
    row, first = rows["P2"], int(table.at["P2", "first_window"])
    before = features_of(path)
    group = zarr.open_group(path, mode="r+")
    day = first // WINDOWS_PER_DAY
    acc_day = group["acc"][row, day * WINDOWS_PER_DAY : (day + 1) * WINDOWS_PER_DAY]
    blanked = np.arange(first + 10, first + 25)
    acc_day[blanked - day * WINDOWS_PER_DAY] = ACC_FILL
    acc_day[first + 40 - day * WINDOWS_PER_DAY, 1, 7] = ACC_FILL  # one absent sample spoils its window
    group["acc"][row, day * WINDOWS_PER_DAY : (day + 1) * WINDOWS_PER_DAY] = acc_day  # the whole shard, as a worker would
    assert before["valid"][row, blanked].all() and before["valid"][row, first + 40]
    report = recompute(path, scheduler=SYNC, progress=False)
    assert report.changed == ["P2"]
    after = features_of(path)
    spoiled = np.r_[blanked, first + 40]
    assert not after["valid"][row, spoiled].any() and np.isnan(after["std"][row, spoiled]).all() and np.isnan(after["enmo"][row, spoiled]).all()
    kept = np.setdiff1d(np.flatnonzero(before["valid"][row]), spoiled)
    np.testing.assert_array_equal(after["std"][row, kept], before["std"][row, kept])
    assert after["day_valid_windows"][row, day] == before["day_valid_windows"][row, day] - spoiled.size
    assert after["valid_windows"][row] == before["valid_windows"][row] - spoiled.size
    assert after["day_std_sum"][row, day] == pytest.approx(float(after["std"][row, kept].sum()), rel=1e-5)
    assert after["day_std_sum"][row, day] < before["day_std_sum"][row, day]


def test_a_damaged_acc_shard_fails_its_participant_naming_the_damage_and_changes_nothing(store, tmp_path):
    path = copy_of(store, tmp_path)
    row = rows_of(path)["P3"]
    flip_byte(Path(path) / "acc" / "c" / str(row) / "0" / "0" / "0")  # P3's only day: day 0
    before = features_of(path)
    report = recompute(path, scheduler=SYNC, progress=False)
    assert list(report.failed) == ["P3"] and f"row {row}, day 0: a chunk of 'acc' is damaged" in report.failed["P3"]
    assert sorted(report.recomputed) == sorted(set(IDS) - {"P3"}) and report.changed == []
    assert_same_features(features_of(path), before)


def test_features_command(store, tmp_path):
    path = copy_of(store, tmp_path)
    corrupt(path, "P4")
    run = CliRunner().invoke(features_command, [path, "--participants", "P4", "--participants", "P5", "--scheduler", SYNC], obj={"progress": False})
    assert run.exit_code == 0, run.output
    assert "2 recomputed, 1 changed, 0 failed" in run.output
    unknown = CliRunner().invoke(features_command, [path, "--participants", "P9", "--scheduler", SYNC], obj={"progress": False})
    assert unknown.exit_code == 2 and "P9" in unknown.output


# ---------------------------------------------------------------- pretext validation set

N_WINDOWS, FRACTION, SEED = 40, 0.4, 7


@pytest.fixture(scope="module")
def validation_sets(store, tmp_path_factory, cluster):
    """The same request built on the cluster and in this process, each in its own copy of the store."""
    folder = tmp_path_factory.mktemp("pretext")
    built = {}
    for name, scheduler in (("cluster", cluster), ("process", SYNC)):
        path = copy_of(store, folder, f"{name}.zarr")
        report = build_validation_set(path, N_WINDOWS, FRACTION, SEED, scheduler=scheduler, progress=False)
        built[name] = (path, report)
    return built


def test_validation_set_is_identical_on_a_cluster_and_in_process(validation_sets, cluster):
    ran = tasks_run_by(cluster)
    assert {"draw_candidates", "transform_chosen"} <= ran  # the cluster did that work
    (cluster_path, cluster_report), (process_path, process_report) = validation_sets["cluster"], validation_sets["process"]
    assert (cluster_report.holdout, cluster_report.drawn) == (process_report.holdout, process_report.drawn)
    on_cluster, in_process = read_validation_set(cluster_path), read_validation_set(process_path)
    for name in ("x", "row", "window"):
        np.testing.assert_array_equal(getattr(on_cluster, name), getattr(in_process, name), err_msg=name)
    assert on_cluster.labels.keys() == in_process.labels.keys() == {"aot", "permute", "time_warp"}
    for task in on_cluster.labels:
        np.testing.assert_array_equal(on_cluster.labels[task], in_process.labels[task])
    assert on_cluster.holdout == in_process.holdout


def test_windows_are_distinct_valid_windows_of_the_recorded_holdout_only(validation_sets):
    path, report = validation_sets["process"]
    stored = read_validation_set(path)
    group = zarr.open_group(path, mode="r")
    assert group.attrs[HOLDOUT_ATTR] == report.holdout == stored.holdout
    assert len(report.holdout) == round(FRACTION * len(IDS))
    rows = rows_of(path)
    assert set(stored.row.tolist()) <= {rows[pid] for pid in report.holdout}
    assert stored.x.shape == (N_WINDOWS, 3, 300) and stored.x.dtype == np.float32
    assert len(set(zip(stored.row.tolist(), stored.window.tolist()))) == N_WINDOWS  # without replacement
    assert group["valid"].vindex[stored.row, stored.window].all()
    assert sum(report.drawn.values()) == N_WINDOWS


def test_inputs_and_labels_are_apply_pretext_of_the_chosen_windows(validation_sets):
    path, _ = validation_sets["process"]
    stored = read_validation_set(path)
    acc = zarr.open_group(path, mode="r")["acc"]
    raw = acc_to_g(np.stack([acc[row, window] for row, window in zip(stored.row, stored.window)]))
    expected, labels = apply_pretext(raw, ["aot", "permute", "time_warp"], SEED, window_ids=window_ids(stored.row, stored.window))
    np.testing.assert_array_equal(stored.x, expected)
    for task, applied in labels.items():
        np.testing.assert_array_equal(stored.labels[task], applied)
        assert 0.15 < applied.mean() < 0.85  # each task applied to some windows and not to others
    transformed = np.any([labels[task] == 1 for task in labels], axis=0)
    assert not np.allclose(stored.x[transformed], raw[transformed])
    np.testing.assert_array_equal(stored.x[~transformed], raw[~transformed])


def test_draw_is_the_n_smallest_keys_over_the_whole_holdout(validation_sets):
    """Partitioning by participant must not change the draw: compare with one global ranking."""
    path, report = validation_sets["process"]
    group, rows = zarr.open_group(path, mode="r"), rows_of(path)
    every = []
    for pid in report.holdout:
        keys = selection_keys(group["valid"][rows[pid], :], group["std"][rows[pid], :], SEED, rows[pid])
        every += [(key, rows[pid], window) for window, key in enumerate(keys) if np.isfinite(key)]
    expected = sorted((row, window) for _, row, window in sorted(every)[:N_WINDOWS])
    stored = read_validation_set(path)
    assert list(zip(stored.row.tolist(), stored.window.tolist())) == expected


def test_single_draw_probability_is_proportional_to_std():
    """With exponential keys, the smallest key falls on window i with probability std_i / Σ std."""
    windows = 400
    std = np.linspace(0.005, 0.5, windows).astype(np.float32)
    valid = np.arange(windows) % 10 != 3
    std[~valid] = np.nan
    std[7] = 0.0  # valid but motionless: never drawn
    draws = 4000
    winners = np.array([np.argmin(selection_keys(valid, std, seed, row=2)) for seed in range(draws)])
    assert valid[winners].all() and 7 not in winners
    eligible = np.flatnonzero(valid & (std > 0))
    quartiles = np.array_split(eligible, 4)  # std ascends with the index
    observed = [np.isin(winners, members).mean() for members in quartiles]
    expected = [std[members].sum() / std[eligible].sum() for members in quartiles]
    np.testing.assert_allclose(observed, expected, atol=0.03)
    assert observed[3] > 3 * observed[0]


def test_holdout_choice_depends_on_seed_and_ids_only():
    ids = [f"S{i:03d}" for i in range(50)]
    chosen = choose_holdout(ids, 0.2, seed=3)
    assert len(chosen) == 10 and set(chosen) <= set(ids)
    assert choose_holdout(list(reversed(ids)), 0.2, seed=3) == chosen
    assert choose_holdout(ids, 0.2, seed=4) != chosen
    assert len(choose_holdout(ids[:3], 0.01, seed=3)) == 1 and len(choose_holdout(ids[:3], 0.99, seed=3)) == 2


def test_another_seed_draws_another_set_and_the_same_seed_the_same(store, tmp_path, validation_sets):
    path = copy_of(store, tmp_path)
    build_validation_set(path, N_WINDOWS, FRACTION, SEED + 1, scheduler=SYNC, progress=False)
    other = read_validation_set(path)
    first = read_validation_set(validation_sets["process"][0])
    assert set(zip(other.row.tolist(), other.window.tolist())) != set(zip(first.row.tolist(), first.window.tolist()))
    build_validation_set(path, N_WINDOWS, FRACTION, SEED, scheduler=SYNC, progress=False)  # rebuilt over the other
    again = read_validation_set(path)
    np.testing.assert_array_equal(again.x, first.x)
    assert again.holdout == first.holdout and again.attrs["seed"] == SEED


def test_asking_for_more_windows_than_the_holdout_has_changes_nothing(store, tmp_path):
    path = copy_of(store, tmp_path)
    with pytest.raises(ValueError, match="held-out"):
        build_validation_set(path, 10**6, FRACTION, SEED, scheduler=SYNC, progress=False)
    group = zarr.open_group(path, mode="r")
    assert HOLDOUT_ATTR not in group.attrs and "pretext" not in group
    with pytest.raises(ValueError, match="no complete pretext validation set"):
        read_validation_set(path)


def test_a_damaged_std_chunk_fails_the_build_naming_it(store, tmp_path):
    path = copy_of(store, tmp_path)
    for row in rows_of(path).values():
        flip_byte(Path(path) / "std" / "c" / str(row) / "0")
    with pytest.raises(RuntimeError, match="a chunk of 'std' is damaged"):
        build_validation_set(path, N_WINDOWS, FRACTION, SEED, scheduler=SYNC, progress=False)
    assert "pretext" not in zarr.open_group(path, mode="r")


def test_pretext_command(store, tmp_path):
    path = copy_of(store, tmp_path)
    args = [path, "--windows", "12", "--holdout-fraction", "0.5", "--seed", "1", "--tasks", "scale,aot", "--scheduler", SYNC]
    run = CliRunner().invoke(pretext_command, args, obj={"progress": False})
    assert run.exit_code == 0, run.output
    stored = read_validation_set(path)
    assert stored.x.shape[0] == 12 and set(stored.labels) == {"aot", "scale"} and stored.attrs["tasks"] == ["aot", "scale"]
    bad = CliRunner().invoke(pretext_command, [*args[:7], "--tasks", "spin", "--scheduler", SYNC], obj={"progress": False})
    assert bad.exit_code == 2 and "spin" in bad.output


# ---------------------------------------------------------------- the activity plot


@pytest.fixture(scope="module")
def week(tmp_path_factory, cluster) -> Path:
    """A week at 1 Hz from Monday 13:00 to the next Monday 11:00, with a 3.5-hour gap on Tuesday night."""
    raw = tmp_path_factory.mktemp("week")
    write_csv(raw / "W.csv", "2024-03-04 13:00:00", "2024-03-11 11:00:00", rate=1, gaps=(WEEK_GAP,))
    path = raw.parent / "week.zarr"
    assert ingest([raw], str(path), options=RAW, scheduler=cluster, progress=False).ok
    return path


def test_minute_activity_has_one_row_per_day_and_marks_gaps(week):
    opened = open_store(str(week))
    activity = minute_activity(opened, "W")
    assert list(activity.days.strftime("%a %d")) == ["Mon 04", "Tue 05", "Wed 06", "Thu 07", "Fri 08", "Sat 09", "Sun 10", "Mon 11"]
    assert activity.enmo_mg.shape == activity.recorded.shape == (8, 1440)
    assert not activity.recorded[0, : 13 * 60].any() and activity.recorded[0, 13 * 60 :].all()
    assert activity.recorded[-1, : 11 * 60].all() and not activity.recorded[-1, 11 * 60 :].any()
    gap = slice(2 * 60, 5 * 60 + 30)
    assert activity.invalid[1, gap].all() and activity.invalid.sum() == gap.stop - gap.start
    assert np.isfinite(activity.enmo_mg[activity.recorded & ~activity.invalid]).all()
    # Wednesday 12:00-12:10 from the raw windows: ENMO = mean of max(|a| - 1 g, 0), per minute
    windows = opened.windows("W", "2024-03-06 12:00:00", "2024-03-06 12:10:00").values.astype(np.float64)
    per_window = np.maximum(np.linalg.norm(windows, axis=1) - 1.0, 0.0).mean(axis=1)
    np.testing.assert_allclose(activity.enmo_mg[2, 12 * 60 : 12 * 60 + 10], 1000 * per_window.reshape(10, 6).mean(axis=1), atol=1e-3)


def test_plot_renders_a_week(week, tmp_path):
    out = plot_activity(str(week), "W", tmp_path / "week.png")
    image = 255 * imread(out)[..., :3]
    assert image.shape[1] == pytest.approx(WIDTH_IN * DPI, abs=1)
    assert image.shape[0] == pytest.approx((TOP_IN + BOTTOM_IN + 8 * DAY_ROW_IN) * DPI, abs=1)
    assert image.std() > 20  # not blank
    shade = np.array([int(INVALID_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(image - shade).max(axis=2) < 3).sum() > 100  # the gap is shaded


def test_minute_activity_of_damaged_windows_is_a_store_damage_error(week, tmp_path):
    path = copy_of(week, tmp_path)
    flip_byte(Path(path) / "enmo" / "c" / "0" / "0")
    with pytest.raises(StoreDamageError, match="participant 'W': a chunk of 'enmo' is damaged"):
        minute_activity(open_store(path), "W")
    (Path(path) / "valid" / "c" / "0" / "0").unlink()
    with pytest.raises(StoreDamageError, match="the day summary says"):
        minute_activity(open_store(path), "W")


def test_plot_command(week, tmp_path):
    out = tmp_path / "w.png"
    run = CliRunner().invoke(plot_command, [str(week), "W", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert imread(out).shape[1] == round(WIDTH_IN * DPI)
    unknown = CliRunner().invoke(plot_command, [str(week), "Q", "-o", str(tmp_path / "q.png")])
    assert unknown.exit_code == 1 and "Q" in unknown.output
