"""The matrix tester: every pipeline's smoke workflow in every image form on every target.

A cell is (pipeline, image, form, target). Its workflow runs step by step in a
scratch directory of its own: the data steps make the tiny input, the workflow
steps run the tools, the assert steps check the result. The first failing step
ends the cell; a step past its timeout is killed and the cell fails with that
reason while the other cells go on. Results go to SQLite as cells finish.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kernbuild.errors import KernError
from kernbuild.images.plan import GPU_CHECK, GPU_VARIANT
from kernbuild.matrix.state import CellResult, MatrixState, StepRecord
from kernbuild.matrix.targets import (TARGET_NAMES, ApptainerTarget, DockerTarget,
                                      SifBwrapTarget, Target, unpacked_sif)
from kernbuild.recipe.model import Recipe, Suite

GPU_CHECK_TIMEOUT = 60  # seconds: it reads a file and opens two libraries


@dataclass(frozen=True)
class Cell:
    pipeline: Recipe
    image: str  # the recipe whose image it is
    form: str  # docker or sif
    target: Target
    ref: str  # what the target runs: a Docker image id or a SIF path
    digest: str  # the image's identity: Docker image id or SIF sha256

    @property
    def gpu(self) -> bool:
        """A GPU image's cell: kern-gpu-check runs first, and a failure skips it."""
        return self.target.gpu

    @property
    def key(self) -> str:
        parts = (self.pipeline.pipeline.digest(), self.digest, self.target.name)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def result(self, status: str, reason: str = "", seconds: float = 0.0,
               steps: list[StepRecord] | None = None) -> CellResult:
        return CellResult(self.key, self.pipeline.name, self.image, self.form,
                          self.target.name, status, reason, seconds, steps or [])


def run_cell(cell: Cell, scratch_root: Path) -> CellResult:
    """Run one cell's workflow in a fresh scratch directory."""
    reason = cell.target.unavailable()
    if reason:
        return cell.result("skip", reason)
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{cell.pipeline.name}-", dir=scratch_root))
    scratch.chmod(0o777)  # the workflow may run as another user inside the image
    started = time.monotonic()
    steps: list[StepRecord] = []
    try:
        if cell.gpu:
            check = cell.target.run(cell.ref, GPU_CHECK, scratch, GPU_CHECK_TIMEOUT)
            check.phase, check.name = "gpu", GPU_CHECK
            steps.append(check)
            if check.exit_code != 0:
                # Its verdict is its last line on stdout; its own notes say "kern-gpu-check:".
                said = [line for line in check.output.splitlines()
                        if line.strip() and not line.startswith(f"{GPU_CHECK}:")]
                line = said[-1] if said else f"exit {check.exit_code}"
                return cell.result("skip", f"{GPU_CHECK}: {line}", time.monotonic() - started,
                                   steps)
        for phase, step in cell.pipeline.pipeline.all_steps:
            record = cell.target.run(cell.ref, step.run, scratch, step.timeout)
            record.phase, record.name = phase, step.name
            steps.append(record)
            if record.timed_out:
                return cell.result("fail", f"{phase} {step.name} timed out after "
                                   f"{step.timeout} s", time.monotonic() - started, steps)
            if record.exit_code != 0:
                what = "assertion" if phase == "assert" else phase
                return cell.result("fail", f"{what} {step.name} failed (exit "
                                   f"{record.exit_code})", time.monotonic() - started, steps)
        return cell.result("pass", "", time.monotonic() - started, steps)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def all_targets(workspace, suite: Suite, connect) -> list[Target]:
    """Every target, in the order the grid shows them."""
    from kernbuild.matrix.targets.native import NativeTarget
    from kernbuild.matrix.targets.udocker import UdockerTarget

    matrix = workspace.state / "matrix"
    return [DockerTarget(connect), UdockerTarget(connect, matrix / "udocker"),
            ApptainerTarget(), SifBwrapTarget(None),
            NativeTarget(workspace.repo, suite.settings.repo_distribution,
                         suite.settings.distribution, suite.settings.mirror, matrix / "native")]


