"""Labelled ingest: each window gets the annotation covering at least half of it; label maps merge classes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from accelstore import open_store
from accelstore.pipelines.ingest import ingest
from accelstore.readers import ProcessingOptions
from helpers import run_cli

RAW = ProcessingOptions(lowpass_hz=None, calibrate=False, detect_nonwear=False)


def write_annotated(path, start: str, spans: list[tuple[float, float, str]], seconds: float = 60.0, rate: float = 50.0) -> None:
    """Samples from ``start`` for ``seconds``; ``spans`` = (from s, to s, annotation), elsewhere none."""
    offsets = np.arange(0, seconds, 1 / rate)
    annotation = np.full(offsets.size, "", dtype=object)
    for begin, end, name in spans:
        annotation[(offsets >= begin) & (offsets < end)] = name
    time = pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s")
    pd.DataFrame({"time": time, "x": 0.0, "y": 0.0, "z": 1.0, "annotation": annotation}).replace({"annotation": {"": None}}).to_csv(path, index=False)


def test_each_window_gets_the_annotation_covering_half_of_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # windows start at 00, 10, 20, 30, 40, 50 s
    write_annotated(raw / "A.csv", "2024-02-01 10:00:00", [(0, 10, "sit"), (10, 14, "walk"), (14, 20, "sit"), (20, 25.5, "walk"), (25.5, 34, "run"), (40, 45, "run")])
    store = tmp_path / "labelled.zarr"
    assert ingest([raw], str(store), options=RAW, labels=True, scheduler="synchronous", progress=False).ok
    opened = open_store(str(store))
    assert opened.classes == ["run", "sit", "walk"]
    labels = opened.windows("A")["label"].values
    names = [opened.classes[code] if code >= 0 else None for code in labels]
    # 10–20 s: sit 6 s; 20–30 s: walk 5.5 s; 30–40 s: run 4 s only; 40–50 s: run exactly half
    assert names == ["sit", "sit", "walk", None, "run", None]


def test_label_map_merges_classes_and_codes_stay_stable_across_runs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_annotated(raw / "B.csv", "2024-02-01 10:00:00", [(0, 20, "7030 sleeping"), (20, 40, "walking 3 mph"), (40, 60, "sitting;reading")])
    label_map = tmp_path / "map.csv"
    label_map.write_text("annotation,Walmsley2020\n7030 sleeping,sleep\nwalking 3 mph,light\nsitting;reading,sedentary\n")
    store = tmp_path / "mapped.zarr"
    run = run_cli("-q", "ingest", str(raw), "-o", str(store), "--label-map", str(label_map),
                  "--scheduler", "synchronous", "--no-calibrate", "--no-nonwear", "--no-lowpass")
    assert run.exit_code == 0, run.output
    opened = open_store(str(store))
    assert opened.classes == ["light", "sedentary", "sleep"]
    names = [opened.classes[code] for code in opened.windows("B")["label"].values]
    assert names == ["sleep", "sleep", "light", "light", "sedentary", "sedentary"]

    write_annotated(raw / "C.csv", "2024-02-02 10:00:00", [(0, 60, "cycling")])
    extended = {"7030 sleeping": "sleep", "walking 3 mph": "light", "sitting;reading": "sedentary", "cycling": "cycling"}
    report = ingest([raw], str(store), options=RAW, labels=True, label_map=extended, scheduler="synchronous", progress=False)
    assert report.written == ["C"] and report.unchanged == ["B"]
    reopened = open_store(str(store))
    assert reopened.classes == ["light", "sedentary", "sleep", "cycling"]  # old codes kept, new one appended
    assert reopened.classes[int(reopened.windows("C")["label"].values[0])] == "cycling"


def test_labelled_ingest_of_a_file_without_annotations_fails_cleanly(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame({"time": pd.date_range("2024-01-01", periods=1000, freq="20ms"), "x": 0.0, "y": 0.0, "z": 1.0}).to_csv(raw / "D.csv", index=False)
    report = ingest([raw], str(tmp_path / "s.zarr"), options=RAW, labels=True, scheduler="synchronous", progress=False)
    assert next(iter(report.failed.values()))["error"] == "unlabelled"


def test_watch_exercises_ingest_with_labels(labelled_dir, tmp_path):
    store = tmp_path / "watch.zarr"
    report = ingest([labelled_dir / "watch_exercises"], str(store), labels=True, workers=2, progress=False)
    assert report.ok and len(report.written) == 10
    opened = open_store(str(store))
    assert opened.classes == sorted(["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"])
    labels = opened.group["label"][:, :]
    valid = opened.group["valid"][:, :]
    for code in range(7):
        assert ((labels == code) & valid).sum() >= 10, opened.classes[code]
    assert ((labels >= 0) & valid).sum() >= 300
