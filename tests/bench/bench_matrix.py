"""Benchmark: the matrix, serial against --jobs 2 against the Slurm executor, in one run.

    python tests/bench/bench_matrix.py [--state DIR] [--rounds N]

Every target on five pipelines: katpoint's and wcs-roundtrip's steps (in three images,
on docker, udocker, apptainer, sif-bwrap and native) and the three science pipelines'
CWL workflows (imaging, pulsar, simulation, by cwltool, cwltool-apptainer, toil,
toil-apptainer and cwltool-native): 30 cells, of which those whose runtime is not
installed here are skipped (and named). The images, SIFs and native roots are made
first, so the runs time the cells alone:

  serial      kernbuild test --jobs 1
  --jobs 2    kernbuild test --jobs 2
  slurm       kernbuild test --executor slurm --jobs 2: the cells packed into two Slurm
              jobs (Toil's cells submit their own), the one-node cluster's 2 CPUs

The three run in turn, ``--rounds`` times (default 1), so that a neighbour's load falls
on all of them alike; each is timed by its best round, as the whole ``kernbuild test``
(with its check that every image is up to date, and each SIF's signature verified) and
as its cells alone, from the first cell's start to the last one's end. Per cell, the
overhead is the time from its start (a worker taking it up; in a Slurm job, the job's
submission or the previous cell's end) to its first step, printed as a share of the
cells' time.

Needs a Docker engine and, for the last, a running Slurm (bash ci/setup-slurm.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The pipelines measured: the same cells whatever pipelines the suite gains.
PIPELINES = ("katpoint", "wcs-roundtrip", "pipeline-imaging", "pipeline-pulsar",
             "pipeline-simulation")


def kernbuild(state: Path, *args: str) -> list[dict]:
    selected = [a for p in PIPELINES for a in ("--pipeline", p)]
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(state), "test", "--json",
                             *selected, *args], capture_output=True, text=True,
                            env={**os.environ, "KERNBUILD_SOURCE_MIRROR": str(
                                ROOT.parent / "shared" / "sources")})
    if result.returncode != 0:
        sys.exit(f"kernbuild test {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=ROOT / ".kernbuild")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    cells = kernbuild(args.state)  # makes the images, SIFs and native roots once
    ran = [c for c in cells if c["status"] != "skip"]
    skipped = sorted({c["target"] for c in cells if c["status"] == "skip"})
    print(f"{len(cells)} cells, {len(ran)} run ({len(cells) - len(ran)} skipped"
          f"{': ' + ', '.join(skipped) if skipped else ''}); load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs")
    runs = {"serial": ("--jobs", "1"), "--jobs 2": ("--jobs", "2"),
            "slurm": ("--executor", "slurm", "--jobs", "2")}
    times: dict[str, list[float]] = {label: [] for label in runs}
    phases: dict[str, list[float]] = {label: [] for label in runs}  # first cell to last
    overheads: dict[str, list[float]] = {label: [] for label in runs}
    shares: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, extra in runs.items():
            started = time.perf_counter()
            results = kernbuild(args.state, *extra)
            times[label].append(time.perf_counter() - started)
            assert all(r["status"] != "fail" for r in results), label
            measured = [r for r in results if r["status"] == "pass"]
            phases[label].append(max(r["started"] + r["seconds"] for r in measured)
                                 - min(r["started"] for r in measured))
            overheads[label] += [r["overhead"] for r in measured]
            shares[label].append(sum(r["overhead"] for r in measured)
                                 / max(1e-9, sum(r["seconds"] for r in measured)))
    best = {label: min(seconds) for label, seconds in times.items()}
    cells_best = {label: min(seconds) for label, seconds in phases.items()}
    print(f"{'':10} {'kernbuild test':>22}   {'its cells (first to last)':>26}   "
          "per-cell overhead (median, share of cell time)")
    for label, seconds in best.items():
        print(f"{label:10} {seconds:7.1f} s {best['serial'] / seconds:5.2f} x serial   "
              f"{cells_best[label]:7.1f} s {cells_best['serial'] / cells_best[label]:5.2f} x "
              f"serial   {statistics.median(overheads[label]):6.2f} s, "
              f"{statistics.mean(shares[label]):5.1%}")
    if args.rounds > 1:
        for label in runs:
            print(f"{label:10} rounds: " + " ".join(f"{s:.1f}" for s in times[label]))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
