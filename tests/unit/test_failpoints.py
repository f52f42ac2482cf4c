"""Step boundaries where the kill-trial test stops kernbuild: traced, then killed at one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from kernbuild.failpoints import KILL_AT, TRACE

# Three boundaries, then a child process that would cross its own if it saw the variables.
PROGRAM = """
import subprocess, sys
from kernbuild.failpoints import boundary
boundary("commit:first")
boundary("container:build")
subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('KERNBUILD_FAILPOINT'),"
                " os.environ.get('KERNBUILD_FAILPOINT_TRACE'))"])
boundary("commit:last")
print("ran to the end")
"""


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), **env})


def test_a_trace_lists_every_boundary_in_order_and_children_see_nothing(tmp_path):
    trace = tmp_path / "trace"
    done = run({TRACE: str(trace)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["None None", "ran to the end"]
    assert trace.read_text().splitlines() == [
        "1 commit:first", "2 container:build", "3 commit:last"]


def test_the_nth_boundary_is_a_sigkill(tmp_path):
    trace = tmp_path / "trace"
    killed = run({KILL_AT: "2", TRACE: str(trace)})
    assert killed.returncode == -signal.SIGKILL
    assert "ran to the end" not in killed.stdout
    assert trace.read_text().splitlines() == ["1 commit:first", "2 container:build"]


def test_without_the_variables_nothing_happens():
    done = run({KILL_AT: "not a number"})
    assert done.returncode == 0 and "ran to the end" in done.stdout, done.stderr
