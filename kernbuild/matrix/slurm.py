"""The Slurm executor: each matrix cell runs as one Slurm batch job.

The submitting side (:class:`SlurmExecutor`) writes the cell as a small JSON spec
into a directory of its own, submits ``python -m kernbuild.matrix.slurm run-cell
SPEC RESULT`` with ``sbatch``, polls until the job has ended and maps Slurm's
final state to a :class:`CellResult`. The worker side (:func:`run_spec`) rebuilds
the cell from the spec on the compute node (the suite is loaded again from the
recipes directory, the target made afresh), runs it with :func:`run_cell` and
writes the result atomically.

Only a job that COMPLETED and left its result file is taken at its word: any other
final state (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, FAILED, ...) fails the
cell with that state and the job id named, whatever the exit code reads (a job
killed by Slurm often reads 0:0).

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
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from kernbuild.fsutil import atomic_write_json
from kernbuild.matrix import Cell, kept_dir, run_cell
from kernbuild.matrix.state import CellResult
from kernbuild.results import StepResult, from_json, to_json

HINT = "set up a one-node cluster with: bash ci/setup-slurm.sh (as root)"
MARGIN_S = 120  # on top of the steps' timeouts: unpacking a SIF, starting Python
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


def cell_from_spec(spec: dict) -> Cell:
    from kernbuild.recipe import load_suite

    suite = load_suite(Path(spec["recipes"]))
    state = Path(spec["state"])
    target = make_target(spec["target"], suite, Path(spec["recipes"]), state)
    if spec.get("gpu"):
        target = target.with_gpu()
    return Cell(suite.get(spec["pipeline"]), spec["image"], spec["form"], target,
                spec["ref"], spec["digest"], spec.get("tag", ""),
                tuple(spec.get("components", ())))


class _Terminated(Exception):
    """Slurm is ending the job (time limit, scancel): SIGTERM came first."""


def _on_sigterm(signum, frame):
    raise _Terminated(f"signal {signum}")


def run_spec(spec_path: Path, result_path: Path) -> CellResult:
    """Run the cell of ``spec_path``; write its result to ``result_path``."""
    spec = json.loads(Path(spec_path).read_text())
    # Slurm sends SIGTERM (then SIGKILL after KillWait): unwind, so a target's cleanup
    # runs (the Docker target removes its container, which Slurm cannot see).
    signal.signal(signal.SIGTERM, _on_sigterm)
    cell = cell_from_spec(spec)
    state = Path(spec["state"])
    result = run_cell(cell, state / "matrix" / "scratch", kept_dir(state) / cell.key)
    atomic_write_json(Path(result_path), result_to_json(result), durable=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "run-cell":
        print("usage: python -m kernbuild.matrix.slurm run-cell SPEC.json RESULT.json",
              file=sys.stderr)
        return 2
    try:
        result = run_spec(Path(argv[1]), Path(argv[2]))
    except _Terminated as exc:
        print(f"kernbuild: terminated by Slurm ({exc})", file=sys.stderr)
        return 143
    print(f"kernbuild: {result.pipeline} in {result.image} ({result.form}) on "
          f"{result.target}: {result.status} {result.reason}".rstrip())
    return 0  # the cell's own pass/fail is in the result file


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


def result_of_job(cell: Cell, job_id: str, slurm_state: str, exit_code: str,
                  result_file: Path, log: str, seconds: float) -> CellResult:
    """The cell's result from the job's final state (and its result file)."""
    slurm_step = StepResult(f"job {job_id}", 1, log[-LOG_TAIL:], seconds, phase="slurm",
                            name=f"job {job_id}")
    state = slurm_state.split()[0] if slurm_state else "UNKNOWN"
    state = state.rstrip("+")
    if state == "COMPLETED":
        try:
            result = result_from_json(json.loads(result_file.read_text()))
        except FileNotFoundError:
            return cell.result("fail", f"Slurm job {job_id} COMPLETED (exit {exit_code}) "
                               "but wrote no result file", seconds, [slurm_step])
        except (ValueError, TypeError) as exc:
            return cell.result("fail", f"Slurm job {job_id} COMPLETED but its result file "
                               f"is unreadable: {exc}", seconds, [slurm_step])
        result.steps.append(replace(slurm_step, exit_code=0))
        return result
    slurm_step = replace(slurm_step, timed_out=state in ("TIMEOUT", "DEADLINE"))
    reason = f"Slurm job {job_id} ended {state} (exit code {exit_code})"
    if state != "OUT_OF_MEMORY" and any(mark in log for mark in OOM_MARKS):
        # without cgroups, slurmstepd's own memory check kills the job: it reads FAILED
        reason += ": OUT_OF_MEMORY, it exceeded its memory limit (--mem)"
    return cell.result("fail", reason, seconds, [slurm_step])


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

    # -- running a cell

    def time_limit(self, cell: Cell) -> int:
        """Minutes: every step's timeout plus a margin."""
        return minutes(sum(step.timeout for _, step in cell.pipeline.pipeline.all_steps)
                       + MARGIN_S)

    def submit(self, cell: Cell, recipes: Path, state: Path) -> tuple[str, Path, Path]:
        """Write the spec and submit the job; (job id, result file, slurm.out)."""
        directory = Path(tempfile.mkdtemp(prefix=f"{cell.pipeline.name}-",
                                          dir=self._cell_root(cell)))
        spec, result, output = (directory / "spec.json", directory / "result.json",
                                directory / "slurm.out")
        atomic_write_json(spec, cell_spec(cell, recipes, state), durable=True)
        wrap = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "kernbuild.matrix.slurm",
                                                  "run-cell", str(spec), str(result)))
        command = ["sbatch", "--parsable", f"--job-name=kern-{cell.pipeline.name}",
                   f"--output={output}", f"--chdir={directory}",
                   f"--time={self.time_limit(cell)}", *self.slurm_args, "--wrap", wrap]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        return job_id, result, output

    def _cell_root(self, cell: Cell) -> Path:
        root = self.work / cell.key
        root.mkdir(parents=True, exist_ok=True)
        return root

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

    def wait(self, job_id: str) -> tuple[str, str]:
        """Poll until the job has ended; its (final state, exit code)."""
        unknown_since = None
        while True:
            found = self.job_state(job_id)
            if found is not None:
                unknown_since = None
                state = found[0].split()[0].rstrip("+")
                if state in END_STATES:
                    return found
            else:
                unknown_since = unknown_since or time.monotonic()
                if time.monotonic() - unknown_since > 60:
                    return "UNKNOWN", "?"
            time.sleep(self.poll)

    def cancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)

    def run(self, cell: Cell, recipes: Path, state: Path) -> CellResult:
        """Run ``cell`` as a Slurm job and return its result."""
        started = time.monotonic()
        try:
            job_id, result_file, output = self.submit(cell, recipes, state)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            return cell.result("fail", f"could not submit to Slurm: {exc}",
                               time.monotonic() - started)
        # A job outlives no kernbuild: cancelled if this process is ended (SIGTERM, ^C)
        # while it waits, as well as when the wait itself is interrupted.
        from kernbuild.runtime.docker import GUARD

        stop = GUARD.on_stop(lambda: self.cancel(job_id))
        try:
            slurm_state, exit_code = self.wait(job_id)
        except BaseException:
            self.cancel(job_id)  # interrupted: leave no job behind
            raise
        finally:
            GUARD.forget(stop)
        try:
            log = output.read_text(errors="replace")
        except OSError:
            log = ""
        return result_of_job(cell, job_id, slurm_state, exit_code, result_file, log,
                             time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
