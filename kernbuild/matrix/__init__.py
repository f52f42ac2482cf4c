"""The matrix tester: every pipeline's smoke workflow in every image form on every target.

A cell is (pipeline, image, form, target, runner); a target names its container
runtime and its runner together (``docker``: kernbuild's step runner in Docker;
``toil-apptainer``: Toil with Apptainer). A pipeline of steps runs step by step
in a scratch directory of its own: the data steps make the tiny input, the
workflow steps run the tools, the assert steps check the result. The first
failing step ends the cell; a step past its timeout is killed and the cell fails
with that reason while the other cells go on. A CWL pipeline's workflow runs
whole, by cwltool or Toil, and its outputs and the runner's job logs are kept
under ``state/matrix/cells/<key>``. Results go to SQLite as cells finish.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from kernbuild.errors import KernError
from kernbuild.images.plan import GPU_CHECK, GPU_VARIANT
from kernbuild.matrix.state import CellResult, MatrixState
from kernbuild.recipe.model import Recipe, Suite
from kernbuild.results import ImageBuild, LockEntry, StepResult
from kernbuild.runtime import RUNNERS, ImageRef, Runner, RuntimeContext, make_runner

#: The matrix's targets: every runner of the runtime layer, in the grid's order.
TARGET_NAMES = tuple(RUNNERS)
#: Where Toil's cells run their CWL steps (Toil's own --batchSystem names).
TOIL_BATCH_SYSTEMS = ("single_machine", "slurm")

GPU_CHECK_TIMEOUT = 60  # seconds: it reads a file and opens two libraries
CWL_TIMEOUT = 1800  # seconds for a whole CWL workflow (each step takes seconds)


@dataclass(frozen=True)
class Cell:
    pipeline: Recipe
    image: str  # the recipe whose image it is
    form: str  # docker, sif or packages
    target: Runner
    ref: str  # what the target runs: a Docker image id, a SIF path or package pins
    digest: str  # the image's identity: Docker image id or SIF sha256

    tag: str = ""  # the image's name, kern/<recipe>:1
    components: tuple[str, ...] = ()  # Debian's areas beyond main its packages need

    @property
    def image_ref(self) -> ImageRef:
        return ImageRef(self.ref, self.digest, self.tag, self.components)

    @property
    def gpu(self) -> bool:
        """A GPU image's cell: kern-gpu-check runs first, and a failure skips it."""
        return self.target.gpu

    @property
    def key(self) -> str:
        parts = (self.pipeline.pipeline.digest(), workflow_digest(self.pipeline), self.digest,
                 self.target.name)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def result(self, status: str, reason: str = "", seconds: float = 0.0,
               steps: list[StepResult] | None = None) -> CellResult:
        return CellResult(self.key, self.pipeline.name, self.image, self.form,
                          self.target.name, status, reason, seconds, steps or [])


#: Scripts that several CWL pipelines share, in the recipes directory.
SHARED_CWL = "pipeline-common"


def workflow_digest(recipe: Recipe) -> str:
    """A CWL pipeline's files (its workflow's directory, tools and scripts, and the shared
    scripts), hashed: a cell reruns when any of them changes. "" for a pipeline of steps."""
    from kernbuild.sources import tree_hash

    cwl = recipe.pipeline.cwl
    if cwl is None:
        return ""
    shared = recipe.path.parent / SHARED_CWL
    return tree_hash((recipe.path.parent / cwl.workflow).parent) + (
        tree_hash(shared) if shared.is_dir() else "")


@dataclass(frozen=True)
class MatrixRun:
    """What :func:`run_matrix` did: each cell's result, the images the cells ran in
    (their lock entries: packages and versions, image id, SIF sha256), and where each
    CWL cell's outputs are kept (``kept / key``)."""

    cells: list[CellResult]
    images: list[LockEntry]
    kept: Path


def kept_dir(state: Path) -> Path:
    """Where the matrix keeps each CWL cell's outputs and job logs, by cell key."""
    return state / "matrix" / "cells"


