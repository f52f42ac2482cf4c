"""Benchmark: package builds, measured side by side in one run.

    python tests/bench/bench_package.py [--recipe wcslib] [--rounds 3]

Prints two ratios:

1. no-op rebuild against cold build: ``kernbuild package`` of the whole suite
   into an empty state directory (sources fetched, every package built and
   published; the base and build images already exist, as they do after the
   first run on a machine), then the same command again with nothing changed
   (goal: at least 100 times faster).
2. kernbuild's build of one recipe (``package --force``: source from cache,
   fresh container, build dependencies, offline dpkg-buildpackage, lintian,
   cache and publish) against a bare ``dpkg-buildpackage`` of the same debian/
   tree in the same build image (``docker run``, ``apt-get build-dep``,
   ``dpkg-buildpackage``), alternated round by round so both see the same
   machine (goal: at most 10% overhead). lintian's share is printed apart,
   since the bare build runs no lintian.

Needs a running Docker engine and network to Debian's archive and PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kernbuild(state: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(state), *args],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"kernbuild {' '.join(args)} failed:\n{result.stderr}")
    return result


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def all_recipes(state: Path) -> list[str]:
    return [row["name"] for row in json.loads(kernbuild(state, "graph", "--json").stdout)]


def bare_build(state: Path, recipe: str, image: str, work: Path) -> float:
    """docker run + apt-get build-dep + dpkg-buildpackage of kernbuild's debian/ tree."""
    tree = work / "src"
    shutil.rmtree(work, ignore_errors=True)
    kernbuild(state, "debianize", recipe, "-o", str(tree))
    repo = state / "repo"
    script = ("echo 'deb [signed-by=/repo/kern-archive-keyring.gpg] file:/repo/current kern-1 main'"
              " > /etc/apt/sources.list.d/kern.list && apt-get update -q && "
              "apt-get build-dep -y -q /build/src && cd /build/src && "
              "DEB_BUILD_OPTIONS='noautodbgsym nocheck parallel=2' dpkg-buildpackage -b -us -uc")
    command = ["docker", "run", "--rm", "-e", "DEBIAN_FRONTEND=noninteractive",
               "-v", f"{work}:/build", "-v", f"{repo}:/repo:ro", image, "sh", "-c", script]
    return timed(lambda: subprocess.run(command, capture_output=True, check=True))


def lintian_seconds(state: Path, recipe: str) -> float:
    """How long lintian took in the last kernbuild build of ``recipe`` (from its log)."""
    manifest = json.loads(kernbuild(state, "package", recipe, "--json").stdout)
    log = Path([r for r in manifest if r["recipe"] == recipe][0]["debs"][0]).parent / "build.log"
    return float(next(line.split()[3] for line in log.read_text().splitlines()
                      if line.startswith("# lintian took")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="wcslib", help="recipe for the overhead comparison")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="kernbuild-bench-"))
    try:
        recipes = all_recipes(state)
        # Make sure the images exist, so "cold" measures package builds, not mmdebstrap.
        kernbuild(state, "package", "katversion")
        shutil.rmtree(state)
        cold = timed(lambda: kernbuild(state, "package", *recipes))
        noops = [timed(lambda: kernbuild(state, "package", *recipes))
                 for _ in range(max(5, args.rounds))]
        noop = statistics.median(noops)
        print(f"suite: {len(recipes)} recipes ({', '.join(recipes)})")
        print(f"cold build          {cold:8.2f} s")
        print(f"no-op rebuild       {noop:8.3f} s  (median of {len(noops)})")
        print(f"no-op is {cold / noop:.0f} times faster than cold (goal: >= 100)")

        image = json.loads(subprocess.run(
            ["docker", "images", "--format", "{{json .}}", "kern/build"],
            capture_output=True, text=True, check=True).stdout.splitlines()[0])
        image = f"{image['Repository']}:{image['Tag']}"
        ours, bare, lintian = [], [], []
        with tempfile.TemporaryDirectory() as work:
            for _ in range(args.rounds):
                ours.append(timed(lambda: kernbuild(state, "package", args.recipe, "--force")))
                lintian.append(lintian_seconds(state, args.recipe))
                bare.append(bare_build(state, args.recipe, image, Path(work) / "bare"))
        k, b, li = statistics.median(ours), statistics.median(bare), statistics.median(lintian)
        print(f"\n{args.recipe}: {args.rounds} rounds, alternating, medians")
        print(f"kernbuild package --force   {k:8.2f} s  (of which lintian {li:.2f} s)")
        print(f"bare dpkg-buildpackage      {b:8.2f} s")
        print(f"overhead: {100 * (k / b - 1):+.1f}% with lintian, "
              f"{100 * ((k - li) / b - 1):+.1f}% without (goal: <= 10%)")
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()
