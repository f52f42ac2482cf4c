"""The Slurm executor: matrix cells packed into Slurm batch jobs, each cell its own result.

A matrix cell takes seconds and a Slurm job costs seconds, so the cells are packed
into a few jobs (:mod:`kernbuild.matrix.groups`: as many as ``--jobs`` allows and the
work fills, balanced by what each cell took last time). The submitting side
(:class:`SlurmExecutor`) writes a job's cells as JSON specs into a directory of its
own, submits ``python -m kernbuild.matrix.slurm run-group GROUP RESULTS`` with
``sbatch`` and polls until the job has ended. The worker (:func:`run_group`) loads the
suite once, runs the cells one after another with :func:`run_cell` (each with its own
scratch directory and step timeouts) and writes each cell's result, atomically, as
soon as that cell has finished; the submitting side records each as it appears, so a
job that dies later loses none that finished.

Slurm's accounting decides the rest: a cell the job left unfinished (it never started
or was cut short) fails with the job's final state and id (TIMEOUT, NODE_FAIL,
OUT_OF_MEMORY, CANCELLED, ...), whatever the exit code reads (a job killed by Slurm
often reads 0:0), and ``--resume`` reruns exactly those. A cell that failed in a job
that ran out of memory says so too.

Submitting, polling, accounting and reaping are :mod:`kernbuild.runtime.slurm`'s, shared
with the package builds' executor. A runner that schedules its own jobs is not wrapped
in one: Toil's cells run on the submitting host with ``--batchSystem slurm``
(:meth:`Runner.on_slurm`), and Toil submits each CWL step as a Slurm job of its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from kernbuild.fsutil import atomic_write_json
from kernbuild.matrix import Cell, cell_timeout, kept_dir, run_cell
from kernbuild.matrix.groups import CellGroup, plan_groups
from kernbuild.matrix.state import CellResult
from kernbuild.results import StepResult, from_json, to_json
from kernbuild.runtime.slurm import SlurmCluster, final_state, minutes

MARGIN_S = 120  # on top of the cells' own timeouts: starting Python, a SIF unpacked
OOM_MARKS = ("Exceeded job memory limit", "exceeded memory limit", "oom-kill")
LOG_TAIL = 20_000  # characters of slurm.out kept in the cell's log


# --- the spec: a cell as JSON -------------------------------------------------------


def cell_spec(cell: Cell, recipes: Path, state: Path) -> dict:
    """What the worker needs to rebuild ``cell`` on a compute node."""
    return {"recipes": str(Path(recipes).resolve()), "state": str(Path(state).resolve()),
            "pipeline": cell.pipeline.name, "image": cell.image, "form": cell.form,
            "target": cell.target.name, "gpu": cell.gpu, "ref": cell.ref,
            "digest": cell.digest, "tag": cell.tag, "components": list(cell.components)}


def result_to_json(result: CellResult) -> dict:
    return to_json(result)


def result_from_json(data: dict) -> CellResult:
    data = dict(data)
    data["steps"] = [from_json(StepResult, s) for s in data.get("steps", [])]
    return CellResult(**data)


# --- the worker: runs on the compute node -------------------------------------------


def make_target(name: str, suite, recipes: Path, state: Path):
    """The target ``name`` from the runtime layer's registry, made afresh in this process."""
    from kernbuild.runtime import RuntimeContext, make_runner
    from kernbuild.workspace import Workspace

    return make_runner(name, RuntimeContext.for_workspace(Workspace(recipes, state),
                                                          suite.settings))


def cell_from_spec(spec: dict, suites: dict | None = None,
                   targets: dict | None = None) -> Cell:
    """The cell of ``spec``. ``suites`` and ``targets`` cache the suite and each target
    across a job's cells: loaded once, and a target's per-process pool (udocker's
    containers) reused from one cell to the next."""
    from kernbuild.recipe import load_suite

    suites = {} if suites is None else suites
    targets = {} if targets is None else targets
    recipes, state = Path(spec["recipes"]), Path(spec["state"])
    if spec["recipes"] not in suites:
        suites[spec["recipes"]] = load_suite(recipes)
    suite = suites[spec["recipes"]]
    made = (spec["recipes"], spec["state"], spec["target"], bool(spec.get("gpu")))
    if made not in targets:
        target = make_target(spec["target"], suite, recipes, state)
        targets[made] = target.with_gpu() if spec.get("gpu") else target
    return Cell(suite.get(spec["pipeline"]), spec["image"], spec["form"], targets[made],
                spec["ref"], spec["digest"], spec.get("tag", ""),
                tuple(spec.get("components", ())))


