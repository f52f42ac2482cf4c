"""Benchmark: package builds, measured side by side in one run.

    python tests/bench/bench_package.py [--recipe wcslib] [--rounds 3]
    python tests/bench/bench_package.py --downloads [--dep-recipe pyvkfft] [--dep-variant gpu]
                                        [--subset a,b,c | --subset all] [--download-cache DIR]
                                        [--image-recipes katversion,radio-imaging]

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

With ``--downloads`` it prints instead the three figures of the download cache
(kernbuild.build.downloads), each side by side in one run:

3. dependency installation (``apt-get update``, the resolution, ``build-dep`` and the
   snapshot's commit in the build log) of a cold build of ``--dep-recipe``'s
   ``--dep-variant`` (default gpu: CUDA's toolkit; '' for the recipe itself) into an
   empty state with an empty download cache and no build-dependency snapshot, against
   a second cold build into another empty state, the download cache and the snapshot
   kept (goal: at most 10%);
4. a cold ``kernbuild package`` of ``--subset`` (default: a few small independent
   recipes; ``--subset all`` for the whole suite, which takes tens of minutes) with
   ``-j 1`` against ``-j 2``, each into an empty state, without snapshots, both from
   one download cache that already holds what they fetch (so neither pays for the
   other's downloads): ``--download-cache DIR``, a cache of earlier runs, or else one
   filled first by an untimed ``-j 2`` build of the subset (goal: -j 2 at least 1.6
   times faster);
5. the Docker image of each of ``--image-recipes`` (default: a small one and the
   radio imaging chain's, 179 Debian packages) built with an empty download cache
   against the same build again, Docker's layer cache bypassed both times
   (``nocache``), the download cache kept (goal: at most 0.5).

Needs a running Docker engine and network to Debian's archive and PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kernbuild.build.downloads import CACHE_ENV  # noqa: E402

#: Small recipes that depend on no other recipe: a cold build of them can run two at once.
SUBSET = ("katversion", "future", "eval-type-backport", "fortranformat")


def kernbuild(state: Path, *args: str, downloads: Path | None = None
              ) -> subprocess.CompletedProcess:
    env = {**os.environ, **({CACHE_ENV: str(downloads)} if downloads else {})}
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(state), *args],
                            capture_output=True, text=True, env=env)
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


def dependency_seconds(state: Path, recipe: str, downloads: Path,
                       variant: str = "") -> tuple[float, str]:
    """A cold build of ``recipe`` (its ``variant``) into the empty ``state``: the seconds
    its build log gives the dependency steps, and the log's download cache line."""
    options = ("--variant", variant) if variant else ()
    built_as = f"{recipe}-{variant}" if variant else recipe  # a variant is a recipe of its own
    built = {r["recipe"]: r for r in json.loads(kernbuild(
        state, "package", recipe, *options, "--json", downloads=downloads).stdout)}[built_as]
    log = (state / "builds" / "logs" / f"{built_as}-{built['key'][:12]}.log").read_text()
    # apt-get update, the resolution and build-dep, and the snapshot's commit, if any.
    steps = [float(found.group(1)) for line in log.splitlines()
             if line.startswith(("# for took", "# apt-get took", "# snapshot "))
             and (found := re.search(r" took ([\d.]+) s", line))]
    cache = next((line[2:] for line in log.splitlines() if line.startswith("# download cache")),
                 "no download cache line")
    return sum(steps), cache


def image_seconds(state: Path, recipe: str, downloads: Path) -> float:
    """A ``docker build`` of ``recipe``'s image from the packages in ``state``, every
    layer anew, under a benchmark-only tag; removed after."""
    import hashlib
    from dataclasses import replace

    from kernbuild import engine
    from kernbuild.build import open_repository
    from kernbuild.build.package import published_versions
    from kernbuild.images.docker import build_image, serve_repository
    from kernbuild.images.plan import plan_image
    from kernbuild.recipe import load_suite
    from kernbuild.workspace import Workspace

    suite = load_suite(ROOT / "recipes")
    repo = open_repository(Workspace(ROOT / "recipes", state), suite)
    client = engine.connect()
    build = next(t for i in client.images.list("kern/build") for t in i.tags)
    plan = plan_image(suite, suite.get(recipe), suite.settings.base_tag)
    plan = replace(plan, tag=f"kernbench/{recipe}:downloads")
    versions = published_versions(repo, suite)
    pins = [" ".join(f"{p}={versions[p]}" if p in suite.maker else p for p in layer.packages)
            for layer in plan.layers]
    keyring = hashlib.sha256((repo.root / "kern-archive-keyring.gpg").read_bytes()).hexdigest()
    with serve_repository(client, repo, build) as network:
        started = time.perf_counter()
        built = build_image(client, plan, pins, keyring, {}, network, state / "images",
                            downloads, nocache=True)
        seconds = time.perf_counter() - started
    print(f"  image {built.tag}: {seconds:.1f} s, {built.downloads}")
    client.images.remove(built.tag)
    return seconds