def cell_timeout(cell: Cell) -> float:
    """The most seconds the cell's own timeouts let it run: its steps' (or its CWL
    workflow's) and its GPU check's. What a Slurm job holding it must allow."""
    own = CWL_TIMEOUT if cell.pipeline.pipeline.cwl is not None else sum(
        step.timeout for _, step in cell.pipeline.pipeline.all_steps)
    return own + (GPU_CHECK_TIMEOUT if cell.gpu else 0)


def run_cell(cell: Cell, scratch_root: Path, keep: Path | None = None,
             started: float | None = None) -> CellResult:
    """Run one cell's workflow in a fresh scratch directory; a CWL workflow's outputs
    and its runner's job logs are then moved to ``keep`` (replacing what was there).

    ``started`` (Unix time, default now) is when the cell's turn began, so that its
    seconds and its overhead (to its first step) count what came before this call,
    such as the Slurm job's start."""
    began = time.time() if started is None else started
    clock = time.monotonic() - (time.time() - began)  # the same moment, monotonic
    reason = cell.target.unavailable()
    if reason:
        return cell.result("skip", reason)
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{cell.pipeline.name}-", dir=scratch_root))
    scratch.chmod(0o777)  # the workflow may run as another user inside the image
    steps: list[StepResult] = []
    overhead = time.monotonic() - clock

    def result(status: str, reason: str = "") -> CellResult:
        return replace(cell.result(status, reason, time.monotonic() - clock, steps),
                       overhead=overhead, started=began)

    try:
        if cell.gpu:
            check = cell.target.run(cell.image_ref, GPU_CHECK, scratch,
                                    GPU_CHECK_TIMEOUT).named("gpu", GPU_CHECK)
            steps.append(check)
            if check.exit_code != 0:
                # Its verdict is its last line on stdout; its own notes say "kern-gpu-check:".
                said = [line for line in check.output.splitlines()
                        if line.strip() and not line.startswith(f"{GPU_CHECK}:")]
                line = said[-1] if said else f"exit {check.exit_code}"
                return result("skip", f"{GPU_CHECK}: {line}")
        cwl = cell.pipeline.pipeline.cwl
        if cwl is not None:
            recipes = cell.pipeline.path.parent
            record = cell.target.run_workflow(cell.image_ref, recipes / cwl.workflow,
                                              recipes / cwl.job, scratch,
                                              CWL_TIMEOUT).named("cwl", cell.target.name)
            steps.append(record)
            if keep is not None:
                _keep_outputs(scratch, keep)
            if record.timed_out:
                return result("fail", f"the workflow timed out after {CWL_TIMEOUT} s")
            if record.exit_code != 0:
                return result("fail", f"the workflow failed (exit {record.exit_code}): "
                              f"{_last_error(record.output)}")
            return result("pass")
        for phase, step in cell.pipeline.pipeline.all_steps:
            record = cell.target.run(cell.image_ref, step.run, scratch,
                                     step.timeout).named(phase, step.name)
            steps.append(record)
            if record.timed_out:
                return result("fail", f"{phase} {step.name} timed out after {step.timeout} s")
            if record.exit_code != 0:
                what = "assertion" if phase == "assert" else phase
                return result("fail", f"{what} {step.name} failed (exit {record.exit_code})")
        return result("pass")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _keep_outputs(scratch: Path, keep: Path) -> None:
    """Move a CWL cell's outputs and job logs out of its scratch directory to ``keep``."""
    from kernbuild.fsutil import remove_tree
    from kernbuild.runtime.cwl import KEPT_LOGS, KEPT_OUTPUTS

    remove_tree(keep)
    keep.mkdir(parents=True)
    for name in (KEPT_OUTPUTS, KEPT_LOGS):
        if (scratch / name).is_dir():
            shutil.move(scratch / name, keep / name)


def all_targets(workspace, suite: Suite) -> list[Runner]:
    """Every target, in the order the grid shows them."""
    context = RuntimeContext.for_workspace(workspace, suite.settings)
    return [make_runner(name, context) for name in TARGET_NAMES]


