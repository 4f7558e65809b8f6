"""Store benchmarks: bytes on disk per person-day, query latency, a store sized for UK Biobank.

1. Bytes per person-day of ``acc`` (+ per-window arrays) for the real files in ../shared/data and
   for a synthetic week, against float32 ``.npy`` at 30 Hz; and the same real windows under other
   codecs, which is how the store's codec was chosen.
2. Latency of ``Store.windows`` for one participant-day.
3. A store with 103,712 participant rows × 14 days of address space and 20 participants with
   data: open + info + one query in a fresh process, and its size against a compact store.
Prints the ratios last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np

from accelstore import open_store
from accelstore.grid import WINDOW_SAMPLES, WINDOWS_PER_DAY
from accelstore.pipelines.ingest import ingest
from accelstore.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ROOT.parent / "shared" / "data" / "devices"
UK_BIOBANK_PARTICIPANTS = 103_712
NPY_BYTES_PER_DAY = WINDOWS_PER_DAY * 3 * WINDOW_SAMPLES * 4  # float32 at 30 Hz

CODECS = {
    "zstd-3 bitshuffle (chosen)": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE),
    "zstd-3 byte shuffle": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE),
    "zstd-7 bitshuffle": numcodecs.Blosc("zstd", 7, numcodecs.Blosc.BITSHUFFLE),
    "lz4-5 bitshuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
}


def store_bytes_per_day(path: Path) -> tuple[float, float]:
    """(bytes per recorded person-day over all participants, recorded person-days)."""
    opened = open_store(str(path))
    table = opened.participants
    days = float((table["n_windows"] - table["first_window"]).sum()) / WINDOWS_PER_DAY
    data_bytes = sum(
        p.stat().st_size
        for name in ("acc", "valid", "std", "enmo")
        for p in (path / name / "c").rglob("*")
        if p.is_file()
    )
    return data_bytes / days, days


def codec_table(path: Path) -> dict[str, float]:
    """Bytes per person-day of the store's valid windows, one-hour chunks, under each codec."""
    opened = open_store(str(path))
    totals = dict.fromkeys(CODECS, 0)
    windows = 0
    for _, row in opened.participants.iterrows():
        span = slice(int(row["first_window"]), int(row["n_windows"]))
        raw = opened.window_values(int(row["row"]), "acc", span)[opened.window_values(int(row["row"]), "valid", span)]
        windows += len(raw)
        for start in range(0, len(raw), 360):
            chunk = np.ascontiguousarray(raw[start : start + 360])
            for name, codec in CODECS.items():
                totals[name] += len(codec.encode(chunk))
    return {name: total / windows * WINDOWS_PER_DAY for name, total in totals.items()}


def query_latency(path: Path, repeats: int = 20) -> float:
    """Median seconds for ``windows()`` of one whole day in the middle of the recording."""
    opened = open_store(str(path))
    pid, row = next(iter(opened.participants.iterrows()))
    day0 = np.datetime64(row["day0"], "ns")
    start = day0 + np.timedelta64(2, "D")
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        windows = opened.windows(pid, start, start + np.timedelta64(1, "D"))
        timings.append(time.perf_counter() - began)
    assert windows.sizes["window"] == WINDOWS_PER_DAY
    return float(np.median(timings))


OPEN_INFO_QUERY = """
import json, sys, time
began = time.perf_counter()
import numpy, xarray
from accelstore import open_store
xarray.DataArray(numpy.zeros(1))  # xarray imports dask.array on its first array: import cost, not the store's
imported = time.perf_counter()
store = open_store(sys.argv[1])
info = store.info()
pid = store.participants.index[-1]
windows = store.windows(pid)
done = time.perf_counter()
print(json.dumps({"import_s": imported - began, "open_info_query_s": done - imported, "rows": info["rows"], "participants": info["participants"], "windows": windows.sizes["window"]}))
"""


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--week-days", type=float, default=7.0, help="length of the synthetic recording, days")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accelstore-bench-store-"))
    print(f"working in {work}")

    results: dict[str, float] = {}
    if DEVICES.is_dir():
        real = work / "real.zarr"
        ingest([DEVICES], str(real), workers=args.workers, progress=False)
        per_day, days = store_bytes_per_day(real)
        results["real"] = per_day
        print(f"real files: {days * 24:.2f} recorded hours, {per_day / 1e6:.2f} MB per person-day")
        for name, value in codec_table(real).items():
            print(f"    acc under {name:28s} {value / 1e6:6.2f} MB per person-day")
    else:
        print(f"real files: skipped, {DEVICES} not found")

    week_raw = work / "week"
    synthesize(week_raw, participants=1, days=args.week_days, seed=3)
    week = work / "week.zarr"
    ingest([week_raw], str(week), workers=1, progress=False)
    per_day, days = store_bytes_per_day(week)
    results["synthetic"] = per_day
    opened = open_store(str(week))
    row = opened.participants.iloc[0]
    np.save(work / "week.npy", opened.windows(opened.participants.index[0]).values)
    npy_per_day = (work / "week.npy").stat().st_size / ((row["n_windows"] - row["first_window"]) / WINDOWS_PER_DAY)
    print(f"synthetic week: {days:.2f} person-days, {per_day / 1e6:.2f} MB per person-day; float32 .npy {npy_per_day / 1e6:.2f} MB")

    latency = query_latency(week)
    print(f"store.windows, one participant-day: median {latency * 1000:.1f} ms")

    cohort_raw = work / "cohort"
    synthesize(cohort_raw, participants=20, days=0.25, seed=5)
    big, compact = work / "ukb_sized.zarr", work / "compact.zarr"
    ingest([cohort_raw], str(big), workers=args.workers, reserve=UK_BIOBANK_PARTICIPANTS, max_days=14, progress=False)
    ingest([cohort_raw], str(compact), workers=args.workers, max_days=14, progress=False)
    run = subprocess.run([sys.executable, "-c", OPEN_INFO_QUERY, str(big)], capture_output=True, text=True, check=True)
    timing = json.loads(run.stdout)
    size_ratio = directory_bytes(big) / directory_bytes(compact)
    print(
        f"UK-Biobank-sized store: {timing['rows']:,} rows, {timing['participants']} with data; "
        f"open+info+query {timing['open_info_query_s']:.3f} s (import {timing['import_s']:.2f} s); "
        f"{directory_bytes(big) / 1e6:.2f} MB on disk vs {directory_bytes(compact) / 1e6:.2f} MB for the compact store"
    )

    print("ratios:")
    if "real" in results:
        print(f"  real data: float32 .npy / store bytes per person-day = {NPY_BYTES_PER_DAY / results['real']:.2f}x ({results['real'] / 1e6:.2f} MB per person-day; target <= 5 MB)")
    print(f"  synthetic week: float32 .npy / store = {npy_per_day / results['synthetic']:.2f}x")
    print(f"  query latency / 50 ms target = {latency / 0.050:.2f}")
    print(f"  UK-Biobank-sized open+info+query / 1 s target = {timing['open_info_query_s']:.2f}; size vs compact store = {size_ratio:.3f}x")


if __name__ == "__main__":
    main()
