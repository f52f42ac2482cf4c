"""Package builds on Slurm: ``kernbuild package --executor slurm`` builds each recipe as a job.

The submitting ``kernbuild package`` walks the build order as it always does (what is
cached stays cached, a recipe waits for what it build-depends on, ``--jobs`` at a
time), but hands each build to :class:`SlurmBuilds`: a batch job runs ``python -m
kernbuild.build.slurm build SPEC``, which, on whichever node Slurm chose (one that runs
a Docker engine and sees the state directory), builds that one recipe exactly as a
local build would, under the recipe's lock, and publishes it into the signed
repository before the job ends. So each wave of independent recipes (the reverse
dependencies of a casacore bump) spreads over the cluster, and what depends on a
recipe starts as soon as its job has published it.

The job writes its result, atomically, to ``result.json``; Slurm's accounting decides
what became of a job that wrote none: the build fails with the job's final state
(TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, CANCELLED) and the tail of its output, and what
depends on it is skipped, as for any failed build. ``scancel`` ends the worker with
SIGTERM, and its build container goes with it (:data:`~kernbuild.runtime.docker.GUARD`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kernbuild.build.package import BuildResult
from kernbuild.fsutil import atomic_write_json
from kernbuild.runtime.slurm import SlurmCluster, final_state

if TYPE_CHECKING:
    from kernbuild.recipe.model import Recipe
    from kernbuild.workspace import Workspace

#: Minutes a build job may run unless ``--slurm-args`` say otherwise (``--time``).
TIME_LIMIT = 180
OUTPUT_TAIL = 30  # lines of the job's output in a failed build's error


def result_to_json(result: BuildResult) -> dict:
    return {"recipe": result.recipe, "version": result.version, "key": result.key,
            "state": result.state, "debs": [str(d) for d in result.debs],
            "seconds": result.seconds, "lintian": list(result.lintian), "error": result.error}


def result_from_json(data: dict) -> BuildResult:
    return BuildResult(data["recipe"], data["version"], data["key"], data["state"],
                       tuple(Path(d) for d in data["debs"]), float(data["seconds"]),
                       tuple(data["lintian"]), data["error"])


@dataclass
class SlurmBuilds:
    """Builds recipes of ``workspace`` as Slurm jobs, one job per recipe; ``names`` and
    ``variant`` are the command's, so that a worker derives the same suite (a variant's
    recipes are the command's making)."""

    cluster: SlurmCluster
    workspace: "Workspace"
    names: tuple[str, ...] = ()
    variant: str | None = None

    @property
    def work(self) -> Path:
        """Where each job's spec, result and output are kept while it runs."""
        return self.workspace.state / "builds" / "slurm"

    def build(self, recipe: "Recipe", force: bool, seen: tuple[int, int] | None,
              version: str, key: str) -> BuildResult:
        """Build ``recipe`` in a Slurm job and wait for it: what
        :meth:`~kernbuild.build.package.PackageBuilder.build_one` would have returned,
        had the build run here (``version`` and ``key`` name a build that never began)."""
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{recipe.name}-", dir=self.work))
        spec = directory / "spec.json"
        ws = self.workspace
        atomic_write_json(spec, {
            "recipes": str(ws.recipes.resolve()), "state": str(ws.state.resolve()),
            "source_mirrors": [str(m.resolve()) for m in ws.source_mirrors],
            "lock_wait": ws.lock_wait, "names": list(self.names), "variant": self.variant,
            "recipe": recipe.name, "force": force, "seen": list(seen) if seen else None},
            durable=True)
        output = directory / "slurm.out"

        def failed(why: str, job: str = "") -> BuildResult:
            return BuildResult(recipe.name, version, key, "failed",
                               seconds=time.monotonic() - started, error=why, job=job)

        try:
            job = self.cluster.sbatch(
                [sys.executable, "-m", "kernbuild.build.slurm", "build", spec],
                name=f"kern-build-{recipe.name}", output=output, directory=directory,
                state=ws.state, time_limit=TIME_LIMIT)
        except (RuntimeError, OSError) as exc:
            return failed(f"{recipe.name}: could not submit its build to Slurm: {exc}")
        slurm_state, exit_code = self.cluster.watch(job)
        try:
            result = result_from_json(json.loads((directory / "result.json").read_text()))
        except FileNotFoundError:
            result = None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return failed(f"{recipe.name}: Slurm job {job} ended {final_state(slurm_state)} "
                          f"with an unreadable result ({exc}); its files: {directory}", job)
        if result is not None:
            shutil.rmtree(directory, ignore_errors=True)
            return replace(result, job=job)
        try:
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-OUTPUT_TAIL:])
        except OSError:
            tail = "(no output)"
        return failed(f"{recipe.name}: Slurm job {job} ended {final_state(slurm_state)} "
                      f"(exit code {exit_code}) before its build finished:\n{tail}\n"
                      f"its files: {directory}", job)


def use_slurm(builder, names: list[str], variant: str | None, slurm_args: list[str],
              say=lambda _: None) -> None:
    """Make ``builder`` build on Slurm (:class:`SlurmBuilds`); first check that a
    cluster answers, and cancel the build jobs a killed run on the same state left."""
    from kernbuild.errors import KernError

    cluster = SlurmCluster(slurm_args)
    reason = cluster.unavailable()
    if reason:
        raise KernError(f"the Slurm executor cannot run: {reason}",
                        "start a cluster (bash ci/setup-slurm.sh) or use --executor local")
    cluster.reap(builder.workspace.state, say)
    builder.slurm = SlurmBuilds(cluster, builder.workspace, tuple(names), variant)


# --- the worker: runs in the job, on the compute node -----------------------------------


def run_build(spec_path: Path) -> BuildResult:
    """Build the recipe of the job spec ``spec_path`` and write its result beside it."""
    from kernbuild.build import open_builder, with_variant
    from kernbuild.errors import KernError
    from kernbuild.recipe import load_suite
    from kernbuild.workspace import Workspace

    spec = json.loads(spec_path.read_text())
    workspace = Workspace(Path(spec["recipes"]), Path(spec["state"]),
                          tuple(Path(m) for m in spec["source_mirrors"]), spec["lock_wait"])
    seen = tuple(spec["seen"]) if spec["seen"] else None
    try:
        suite, _ = with_variant(load_suite(workspace.recipes), spec["names"], spec["variant"])
        recipe = suite.get(spec["recipe"])
        builder = open_builder(workspace, suite, say=lambda text: print(text, flush=True))
        with builder.fetching():
            result = builder.build_one(recipe, spec["force"], seen)
    except KernError as exc:  # before the build began: no engine on this node, say
        result = BuildResult(spec["recipe"], "", "", "failed", error=str(exc))
    atomic_write_json(spec_path.with_name("result.json"), result_to_json(result), durable=True)
    print(f"kernbuild: {result.recipe} {result.version}: {result.state} "
          f"{result.error}".rstrip(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m kernbuild.build.slurm build SPEC.json", file=sys.stderr)
        return 2
    run_build(Path(argv[1]))
    return 0  # the build's own success or failure is in its result


if __name__ == "__main__":
    sys.exit(main())