def run_matrix(workspace, suite: Suite, *, pipelines: list[str] | None = None,
               images: list[str] | None = None, targets: list[str] | None = None,
               jobs: int = 1, resume: bool = False, executor: str = "local",
               slurm_args: list[str] | None = None, gpu: bool = False,
               toil_batch_system: str = "single_machine",
               report: Callable[[CellResult | Cell, str], None] = lambda *_: None,
               say=lambda _: None) -> MatrixRun:
    """Plan the matrix, make its images, run its cells ``jobs`` at a time, here
    (``executor="local"``) or on Slurm (``"slurm"``), packed into at most ``jobs``
    Slurm jobs at once that each run their share one after another
    (:mod:`kernbuild.matrix.slurm`).

    Toil's cells run Toil's own ``single_machine`` batch system wherever the cell runs
    (in a Slurm job, its steps share that job's allocation: a smoke workflow's steps
    are tiny tasks, which the LOFAR pilot learnt to group); with ``toil_batch_system=
    "slurm"`` Toil submits each CWL step as a Slurm job of its own, as large workflows
    run, and its cells run on this host.

    With ``gpu``, the GPU image of every image whose recipe has a gpu variant joins
    the matrix; its cells run kern-gpu-check first, with the host's GPUs handed over
    as each target's runtime does, and are skipped with its line when it fails."""
    from kernbuild.images.build import build_images

    for name in images or ():
        suite.get(name)  # an unknown image is an error with a suggestion, not an empty matrix
    for name in targets or ():
        if name not in TARGET_NAMES:
            raise KernError(f"unknown target {name!r}", f"use one of {', '.join(TARGET_NAMES)}")
    if executor not in ("local", "slurm"):
        raise KernError(f"unknown executor {executor!r}", "use local or slurm")
    if toil_batch_system not in TOIL_BATCH_SYSTEMS:
        raise KernError(f"unknown Toil batch system {toil_batch_system!r}",
                        f"use one of {', '.join(TOIL_BATCH_SYSTEMS)}")
    chosen = [suite.get(name) for name in pipelines] if pipelines else suite.pipelines
    if not chosen:
        raise KernError("the suite has no pipelines",
                        "add a pipeline: section (images, data, steps, assert) to a recipe")
    for recipe in chosen:
        if recipe.pipeline is None:
            raise KernError(f"{recipe.name} has no pipeline section",
                            "pipelines: " + ", ".join(r.name for r in suite.pipelines))
    slurm = None
    if executor == "slurm" or toil_batch_system == "slurm":
        from kernbuild.matrix.slurm import SlurmExecutor

        slurm = SlurmExecutor(workspace.state / "matrix" / "slurm", slurm_args or [])
        reason = slurm.unavailable()
        if reason:
            raise KernError(f"Slurm cannot be used: {reason}",
                            "start a cluster (bash ci/setup-slurm.sh), or use --executor "
                            "local and Toil's single_machine batch system")
        slurm.reap(workspace.state, say)  # the jobs of a killed run on this state
    wanted_targets = [t for t in all_targets(workspace, suite)
                      if not targets or t.name in targets]
    if toil_batch_system == "slurm":  # a runner that schedules its own jobs does so on Slurm
        wanted_targets = [t.on_slurm(slurm_args or []) or t for t in wanted_targets]
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

    # One matrix run per state at a time: its results database, scratch and kept
    # outputs are shared (the lock order: matrix, then image:<tag>, build:..., repo).
    with workspace.locks(say).hold("matrix"):
        def report_image(recipe, state, detail):
            if state == "image":
                say(f"{recipe}: {detail}")

        # made, not smoke-tested: the cells test every image, on every target
        builds = {b.lock.recipe: b for b in build_images(
            workspace, suite, image_names, formats=forms, smoke=False, say=say,
            report=report_image)}
        gpu_builds = {name: b for name, b in zip(gpu_names, build_images(
            workspace, suite, gpu_names, formats=forms, gpu=True, smoke=False, say=say,
            report=report_image) if gpu_names else [])}

        from kernbuild.build import open_repository

        key = open_repository(workspace, suite).key
        for target in wanted_targets:  # SIFs run only with the suite's signature on them
            if not target.unavailable():
                target.trust(key)
        cells = []
        for recipe in chosen:
            for image in recipe.pipeline.images:
                if image not in builds:
                    continue
                images_ = [(builds[image], wanted_targets)]
                if image in gpu_builds:
                    images_.append((gpu_builds[image], [t.with_gpu() for t in wanted_targets]))
                kind = "cwl" if recipe.pipeline.cwl else "steps"
                for build, targets_ in images_:
                    components = suite.components(suite.get(image))
                    cells += [Cell(recipe, build.lock.recipe, target.form, target,
                                   *_image_of(build, target.form), build.lock.tag, components)
                              for target in targets_ if target.workflows == kind]
        state = MatrixState(workspace.state / "matrix" / "results.sqlite")
        scratch = workspace.state / "matrix" / "scratch"
        # What each target prepares once per image (a SIF unpacked and its signature
        # verified, an image loaded into udocker, a chroot made), each target its own
        # images one after another (a target's caches are its own, and most of its work
        # is waiting on apptainer, udocker or mmdebstrap). Here, the workers take up the
        # preparations first and the cells as soon as their own image is ready on their
        # target (:func:`run_side_by_side`): a SIF still being verified for one target
        # holds up no other target's cells. On Slurm, everything is prepared before the
        # jobs are submitted. An image that cannot be made ready (a SIF whose signature
        # does not verify, an image udocker cannot load) fails its cells with the
        # reason; the others go on.
        wanted: dict[str, list[Cell]] = {}  # target -> one cell per image to prepare
        for cell in cells:
            if cell.target.unavailable() or (resume and state.passed(cell.key)):
                continue
            mine = wanted.setdefault(cell.target.name, [])
            if all(c.digest != cell.digest for c in mine):
                mine.append(cell)

        def prepare(cell: Cell) -> str:
            say(f"{cell.target.name}: preparing {cell.image} ({cell.form})")
            try:
                cell.target.prepare(cell.image_ref)
                return ""
            except KernError as exc:
                say(f"{cell.target.name}: cannot prepare {cell.image}: {exc.message}")
                return exc.message

        def finish(result: CellResult) -> CellResult:
            state.record(result)
            report(result, result.status)
            return result

        def run(cell: Cell, unready: str = "") -> CellResult:
            """Run ``cell``, or fail it with why its image is not ready (``unready``)."""
            if unready:
                return finish(cell.result("fail", f"cannot run {cell.image} ({cell.form}): "
                                          f"{unready}"))
            started = time.time()  # its turn: a worker took it up
            report(cell, "running")
            return finish(run_cell(cell, scratch, kept_dir(workspace.state) / cell.key,
                                   started=started))

        results: dict[str, CellResult] = {}
        to_run = []
        for cell in cells:
            stored = state.passed(cell.key) if resume else None
            if stored is not None:
                report(stored, "resumed")
                results[cell.key] = stored
            else:
                to_run.append(cell)
        from kernbuild.matrix.groups import expected_seconds

        expected = expected_seconds(to_run, *state.durations())
        if jobs > 1:  # longest first: no worker is left with a long cell when others end
            to_run.sort(key=lambda c: -expected[c.key])
        if executor != "slurm":
            _, ran = run_side_by_side(list(wanted.values()), to_run, jobs, prepare, run)
            results.update(ran)
        else:
            ready, _ = run_side_by_side(list(wanted.values()), [], jobs, prepare, run)
            # Every cell but those of a runner that submits its own jobs (Toil on its
            # Slurm batch system) or that cannot run here (it is skipped, saying why)
            # is packed into Slurm jobs.
            on_slurm: list[Cell] = []
            here: list[Cell] = []
            for cell in to_run:
                if why := ready.get((cell.target.name, cell.digest)):
                    results[cell.key] = run(cell, why)
                elif cell.target.schedules_on_slurm or cell.target.unavailable():
                    here.append(cell)
                else:
                    on_slurm.append(cell)
            with ThreadPoolExecutor(max_workers=max(1, jobs) + 1) as pool:
                submitted = None
                if on_slurm:
                    submitted = pool.submit(
                        slurm.run_cells, on_slurm, workspace.recipes, workspace.state,
                        slots=max(1, jobs), expected=expected,
                        on_submit=lambda group: [report(c, "queued") for c in group.cells],
                        on_result=finish)
                results.update({c.key: r for c, r in zip(here, pool.map(run, here))})
                if submitted is not None:
                    for result in submitted.result():
                        state.record(result)  # again, now with its job's log
                        results[result.key] = result
        used = {cell.tag for cell in cells}
        locks = [b.lock for b in [*builds.values(), *gpu_builds.values()] if b.lock.tag in used]
        return MatrixRun([results[c.key] for c in cells], locks, kept_dir(workspace.state))


