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

A runner that schedules its own jobs is not wrapped in one: Toil's cells run on the
submitting host with ``--batchSystem slurm`` (:meth:`Runner.on_slurm`), and Toil
submits each CWL step as a Slurm job of its own.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
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

HINT = "set up a one-node cluster with: bash ci/setup-slurm.sh (as root)"
MARGIN_S = 120  # on top of the cells' own timeouts: starting Python, a SIF unpacked
END_STATES = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
              "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
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


def parse_fields(text: str) -> dict[str, str]:
    """``Key=Value Key=Value`` (one line of ``scontrol show job -o``) as a dict."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def minutes(seconds: float) -> int:
    return max(1, -(-int(seconds) // 60))


def final_state(slurm_state: str) -> str:
    """The state word of sacct's or scontrol's answer: "CANCELLED by 0" is CANCELLED,
    "COMPLETED+" (still being written) is COMPLETED."""
    return (slurm_state.split()[0] if slurm_state.strip() else "UNKNOWN").rstrip("+")


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


def owner_comment(state: Path) -> str:
    """The ``--comment`` of a job this process submits for ``state``: whose it is (the
    labels its containers carry), so that a later run can tell a killed run's jobs."""
    from kernbuild.runtime.docker import HOST, OWNER, PID, STARTED, container_labels

    labels = container_labels(state=state)
    return "kernbuild " + " ".join(f"{field}={labels[label]}" for field, label in (
        ("owner", OWNER), ("pid", PID), ("host", HOST), ("started", STARTED)))


def dead_owner(comment: str, state: Path) -> int | None:
    """The pid of the kernbuild run on ``state`` that submitted a job with ``comment``
    (:func:`owner_comment`), if that run has ended on this host; else None."""
    from kernbuild.locks import process_alive
    from kernbuild.runtime.docker import owner_id

    words = comment.split()
    if not words or words[0] != "kernbuild":
        return None
    fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    try:
        pid, started = int(fields["pid"]), float(fields["started"])
    except (KeyError, ValueError):
        return None
    if (fields.get("owner") != owner_id(state) or fields.get("host") != socket.gethostname()
            or process_alive(pid, started_before=started)):
        return None
    return pid


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


class SlurmExecutor:
    """Runs matrix cells as Slurm batch jobs; safe to call from several threads."""

    def __init__(self, work: Path, slurm_args: list[str] | None = None,
                 poll: float = 1.0) -> None:
        self.work = Path(work)
        self.slurm_args = list(slurm_args or [])
        self.poll = poll

    # -- availability

    def unavailable(self) -> str:
        """Why cells cannot be submitted here, or "" if they can."""
        for program in ("sbatch", "squeue", "scontrol", "sinfo"):
            if shutil.which(program) is None:
                return f"{program} is not installed (no Slurm client); {HINT}"
        try:
            done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                  timeout=30)
        except subprocess.TimeoutExpired:
            return f"sinfo did not answer within 30 s (is slurmctld running?); {HINT}"
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            last = why[-1] if why else f"exit {done.returncode}"
            return f"no Slurm controller answers (sinfo: {last}); {HINT}"
        if not done.stdout.strip():
            return f"Slurm has no nodes in any partition; {HINT}"
        return ""

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
        wrap = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "kernbuild.matrix.slurm",
                                                  "run-group", str(spec), str(job.results)))
        name = cells[0].pipeline.name if len(cells) == 1 else f"{len(cells)}-cells"
        command = ["sbatch", "--parsable", f"--job-name=kern-{name}",
                   f"--output={job.output}", f"--chdir={directory}",
                   f"--comment={owner_comment(state)}",
                   f"--time={self.time_limit(cells)}", *self.slurm_args, "--wrap", wrap]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        return replace(job, job_id=job_id)

    def reap(self, state: Path, say: Callable[[str], None] = lambda _: None) -> list[str]:
        """Cancel the jobs that kernbuild runs on ``state`` submitted and did not outlive
        (they were SIGKILLed: no time to scancel); a live run's jobs are left alone.
        The ids cancelled."""
        try:
            listed = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True,
                                    text=True, timeout=60).stdout
        except (subprocess.TimeoutExpired, OSError):
            return []  # a slow controller: the next run looks again
        dead: dict[str, int] = {}
        for line in listed.splitlines():
            job_id, _, comment = line.strip().partition("|")
            pid = dead_owner(comment, state)
            if job_id.isdigit() and pid is not None:
                dead[job_id] = pid
        for job_id in dead:
            self.cancel(job_id)
        if dead:
            pids = ", ".join(str(p) for p in sorted(set(dead.values())))
            say(f"reaped {len(dead)} Slurm job{'s' if len(dead) > 1 else ''} left by killed "
                f"kernbuild runs (pids {pids})")
        return sorted(dead)

    def job_state(self, job_id: str) -> tuple[str, str] | None:
        """(state, exit code) of the job, or None while Slurm does not know it (yet)."""
        try:
            return self._job_state(job_id)
        except (subprocess.TimeoutExpired, OSError):  # a slow controller: ask again later
            return None

    def _job_state(self, job_id: str) -> tuple[str, str] | None:
        done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                              text=True, timeout=60)
        if done.returncode == 0 and "JobState=" in done.stdout:
            fields = parse_fields(done.stdout)
            return fields.get("JobState", "UNKNOWN"), fields.get("ExitCode", "?")
        # Past MinJobAge the controller forgets the job: ask accounting, then the
        # job completion log.
        done = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and done.stdout.strip():
            state, _, code = done.stdout.strip().splitlines()[0].partition("|")
            return state, code
        return self._from_jobcomp(job_id)

    @staticmethod
    def _from_jobcomp(job_id: str) -> tuple[str, str] | None:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                              timeout=60)
        match = re.search(r"^JobCompLoc\s*=\s*(\S+)", done.stdout, re.MULTILINE)
        if not match or not Path(match.group(1)).is_file():
            return None
        found = None
        for line in Path(match.group(1)).read_text(errors="replace").splitlines():
            fields = parse_fields(line)
            if fields.get("JobId") == job_id:
                found = fields.get("JobState", "UNKNOWN"), fields.get("ExitCode", "?")
        return found

    def wait(self, job_id: str, on_poll: Callable[[], None] = lambda: None) -> tuple[str, str]:
        """Poll until the job has ended, calling ``on_poll`` each time; its (final state,
        exit code)."""
        unknown_since = None
        while True:
            on_poll()
            found = self.job_state(job_id)
            if found is not None:
                unknown_since = None
                if final_state(found[0]) in END_STATES:
                    return found
            else:
                unknown_since = unknown_since or time.monotonic()
                if time.monotonic() - unknown_since > 60:
                    return "UNKNOWN", "?"
            time.sleep(self.poll)

    def cancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)

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

        # A job outlives no kernbuild: cancelled if this process is ended (SIGTERM, ^C)
        # while it waits, as well as when the wait itself is interrupted.
        from kernbuild.runtime.docker import GUARD

        stop = GUARD.on_stop(lambda: self.cancel(job.job_id))
        try:
            slurm_state, exit_code = self.wait(job.job_id, collect)
        except BaseException:
            self.cancel(job.job_id)  # interrupted: leave no job behind
            raise
        finally:
            GUARD.forget(stop)
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
