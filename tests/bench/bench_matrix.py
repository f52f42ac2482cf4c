"""Benchmark: the matrix, serial against --jobs 2 against the Slurm executor, in one run.

    python tests/bench/bench_matrix.py [--state DIR]

Every pipeline of the suite in every image form on every target (15 cells: katpoint's
pipeline in one image, wcs-roundtrip's in two, on docker, udocker, apptainer, which is
skipped where it is not installed, sif-bwrap and native). The images and SIFs are made
first, so the three runs time the cells alone:

  serial      kernbuild test --jobs 1
  --jobs 2    kernbuild test --jobs 2
  slurm       kernbuild test --executor slurm --jobs 15: every cell a Slurm job, the
              one-node cluster running as many at once as its 2 CPUs allow

Needs a Docker engine and, for the last, a running Slurm (bash ci/setup-slurm.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# The pipelines measured: the same 15 cells whatever pipelines the suite gains.
PIPELINES = ("--pipeline", "katpoint", "--pipeline", "wcs-roundtrip")


def kernbuild(state: Path, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(state), "test", "--json",
                             *PIPELINES, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"kernbuild test {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=ROOT / ".kernbuild")
    args = parser.parse_args()
    cells = kernbuild(args.state)  # makes the images, SIFs and native roots once
    ran = [c for c in cells if c["status"] != "skip"]
    print(f"{len(cells)} cells, {len(ran)} run ({len(cells) - len(ran)} skipped: "
          f"{', '.join(sorted({c['target'] for c in cells if c['status'] == 'skip'}))})")
    runs = {"serial": ("--jobs", "1"), "--jobs 2": ("--jobs", "2"),
            "slurm": ("--executor", "slurm", "--jobs", str(len(cells)))}
    times = {}
    for label, extra in runs.items():
        started = time.perf_counter()
        results = kernbuild(args.state, *extra)
        times[label] = time.perf_counter() - started
        assert all(r["status"] != "fail" for r in results), label
    for label, seconds in times.items():
        print(f"{label:10} {seconds:7.1f} s   {times['serial'] / seconds:4.2f} x serial")


if __name__ == "__main__":
    main()