def run_side_by_side(preparations: list[list[Cell]], cells: list[Cell], jobs: int,
                     prepare: Callable[[Cell], str], run: Callable[[Cell, str], CellResult]
                     ) -> tuple[dict[tuple[str, str], str], dict[str, CellResult]]:
    """``jobs`` workers over two kinds of work: the preparations (each a target's
    images, one after another: ``prepare(cell)`` makes the cell's image ready on its
    target and returns "" or why it cannot) and the ``cells``, taken up in their order
    as soon as their own image is ready on their target; ``run(cell, why)`` runs one, or
    fails it with why its image is not ready. A cell whose image is in no preparation is
    ready at once. Returns (what each (target, digest) preparation said, each cell's
    result by key); the first exception a worker meets stops the others and is raised."""
    waiting_for = {(c.target.name, c.digest) for group in preparations for c in group}
    queue = deque(preparations)
    pending = list(cells)
    ready: dict[tuple[str, str], str] = {}
    results: dict[str, CellResult] = {}
    stopped: list[BaseException] = []
    changed = threading.Condition()

    def is_ready(cell: Cell) -> bool:
        pair = (cell.target.name, cell.digest)
        return pair in ready or pair not in waiting_for

    def take() -> list[Cell] | Cell | None:
        with changed:
            while not stopped:
                if queue:
                    return queue.popleft()
                for number, cell in enumerate(pending):
                    if is_ready(cell):
                        return pending.pop(number)
                if not pending:
                    return None
                changed.wait()
            return None

    def work() -> None:
        try:
            while (item := take()) is not None:
                if isinstance(item, list):
                    for cell in item:
                        said = prepare(cell)
                        with changed:
                            ready[cell.target.name, cell.digest] = said
                            changed.notify_all()
                else:
                    result = run(item, ready.get((item.target.name, item.digest), ""))
                    with changed:
                        results[item.key] = result
        except BaseException as exc:
            with changed:
                stopped.append(exc)
                changed.notify_all()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for _ in range(max(1, jobs)):
            pool.submit(work)
    if stopped:
        raise stopped[0]
    return ready, results


def _last_error(output: str) -> str:
    """The line of a CWL runner's log that says what failed: an assert's own verdict
    ("... want (50.00, 52.00) WRONG ...") before the runner's "permanentFail"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for mark in ("WRONG", "permanentFail", "ERROR", "Error", "error"):
        found = [line for line in lines if mark in line]
        if found:
            return found[-1][:300]
    return (lines or ["no output"])[-1][:300]


def _image_of(build: ImageBuild, form: str) -> tuple[str, str]:
    """(ref, digest) of the image ``build`` in ``form``: what a target of that form runs."""
    lock = build.lock
    if form == "docker":
        return lock.image, lock.image
    if form == "sif":
        return lock.sif.path, lock.sif.sha256
    # exact versions name exact bytes: the repository never changes them
    pins = " ".join(f"{p}={v}" for p, v in sorted(lock.packages.items()))
    return pins, hashlib.sha256(pins.encode()).hexdigest()