def run_matrix(workspace, suite: Suite, *, pipelines: list[str] | None = None,
               images: list[str] | None = None, targets: list[str] | None = None,
               jobs: int = 1, resume: bool = False, executor: str = "local",
               slurm_args: list[str] | None = None, gpu: bool = False,
               report: Callable[[CellResult | Cell, str], None] = lambda *_: None,
               say=lambda _: None) -> list[CellResult]:
    """Plan the matrix, make its images, run its cells ``jobs`` at a time, here
    (``executor="local"``) or each as a Slurm job (``"slurm"``).

    With ``gpu``, the GPU image of every image whose recipe has a gpu variant joins
    the matrix; its cells run kern-gpu-check first, with the host's GPUs handed over
    as each target's runtime does, and are skipped with its line when it fails."""
    from kernbuild import engine
    from kernbuild.images import build_images

    for name in images or ():
        suite.get(name)  # an unknown image is an error with a suggestion, not an empty matrix
    for name in targets or ():
        if name not in TARGET_NAMES:
            raise KernError(f"unknown target {name!r}", f"use one of {', '.join(TARGET_NAMES)}")
    if executor not in ("local", "slurm"):
        raise KernError(f"unknown executor {executor!r}", "use local or slurm")
    chosen = [suite.get(name) for name in pipelines] if pipelines else suite.pipelines
    if not chosen:
        raise KernError("the suite has no pipelines",
                        "add a pipeline: section (images, data, steps, assert) to a recipe")
    for recipe in chosen:
        if recipe.pipeline is None:
            raise KernError(f"{recipe.name} has no pipeline section",
                            "pipelines: " + ", ".join(r.name for r in suite.pipelines))
    slurm = None
    if executor == "slurm":
        from kernbuild.matrix.slurm import SlurmExecutor

        slurm = SlurmExecutor(workspace.state / "matrix" / "slurm", slurm_args or [])
        reason = slurm.unavailable()
        if reason:
            raise KernError(f"the Slurm executor cannot run: {reason}",
                            "start a cluster (bash ci/setup-slurm.sh) or use --executor local")
    wanted_targets = [t for t in all_targets(workspace, suite, engine.connect)
                      if not targets or t.name in targets]
    image_names = sorted({i for r in chosen for i in r.pipeline.images
                          if not images or i in images})
    gpu_names = [i for i in image_names if GPU_VARIANT in suite.get(i).variants] if gpu else []
    if gpu and not gpu_names:
        raise KernError("--gpu: none of these images has a gpu variant",
                        "recipes with one: " + (", ".join(
                            r.name for r in suite.recipes if GPU_VARIANT in r.variants)
                            or "none"))
    # Every form comes from the Docker image; "packages" needs only what it was built from.
    forms = tuple(sorted({"docker"} | {t.form for t in wanted_targets} - {"packages"}))
    say(f"images: {', '.join(image_names + [f'{i}-{GPU_VARIANT}' for i in gpu_names])} "
        f"as {' and '.join(forms)}")

    def report_image(recipe, state, detail):
        if state == "image":
            say(f"{recipe}: {detail}")

    entries = {e["recipe"]: e for e in build_images(
        workspace, suite, image_names, formats=forms, say=say, report=report_image)}
    gpu_entries = {name: e for name, e in zip(gpu_names, build_images(
        workspace, suite, gpu_names, formats=forms, gpu=True, say=say,
        report=report_image) if gpu_names else [])}

    # Each SIF's root filesystem, unpacked before any cell runs (so no cell waits on another).
    digests = {e["sif"]["path"]: e["sif"]["sha256"]
               for e in [*entries.values(), *gpu_entries.values()] if "sif" in e}
    rootfs_cache = workspace.state / "matrix" / "rootfs"
    for target in wanted_targets:
        if isinstance(target, SifBwrapTarget):
            for path, digest in digests.items():
                unpacked_sif(path, digest, rootfs_cache)
            target.rootfs_of = lambda path: unpacked_sif(path, digests[path], rootfs_cache)
    cells = []
    for recipe in chosen:
        for image in recipe.pipeline.images:
            if image not in entries:
                continue
            images_ = [(entries[image], wanted_targets)]
            if image in gpu_entries:
                images_.append((gpu_entries[image], [t.with_gpu() for t in wanted_targets]))
            for entry, targets_ in images_:
                pins = " ".join(f"{p}={v}" for p, v in sorted(entry["packages"].items()))
                sif = entry.get("sif", {})
                refs = {"docker": (entry["image"], entry["image"]),
                        "sif": (sif.get("path"), sif.get("sha256")),
                        # exact versions name exact bytes: the repository never changes them
                        "packages": (pins, hashlib.sha256(pins.encode()).hexdigest())}
                for target in targets_:
                    ref, digest = refs[target.form]
                    cells.append(Cell(recipe, entry["recipe"], target.form, target, ref,
                                      digest))
    state = MatrixState(workspace.state / "matrix" / "results.sqlite")
    scratch = workspace.state / "matrix" / "scratch"

    def run(cell: Cell) -> CellResult:
        stored = state.passed(cell.key) if resume else None
        if stored is not None:
            report(stored, "resumed")
            return stored
        report(cell, "running")
        if slurm is not None and not cell.target.unavailable():
            result = slurm.run(cell, workspace.recipes, workspace.state)
        else:
            result = run_cell(cell, scratch)
        state.record(result)
        report(result, result.status)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(run, cells))