def forget_snapshots(recipe: str) -> None:
    """Remove the build-dependency snapshots ``recipe``'s builds made."""
    from kernbuild import engine
    from kernbuild.build import snapshots

    client = engine.connect()
    for image in client.images.list(filters={"label": [
            f"{snapshots.LABEL}={snapshots.KIND}", f"{snapshots.RECIPE}={recipe}"]}):
        client.images.remove(image.id, force=True)


def downloads_figures(args) -> None:
    """Figures 3, 4 and 5 of the module docstring."""
    work = Path(tempfile.mkdtemp(prefix="kernbuild-bench-downloads-"))
    try:
        cache = work / "downloads"
        dep = f"{args.dep_recipe}-{args.dep_variant}" if args.dep_variant else args.dep_recipe
        forget_snapshots(dep)
        first, first_cache = dependency_seconds(work / "dep-1", args.dep_recipe, cache,
                                                args.dep_variant)
        second, second_cache = dependency_seconds(work / "dep-2", args.dep_recipe, cache,
                                                  args.dep_variant)
        print(f"{dep}: dependency installation, cold build, empty download cache, "
              f"no snapshot {first:7.2f} s  ({first_cache})")
        print(f"{dep}: dependency installation, cold build, download cache and snapshot "
              f"kept {second:7.2f} s  ({second_cache})")
        print(f"second/first: {second / first:.2f} (goal: <= 0.10)\n")

        subset = all_recipes(work / "graph") if args.subset == "all" else args.subset.split(",")
        shared = args.download_cache or work / "subset-downloads"
        if args.download_cache is None:  # filled, untimed, so -j 1 fetches nothing -j 2 reuses
            kernbuild(work / "fill", "package", "-j", "2", "--no-snapshots", *subset,
                      downloads=shared)
            shutil.rmtree(work / "fill")
        # No snapshots: each run installs every build dependency, as the first run does.
        one = timed(lambda: kernbuild(work / "j1", "package", "-j", "1", "--no-snapshots",
                                      *subset, downloads=shared))
        two = timed(lambda: kernbuild(work / "j2", "package", "-j", "2", "--no-snapshots",
                                      *subset, downloads=shared))
        print(f"cold package of {len(subset)} recipes ({', '.join(subset)}), "
              f"both from one download cache ({shared})")
        print(f"-j 1 {one:8.2f} s\n-j 2 {two:8.2f} s")
        print(f"-j 2 is {one / two:.2f} times faster (goal: >= 1.6)\n")

        for recipe in args.image_recipes.split(","):
            kernbuild(work / "j2", "package", recipe, downloads=shared)
            images = work / f"image-downloads-{recipe}"
            cold = image_seconds(work / "j2", recipe, images)
            again = image_seconds(work / "j2", recipe, images)
            print(f"image of {recipe}, every layer built anew: empty download cache "
                  f"{cold:7.2f} s, download cache kept {again:7.2f} s")
            print(f"rebuild/first: {again / cold:.2f} (goal: <= 0.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="wcslib", help="recipe for the overhead comparison")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--downloads", action="store_true",
                        help="measure the download cache's figures instead")
    parser.add_argument("--dep-recipe", default="pyvkfft")
    parser.add_argument("--dep-variant", default="gpu",
                        help="the variant of --dep-recipe built ('' for the recipe itself)")
    parser.add_argument("--subset", default=",".join(SUBSET),
                        help="recipes for -j 1 against -j 2, comma-separated, or 'all'")
    parser.add_argument("--download-cache", type=Path,
                        help="a download cache holding the subset's downloads, for -j 1 "
                             "against -j 2 (default: one filled first)")
    parser.add_argument("--image-recipes", default="katversion,radio-imaging",
                        help="recipes whose images are built twice, comma-separated")
    args = parser.parse_args()
    if args.downloads:
        downloads_figures(args)
        return
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