class _Terminated(Exception):
    """Slurm is ending the job (time limit, scancel): SIGTERM came first."""


def _on_sigterm(signum, frame):
    raise _Terminated(f"signal {signum}")


def result_file(results: Path, key: str) -> Path:
    """Where the worker writes the result of the cell ``key``."""
    return Path(results) / f"{key}.json"


def run_group(group_path: Path, results: Path) -> list[CellResult]:
    """Run the cells of the job spec ``group_path`` one after another, writing each
    one's result to ``results/<key>.json`` as soon as it has finished."""
    spec = json.loads(Path(group_path).read_text())
    # Slurm sends SIGTERM (then SIGKILL after KillWait): unwind, so a target's cleanup
    # runs (the Docker target removes its container, which Slurm cannot see).
    signal.signal(signal.SIGTERM, _on_sigterm)
    suites: dict = {}
    targets: dict = {}
    turn = float(spec.get("submitted") or time.time())  # the first cell's turn: submission
    done = []
    for number, cell_spec_ in enumerate(spec["cells"], 1):
        cell = cell_from_spec(cell_spec_, suites, targets)
        state = Path(cell_spec_["state"])
        result = run_cell(cell, state / "matrix" / "scratch", kept_dir(state) / cell.key,
                          started=turn)
        atomic_write_json(result_file(results, cell.key), result_to_json(result), durable=True)
        print(f"kernbuild: cell {number}/{len(spec['cells'])}: {result.pipeline} in "
              f"{result.image} ({result.form}) on {result.target}: {result.status} "
              f"{result.reason}".rstrip(), flush=True)
        done.append(result)
        turn = time.time()
    return done


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "run-group":
        print("usage: python -m kernbuild.matrix.slurm run-group GROUP.json RESULTS_DIR",
              file=sys.stderr)
        return 2
    try:
        run_group(Path(argv[1]), Path(argv[2]))
    except _Terminated as exc:
        print(f"kernbuild: terminated by Slurm ({exc})", file=sys.stderr)
        return 143
    return 0  # each cell's own pass/fail is in its result file


# --- the submitting side ------------------------------------------------------------


def result_of_job(cell: Cell, job_id: str, slurm_state: str, exit_code: str,
                  result_file: Path, log: str, seconds: float) -> CellResult:
    """The cell's result once its job has ended: the one the worker wrote when the cell
    finished, if it did (whatever became of the job later), with the job attached as
    a last "slurm" step; else a failure naming the job's final state."""
    state = final_state(slurm_state)
    oom = state == "OUT_OF_MEMORY" or any(mark in log for mark in OOM_MARKS)
    slurm_step = StepResult(f"job {job_id}", 1, log[-LOG_TAIL:], seconds, phase="slurm",
                            name=f"job {job_id}")
    try:
        result = result_from_json(json.loads(result_file.read_text()))
    except FileNotFoundError:
        result = None
    except (ValueError, TypeError) as exc:
        return cell.result("fail", f"Slurm job {job_id} ended {state} but the cell's result "
                           f"file is unreadable: {exc}", seconds, [slurm_step])
    if result is not None:  # the cell finished in the job
        result.steps.append(replace(slurm_step, exit_code=0))
        if result.status == "fail" and oom and state != "COMPLETED":
            result.reason += f"; its Slurm job {job_id} ended {state}: OUT_OF_MEMORY"
        return result
    if state == "COMPLETED":
        return cell.result("fail", f"Slurm job {job_id} COMPLETED (exit {exit_code}) "
                           "but wrote no result for this cell", seconds, [slurm_step])
    slurm_step = replace(slurm_step, timed_out=state in ("TIMEOUT", "DEADLINE"))
    reason = f"Slurm job {job_id} ended {state} (exit code {exit_code})"
    if state != "OUT_OF_MEMORY" and oom:
        # without cgroups, slurmstepd's own memory check kills the job: it reads FAILED
        reason += ": OUT_OF_MEMORY, it exceeded its memory limit (--mem)"
    return cell.result("fail", reason, seconds, [slurm_step])


@dataclass(frozen=True)
class SubmittedJob:
    """A job sbatch accepted: its id and directory (``group.json``, ``results/``,
    ``slurm.out``)."""

    job_id: str
    directory: Path

    @property
    def results(self) -> Path:
        return self.directory / "results"

    @property
    def output(self) -> Path:
        return self.directory / "slurm.out"


