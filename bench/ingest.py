"""Ingest throughput and memory: `accelstore ingest` vs the per-file actipy loop users run today.

The baseline is what a user would otherwise run, one file after another on one core:
``actipy.read_device(f, calibrate_gravity=True, detect_nonwear=True, resample_hz=30)`` then
``np.save``. Both run on the same synthetic 7-day .cwa files, each timed as the whole command a
user runs, from start to exit (interpreter start-up, imports and, for ingest, the cluster's
start-up included). Throughput is person-days per core-minute (ingest: wall time × worker
processes); memory is the peak resident set of one worker (with its Java parser child) against
the baseline process's. By default there are 4 files per worker, as in a cohort where every
worker takes file after file. Prints the ratios last.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from accelstore.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "out"

BASELINE = """
import sys, warnings
from pathlib import Path
import numpy as np, actipy
warnings.simplefilter("ignore")
out = Path(sys.argv[1])
for f in sys.argv[2:]:
    data, info = actipy.read_device(f, calibrate_gravity=True, detect_nonwear=True, resample_hz=30, verbose=False)
    np.save(out / (Path(f).name + ".npy"), data[["x", "y", "z"]].to_numpy())
"""


class PeakMemory:
    """Samples the resident memory of a process tree, per child of the root, every 250 ms.

    Each sample walks /proc (about 10 ms with two workers): sampled more often, this process
    would take a fifth of a core from the two it is timing. A worker's peak lasts seconds.

    A worker's group is the worker process plus its own children (actipy's Java parser).
    """

    def __init__(self, root: subprocess.Popen, per_child: bool):
        self.root = psutil.Process(root.pid)
        self.per_child = per_child
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tops = self.root.children() if self.per_child else [self.root]
                for top in tops:
                    members = [top, *top.children(recursive=True)]
                    self.peak = max(self.peak, sum(_rss(p) for p in members))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.25)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=8, help="synthetic files")
    parser.add_argument("--days", type=float, default=7.0, help="days per file")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--engines", default="numba,actipy", help="processing engines of accelstore ingest to time, comma-separated")
    args = parser.parse_args()

    raw = CACHE / f"ingest-{args.participants}x{args.days:g}d"
    files = sorted(raw.glob("*.cwa"))
    if len(files) != args.participants:
        files = synthesize(raw, participants=args.participants, days=args.days, seed=2024)
    person_days = args.participants * args.days
    work = Path(tempfile.mkdtemp(prefix="accelstore-bench-ingest-"))

    ours = {engine: run_ingest(raw, work / f"{engine}.zarr", args.workers, engine) for engine in args.engines.split(",")}

    (work / "npy").mkdir()
    began = time.perf_counter()
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(work / "npy"), *map(str, files)])
    baseline_memory = PeakMemory(baseline, per_child=False)
    assert baseline.wait() == 0, "the baseline failed"
    baseline_s = time.perf_counter() - began
    baseline_peak = baseline_memory.stop()

    baseline_rate = person_days / (baseline_s / 60)
    print(f"{args.participants} files × {args.days:g} days = {person_days:g} person-days")
    print(f"actipy read_device + np.save (1 core): {baseline_s:7.1f} s wall, {baseline_rate:6.2f} person-days per core-minute, peak {baseline_peak / 2**30:.2f} GiB")
    rates = {}
    for engine, (seconds, peak) in ours.items():
        rates[engine] = person_days / (seconds * args.workers / 60)
        print(f"accelstore ingest --processing {engine} ({args.workers} workers): {seconds:7.1f} s wall, {rates[engine]:6.2f} person-days per core-minute, peak {peak / 2**30:.2f} GiB per worker")
    shutil.rmtree(work)
    for engine, (_, peak) in ours.items():
        print(f"ratio {engine}: person-days per core-minute {rates[engine] / baseline_rate:.2f}x, peak memory per worker {peak / baseline_peak:.2f}x (accelstore / baseline)")


def run_ingest(raw: Path, store: Path, workers: int, engine: str) -> tuple[float, int]:
    """Wall seconds and peak memory per worker of one `accelstore ingest` run."""
    command = [sys.executable, "-m", "accelstore", "-q", "ingest", str(raw), "-o", str(store), "--workers", str(workers), "--processing", engine]
    began = time.perf_counter()
    process = subprocess.Popen(command)
    memory = PeakMemory(process, per_child=True)
    assert process.wait() == 0, "accelstore ingest failed"
    return time.perf_counter() - began, memory.stop()


if __name__ == "__main__":
    main()
