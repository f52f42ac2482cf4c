"""Slurm, as kernbuild uses it: jobs submitted with ``sbatch --wrap``, polled until they
end, their final state from the controller or accounting, cancelled with their submitter.

Shared by the matrix's executor (:mod:`kernbuild.matrix.slurm`: cells packed into jobs)
and the package builds' (:mod:`kernbuild.build.slurm`: a recipe per job). A job carries
its submitter in ``--comment`` (:func:`owner_comment`), so that a later run on the same
state cancels what a SIGKILLed one left queued (:meth:`SlurmCluster.reap`), and a job
outlives no kernbuild that waits on it (:meth:`SlurmCluster.watch`).
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

HINT = "set up a one-node cluster with: bash ci/setup-slurm.sh (as root)"
END_STATES = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
              "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


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


class SlurmCluster:
    """The Slurm cluster the client commands on this host talk to; ``slurm_args`` go to
    every ``sbatch`` after kernbuild's own (so a ``--time`` there wins). Safe to use from
    several threads."""

    def __init__(self, slurm_args: list[str] | None = None, poll: float = 1.0) -> None:
        self.slurm_args = list(slurm_args or [])
        self.poll = poll

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

    def sbatch(self, command: Sequence[str], *, name: str, output: Path, directory: Path,
               state: Path, time_limit: int) -> str:
        """Submit ``command`` as a batch job (stdout and stderr to ``output``, run in
        ``directory``, ``time_limit`` minutes) on behalf of a run on ``state``; its id.
        Raises RuntimeError when sbatch refuses it."""
        wrap = " ".join(shlex.quote(str(a)) for a in command)
        done = subprocess.run(
            ["sbatch", "--parsable", f"--job-name={name}", f"--output={output}",
             f"--chdir={directory}", f"--comment={owner_comment(state)}",
             f"--time={time_limit}", *self.slurm_args, "--wrap", wrap],
            capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        return job_id

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

    def watch(self, job_id: str, on_poll: Callable[[], None] = lambda: None) -> tuple[str, str]:
        """:meth:`wait` for the job, cancelling it if this process is ended (SIGTERM, ^C)
        or the wait interrupted meanwhile: a job outlives no kernbuild."""
        from kernbuild.runtime.docker import GUARD

        stop = GUARD.on_stop(lambda: self.cancel(job_id))
        try:
            return self.wait(job_id, on_poll)
        except BaseException:
            self.cancel(job_id)
            raise
        finally:
            GUARD.forget(stop)
