"""The ingest driver at UK Biobank scale: its cost per participant at 1k, 10k and 100k, and end to end.

Ingest is a fan-out with one serial part, the driver, which plans the rows and writes every
completed participant into the table. Three measurements:

1. **The driver alone** (``driver``), fed with simulated worker results (no file is read), into a
   store sized for the cohort (``--reserve N``, 14 days), as ``accelstore ingest`` drives it:
   :class:`~accelstore.pipelines.ingest._IngestPlan`, then ``_apply_round`` over the results, 1 %
   of them failures. Each size runs in a process of its own, whose peak resident memory is
   reported, and how long ``accelstore info`` then takes on that store. The baseline is the
   driver before it grouped its writes: each participant's day
   summary, table row and status written on their own, and the failures kept in one attribute
   rewritten whole at every failure. It costs ~0.1 s per participant, so it is timed on a sample
   (``--baseline-sample``) at the end of a run of N (its failure attribute already holding 1 % of N).
2. **Tasks in flight** (``in-flight``): many no-op tasks on a LocalCluster, submitted all at
   once (as before) or kept to ``runner.in_flight_limit`` (now): wall time, and the peak memory
   of the driver's process, which holds the LocalCluster's scheduler too.
3. **End to end** (``end-to-end``): ``accelstore ingest`` of 1,000 one-minute CSV files with 2
   workers, the whole command timed, in files/s, with the CPU time the driver's own process took;
   beside it the workers' ceiling (2 / the seconds one file takes ingested in this process,
   the driver's writes included). Only the public command line is used, so it
   also runs against an older checkout (``PYTHONPATH=/old/checkout``).

Prints the ratios (now / before) last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "out"
FAILED_SHARE = 0.01


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- 1. the driver alone


def _simulated_results(tasks, days: int):
    """One worker result per task, as ``ingest_file`` returns them: 1 % failures, the rest
    a week-long recording each (realistic table fields and day summaries)."""
    from accelstore.pipelines.ingest_task import FileResult

    valid = np.zeros(days, dtype=np.int32)
    valid[:7] = 8000
    std = np.where(valid > 0, np.float32(40.0), np.float32(0)).astype(np.float32)
    every = round(1 / FAILED_SHARE)
    for i, task in enumerate(tasks):
        if i % every == every - 1:
            message = f"{task.path}: corrupt: a block's checksum is wrong (block 1234 of 90000)"
            yield FileResult(task, "failed", size=300_000_000, digest="0" * 32, error="corrupt", message=message)
            continue
        fields = {
            "day0": 1_400_000_000 + 86400 * (i % 1000), "first_window": 3600, "n_windows": 7 * 8640 - 100,
            "device": "Axivity", "device_id": str(40000 + i), "source": str(task.path), "source_size": 300_000_000,
            "source_hash": f"{i:032x}", "utc_offset": "", "device_rate": 100.0, "calibrated": 1, "calib_error_mg": 2.5,
            "read_errors": 0, "non_finite_samples": 0, "out_of_range_samples": 0, "wear_days": 6.8,
            "valid_windows": int(valid.sum()), "stored_bytes": 60_000_000,
        }
        yield FileResult(task, "written", 300_000_000, f"{i:032x}", fields["n_windows"], fields, valid.copy(), std.copy())


def _in_batches(results, size: int = 100):
    """Results as ``run_task_batches`` hands them over: what has completed since the last look."""
    batch = []
    for result in results:
        batch.append((result.task, result))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def driver_child(participants: int, baseline_sample: int, workdir: Path) -> dict:
    """One size, in this process: plan the rows, then apply every result (or, for the baseline,
    a sample of them one at a time)."""
    import logging

    from tqdm import tqdm

    logging.disable(logging.WARNING)  # the simulated failures' warnings

    from accelstore.pipelines.ingest import IngestReport, _AppliedInGroups, _apply_round, _IngestPlan
    from accelstore.readers import ProcessingOptions
    from accelstore.store import Status, store_writer

    store = str(workdir / "cohort.zarr")
    files = [Path(f"/cohort/raw/{1_000_000 + i}_90001_0_0.cwa") for i in range(participants)]
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    with store_writer(store, "bench", create={"max_days": 14, "participants": participants}) as writer:
        created = time.perf_counter()
        plan = _IngestPlan(files, writer.table(), writer, store, ProcessingOptions(), None, None)
        planned = time.perf_counter()
        rss_planned = _peak_rss_mb()
        days = writer.n_windows // 8640
        results = _simulated_results(plan.tasks, days)
        if baseline_sample:
            failures = {f"/cohort/raw/f{i}.cwa": {"id": str(i), "error": "corrupt", "message": "x" * 80} for i in range(int(participants * FAILED_SHARE))}
            writer.group.attrs["failures"] = failures
            sample = [next(results) for _ in range(baseline_sample)]
            applied_start = time.perf_counter()
            for result in sample:
                row = np.array([result.task.row])
                if result.outcome == "written":
                    writer.write_day_summaries(row, result.day_valid_windows[None], result.day_std_sum[None])
                    writer.set_rows(row, **result.row_fields)
                    writer.set_rows(row, status=Status.COMPLETE)
                else:
                    writer.set_rows(row, status=Status.FAILED)
                    failures[str(result.task.path)] = {"id": result.task.participant, "error": result.error, "message": result.message}
                    writer.group.attrs["failures"] = failures
            applied_n = len(sample)
        else:
            applied_start = time.perf_counter()
            with tqdm(total=len(plan.tasks), disable=True) as bar:
                _apply_round(_in_batches(results), _AppliedInGroups(writer, IngestReport(store)), bar)
            applied_n = len(plan.tasks)
        applied = time.perf_counter() - applied_start
    info_s = _info_seconds(store) if not baseline_sample else float("nan")
    return {
        "info_s": info_s, "participants": participants, "applied": applied_n, "create_s": created - start, "plan_s": planned - created,
        "apply_s": applied, "ms_per_participant": 1000 * applied / applied_n, "participants_per_s": applied_n / applied,
        "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss_before, "rss_planned_mb": rss_planned,
    }


def _info_seconds(store: str) -> float:
    """``accelstore info``'s work on the store the driver wrote: open it, read the table, sum the bytes."""
    from accelstore import open_store

    start = time.perf_counter()
    open_store(store).info()
    return time.perf_counter() - start


