"""The programs kernbuild runs, where they are, and the one way to run them.

:data:`TOOLS` is the table ``kernbuild doctor`` reports and every call site
looks programs up in: :func:`require` finds one or fails with the Debian
package to install. :func:`run_tool` runs a program to completion (never
through a shell) and turns its failure into a :class:`KernError` carrying the
tail of what it said, as debspawn's ``safe_run`` does; a full disk is named as
such. :func:`run_step` runs a command as a workflow step: its exit status is an
answer, not an error, and a step past its timeout is killed with everything it
started.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.fsutil import no_space
from kernbuild.results import StepResult

# Root's tools (runc, dockerd) live in sbin directories that a user's PATH often lacks.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
TAIL_LINES = 15  # lines of a failed tool's output kept in its error


@dataclass(frozen=True)
class Tool:
    """A program kernbuild runs: any of ``programs`` (or the Python module ``module``)."""

    name: str
    programs: tuple[str, ...]
    install: str  # how to get it
    needed_for: str
    required: bool  # False: only one target or image format needs it
    module: str = ""


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("mmdebstrap", ("mmdebstrap",), "apt-get install mmdebstrap",
         "base images made from scratch", True),
    Tool("apt-ftparchive", ("apt-ftparchive",), "apt-get install apt-utils",
         "the apt repository's indices", True),
    Tool("gpg", ("gpg",), "apt-get install gpg", "signing the apt repository", True),
    Tool("gpgconf", ("gpgconf",), "apt-get install gpgconf",
         "gpg-agent's sockets, for a state directory deep in a temporary tree", False),
    Tool("gpgv", ("gpgv",), "apt-get install gpgv",
         "checking Debian's signed source indices", True),
    Tool("dpkg-deb", ("dpkg-deb",), "apt-get install dpkg", "reading the built packages", True),
    Tool("mksquashfs", ("mksquashfs",), "apt-get install squashfs-tools",
         "SIF images where apptainer is not installed", False),
    Tool("unsquashfs", ("unsquashfs",), "apt-get install squashfs-tools",
         "opening SIF images to test them", False),
    Tool("siftool", ("siftool",), "apt-get install siftool",
         "SIF images where apptainer is not installed", False),
    Tool("bwrap", ("bwrap",), "apt-get install bubblewrap",
         "the sif-bwrap and native test targets", False),
    Tool("apptainer", ("apptainer", "singularity"), "install apptainer",
         "the apptainer test target (sif-bwrap stands in without it)", False),
    Tool("udocker", ("udocker",), "pip install udocker", "the udocker test target", False,
         "udocker"),
    Tool("runc", ("runc",), "apt-get install runc", "the udocker test target (mode R1)", False),
    Tool("cwltool", ("cwltool",), "pip install '.[cwl]' (bash ci/setup-python.sh)",
         "the cwltool targets: CWL pipelines", False),
    Tool("toil-cwl-runner", ("toil-cwl-runner",), "pip install '.[cwl]' (bash ci/setup-python.sh)",
         "the toil targets: CWL pipelines", False),
    Tool("sbatch", ("sbatch",), "apt-get install slurm-wlm",
         "the slurm executor (kernbuild test --executor slurm)", False),
)}


def locate(tool: Tool | str) -> str | None:
    """Where ``tool`` is: a program on PATH, beside this Python (a virtual environment's
    bin, where ``pip install '.[cwl]'`` puts cwltool and Toil, need not be on PATH) or in
    an sbin directory; or its Python module."""
    tool = TOOLS[tool] if isinstance(tool, str) else tool
    search = os.pathsep.join([os.environ.get("PATH", os.defpath),
                              str(Path(sys.executable).parent), *SBIN])
    for program in tool.programs:
        if found := shutil.which(program, path=search):
            return found
    if tool.module and importlib.util.find_spec(tool.module) is not None:
        return f"python module {tool.module}"
    return None


def require(name: str, why: str = "") -> str:
    """The path of the program ``name`` of :data:`TOOLS`, or a KernError saying how to
    install it (and, with ``why``, what kernbuild needs it for here)."""
    tool = TOOLS[name]
    found = locate(tool)
    if found is None or found.startswith("python module"):
        raise KernError(f"{tool.programs[0]} is not installed; kernbuild needs it for "
                        f"{why or tool.needed_for}", f"install it: {tool.install}")
    return found


def first_error(text: str) -> str:
    """The line of a tool's output most worth showing: its first error, else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "fatal", "e:"))]
    return (errors or lines or ["no message"])[0]


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_kernbuild() -> None:
    """In the child, before exec: have the kernel SIGKILL it when the thread that started
    it ends, SIGKILLed kernbuild included (``PR_SET_PDEATHSIG``; Linux). A SIGKILL leaves
    kernbuild no time to stop what it runs, and a workflow runner or a tool left behind
    would go on writing into the state. Only for children waited for by the thread that
    started them, as every one here is, since the signal follows that thread."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_tool(args: list[str], *, what: str = "", hint: str = "", where: Path | None = None,
             cwd: Path | None = None, env: dict[str, str] | None = None,
             input: bytes | None = None, timeout: float | None = None) -> bytes:
    """Run ``args`` to completion; its stdout, or a KernError.

    The error says ``what`` failed (default: the program) with its exit status and the
    last lines it printed; "no space left on device" becomes the full-disk error of
    ``where`` (default ``cwd``). A tool past ``timeout`` seconds is killed and reported.
    """
    label = what or Path(args[0]).name
    try:
        done = subprocess.run(args, cwd=cwd, env=env, input=input, capture_output=True,
                              timeout=timeout, check=False, preexec_fn=_die_with_kernbuild,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise KernError(f"{label} did not finish within {timeout:g} s",
                        hint or "is the machine overloaded, or the network down?") from None
    except OSError as exc:
        raise KernError(f"{label} cannot run: {exc.strerror}", hint) from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").strip()
        if "no space left on device" in said.lower():
            raise no_space(where or cwd or Path.cwd())
        tail = "\n".join(said.splitlines()[-TAIL_LINES:]) or "no message"
        raise KernError(f"{label} failed (exit status {done.returncode}): {tail}", hint)
    boundary(f"tool:{label}")
    return done.stdout


def run_step(args: list[str], *, label: str, timeout: float, env: dict[str, str] | None = None,
             cwd: str | None = None) -> StepResult:
    """Run ``args`` as one workflow step: stdout and stderr together, stdin empty.

    Past ``timeout`` seconds the step's whole process group is killed (it may have
    started others) and the result is exit status 124 with ``timed_out``, as
    timeout(1) reports it; a program that cannot start at all is exit status 125."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   preexec_fn=_die_with_kernbuild,
                                   start_new_session=True)
    except OSError as exc:
        return StepResult(label, 125, f"[kernbuild] cannot run {args[0]}: {exc.strerror}\n",
                          time.monotonic() - started)
    # Its own session, so a timeout kills all it started; and so a kernbuild that is
    # ended (SIGTERM, ^C) must end the step's group too: a workflow runner outlives it.
    from kernbuild.runtime.docker import GUARD

    def kill_group(number: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            pass

    stop = GUARD.on_stop(lambda: kill_group(signal.SIGTERM))
    try:
        output, _ = process.communicate(timeout=timeout)
        code, timed_out = process.returncode, False
    except subprocess.TimeoutExpired:
        kill_group()
        output, _ = process.communicate()
        output += f"\n[kernbuild] killed after {timeout:g} s\n".encode()
        code, timed_out = 124, True
    finally:
        GUARD.forget(stop)
    boundary(f"step:{label}")
    return StepResult(label, code, output.decode("utf-8", "replace"),
                      time.monotonic() - started, timed_out)