class SlurmExecutor(SlurmCluster):
    """Runs matrix cells as Slurm batch jobs, each job's files in a directory under
    ``work``; safe to call from several threads."""

    def __init__(self, work: Path, slurm_args: list[str] | None = None,
                 poll: float = 1.0) -> None:
        super().__init__(slurm_args, poll)
        self.work = Path(work)

    # -- running cells

    def time_limit(self, cells: Sequence[Cell]) -> int:
        """Minutes: the cells' own timeouts, summed, plus a margin; a ``--time`` in the
        caller's sbatch arguments comes after it and wins."""
        return minutes(sum(cell_timeout(c) for c in cells) + MARGIN_S)

    def submit(self, cells: Sequence[Cell], recipes: Path, state: Path) -> SubmittedJob:
        """Write the job's spec and submit it."""
        self.work.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="job-", dir=self.work))
        job = SubmittedJob("", directory)
        job.results.mkdir()
        spec = directory / "group.json"
        atomic_write_json(spec, {"submitted": time.time(),
                                 "cells": [cell_spec(c, recipes, state) for c in cells]},
                          durable=True)
        name = cells[0].pipeline.name if len(cells) == 1 else f"{len(cells)}-cells"
        job_id = self.sbatch(
            [sys.executable, "-m", "kernbuild.matrix.slurm", "run-group", spec, job.results],
            name=f"kern-{name}", output=job.output, directory=directory, state=state,
            time_limit=self.time_limit(cells))
        return replace(job, job_id=job_id)

    def run_group(self, cells: Sequence[Cell], recipes: Path, state: Path,
                  on_result: Callable[[CellResult], None] = lambda _: None
                  ) -> list[CellResult]:
        """Run ``cells`` one after another in one Slurm job; their results, in order.
        ``on_result`` gets each cell's result as soon as the worker has written it (then
        the job's log is not known yet: its "slurm" step says so); a cell the job left
        unfinished is failed with the job's final state."""
        started = time.monotonic()
        try:
            job = self.submit(cells, recipes, state)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            failed = [c.result("fail", f"could not submit to Slurm: {exc}",
                               time.monotonic() - started) for c in cells]
            for result in failed:
                on_result(result)
            return failed
        finished: dict[str, CellResult] = {}

        def collect() -> None:  # the cells whose results the worker has written
            for cell in cells:
                if cell.key not in finished and result_file(job.results, cell.key).exists():
                    finished[cell.key] = result_of_job(
                        cell, job.job_id, "RUNNING", "", result_file(job.results, cell.key),
                        f"(cell finished; job {job.job_id} still running)",
                        time.monotonic() - started)
                    on_result(finished[cell.key])

        slurm_state, exit_code = self.watch(job.job_id, collect)
        try:
            log = job.output.read_text(errors="replace")
        except OSError:
            log = ""
        seconds = time.monotonic() - started
        results = []
        for cell in cells:
            result = result_of_job(cell, job.job_id, slurm_state, exit_code,
                                   result_file(job.results, cell.key), log, seconds)
            if cell.key not in finished:
                on_result(result)
            results.append(result)
        return results

    def run(self, cell: Cell, recipes: Path, state: Path) -> CellResult:
        """Run ``cell`` as a Slurm job of its own and return its result."""
        return self.run_group([cell], recipes, state)[0]

    def run_cells(self, cells: Sequence[Cell], recipes: Path, state: Path, *, slots: int,
                  expected: dict[str, float],
                  on_submit: Callable[[CellGroup], None] = lambda _: None,
                  on_result: Callable[[CellResult], None] = lambda _: None
                  ) -> list[CellResult]:
        """Run ``cells`` in at most ``slots`` Slurm jobs at once, packed by their
        ``expected`` seconds (:func:`~kernbuild.matrix.groups.plan_groups`); their
        results, in the order of ``cells``."""
        groups = plan_groups(cells, expected, slots)
        if not groups:
            return []

        def run(group: CellGroup) -> list[CellResult]:
            on_submit(group)
            return self.run_group(group.cells, recipes, state, on_result)

        by_key: dict[str, CellResult] = {}
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            for group, results in zip(groups, pool.map(run, groups)):
                by_key.update({c.key: r for c, r in zip(group.cells, results)})
        return [by_key[c.key] for c in cells]


if __name__ == "__main__":
    sys.exit(main())