def _run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_driver(sizes: list[int], baseline_sample: int) -> list[tuple[str, float]]:
    print("== 1. the driver alone, simulated worker results (1 % failures), store sized for the cohort", flush=True)
    print("(peak resident memory of the process: at the start, once the store is made and the rows planned, and at the end)")
    print(f"{'participants':>12} {'':9} {'plan s':>8} {'apply s':>8} {'ms/participant':>15} {'participants/s':>15} {'RSS MB: start':>14} {'planned':>8} {'end':>6} {'info s':>7}")
    ratios = []
    for size in sizes:
        rows = {}
        for mode, sample in (("before", baseline_sample), ("now", 0)):
            rows[mode] = r = _run_child("driver", str(size), str(sample))
            print(f"{size:>12,} {mode:9} {r['plan_s']:8.2f} {r['apply_s']:8.2f} {r['ms_per_participant']:15.3f} {r['participants_per_s']:15,.0f} "
                  f"{r['rss_before_mb']:14.0f} {r['rss_planned_mb']:8.0f} {r['peak_rss_mb']:6.0f} {r['info_s']:7.2f}", flush=True)
        ratios.append((f"driver participants/s at {size:,}, now / before", rows["now"]["participants_per_s"] / rows["before"]["participants_per_s"]))
    return ratios


# ---------------------------------------------------------------- 2. tasks in flight


def _noop(i: int) -> int:
    return i


def in_flight_child(tasks: int, bounded: bool) -> dict:
    import psutil
    from dask.distributed import Client, LocalCluster

    from accelstore.pipelines import runner

    if not bounded:  # as before: every task submitted at once
        runner.in_flight_limit = lambda client: tasks
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        me = psutil.Process()  # the LocalCluster's scheduler runs in this process too
        driver_peak, done = 0, 0
        start = time.perf_counter()
        for batch in runner.run_task_batches(client, _noop, range(tasks), retries=0):
            done += len(batch)
            if done % 2000 < len(batch) or done == tasks:
                driver_peak = max(driver_peak, me.memory_info().rss)
        wall = time.perf_counter() - start
    return {"tasks": tasks, "wall_s": wall, "tasks_per_s": tasks / wall, "process_mb": driver_peak / 2**20}


def bench_in_flight(tasks: int) -> list[tuple[str, float]]:
    print(f"\n== 2. {tasks:,} no-op tasks on a LocalCluster of 2 workers", flush=True)
    print(f"{'':22} {'wall s':>8} {'tasks/s':>9} {'peak MB of the driver and scheduler process':>44}")
    rows = {}
    for name, bounded in (("all at once (before)", False), ("bounded (now)", True)):
        rows[name] = r = _run_child("in-flight", str(tasks), str(int(bounded)))
        print(f"{name:22} {r['wall_s']:8.1f} {r['tasks_per_s']:9.0f} {r['process_mb']:44.0f}", flush=True)
    before, now = rows["all at once (before)"], rows["bounded (now)"]
    return [
        ("tasks/s, bounded / all at once", now["tasks_per_s"] / before["tasks_per_s"]),
        ("driver and scheduler peak memory, bounded / all at once", now["process_mb"] / before["process_mb"]),
    ]


# ---------------------------------------------------------------- 3. end to end


def _one_minute_csvs(n: int) -> Path:
    """``n`` one-minute CSV recordings at 25 Hz (made once, kept in bench/out)."""
    import pandas as pd

    folder = CACHE / f"csv-{n}x1min"
    if len(list(folder.glob("*.csv"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    time_index = pd.date_range("2024-03-01 10:00", periods=25 * 60, freq="40ms").strftime("%Y-%m-%d %H:%M:%S.%f")
    for i in range(n):
        xyz = rng.normal(0, 0.05, size=(len(time_index), 3)) + np.array([0.0, 0.0, 1.0])
        pd.DataFrame({"time": time_index, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}).to_csv(folder / f"P{i:04d}.csv", index=False, float_format="%.4f")
    return folder


def _task_seconds(folder: Path, workdir: Path, files: int = 40) -> float:
    """Seconds one ingest task takes in this process (warm), from the ingest of ``files`` files in it."""
    from accelstore.pipelines.ingest import ingest

    sample = workdir / "sample"
    sample.mkdir()
    for path in sorted(folder.glob("*.csv"))[:files]:
        os.symlink(path, sample / path.name)
    ingest([sample], str(workdir / "warm.zarr"), scheduler="synchronous", progress=False)  # compile and warm
    os.makedirs(workdir / "sample2")
    for path in sorted(folder.glob("*.csv"))[files : 2 * files]:
        os.symlink(path, workdir / "sample2" / path.name)
    start = time.perf_counter()
    ingest([workdir / "sample2"], str(workdir / "serial.zarr"), scheduler="synchronous", progress=False)
    return (time.perf_counter() - start) / files


def bench_end_to_end(n: int, workers: int, workdir: Path) -> float:
    """The whole command's wall time, and the CPU time of its own process (the driver, with the
    LocalCluster's scheduler; the workers are processes of their own), sampled until it exits."""
    import psutil

    folder = _one_minute_csvs(n)
    command = [sys.executable, "-m", "accelstore", "-q", "ingest", str(folder), "-o", str(workdir / "e2e.zarr"), "--workers", str(workers)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir)  # not the checkout: `python -m` would import the accelstore beside it, whatever PYTHONPATH says
    watched, driver_cpu = psutil.Process(process.pid), 0.0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            times = watched.cpu_times()
            driver_cpu = times.user + times.system
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"accelstore ingest exited with {process.returncode}")
    print(f"\n== 3. end to end: accelstore ingest of {n:,} one-minute CSVs, {workers} workers (the whole command)")
    print(f"wall {wall:.1f} s: {n / wall:.1f} files/s; the driver's process used {driver_cpu:.1f} CPU s ({1000 * driver_cpu / n:.1f} ms per file)", flush=True)
    return n / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("driver", "in-flight", "end-to-end"), action="append", help="Run only these parts (repeatable). Default: all.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="Participants of the driver benchmark.")
    parser.add_argument("--baseline-sample", type=int, default=300, help="Participants the one-at-a-time baseline is timed on, per size.")
    parser.add_argument("--tasks", type=int, default=20_000, help="No-op tasks of the in-flight benchmark.")
    parser.add_argument("--files", type=int, default=1_000, help="One-minute CSV files of the end-to-end run.")
    parser.add_argument("--workers", type=int, default=2, help="Workers of the end-to-end run.")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        with tempfile.TemporaryDirectory() as workdir:
            if kind == "driver":
                result = driver_child(int(rest[0]), int(rest[1]), Path(workdir))
            else:
                result = in_flight_child(int(rest[0]), bool(int(rest[1])))
        print(json.dumps(result))
        return
    parts = args.only or ["driver", "in-flight", "end-to-end"]
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        if "driver" in parts:
            ratios += bench_driver(args.sizes, args.baseline_sample)
        if "in-flight" in parts:
            ratios += bench_in_flight(args.tasks)
        if "end-to-end" in parts:
            files_per_s = bench_end_to_end(args.files, args.workers, Path(workdir))
            ceiling = args.workers / _task_seconds(_one_minute_csvs(args.files), Path(workdir))
            print(f"workers' ceiling: {ceiling:.1f} files/s ({args.workers} × one task in this process)")
            ratios.append(("end to end files/s / the workers' ceiling", files_per_s / ceiling))
    print()
    for name, ratio in ratios:
        print(f"ratio  {name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
