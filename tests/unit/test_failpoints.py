"""Step boundaries where the kill-trial test stops kernbuild: traced, then killed at one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
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


# A kernbuild that starts a step and a tool (each writes its pid, then becomes a long
# sleep) from threads that wait on them, as the matrix's threads do; prints its pid.
STARTS = """
import threading
from kernbuild.runtime.tools import run_step, run_tool
script = "echo $$ > {out}/%s.tmp && mv {out}/%s.tmp {out}/%s && exec sleep 300"
threading.Thread(target=run_step, args=(["sh", "-c", script % (("step",) * 3)],),
                 kwargs={"label": "hold", "timeout": 600}).start()
threading.Thread(target=run_tool, args=(["sh", "-c", script % (("tool",) * 3)],)).start()
threading.Event().wait()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, only not reaped yet
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_what_kernbuild_runs_dies_with_it_even_by_sigkill(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", STARTS.replace("{out}", str(tmp_path))],
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())})
    written = [tmp_path / "step", tmp_path / "tool"]
    deadline = time.monotonic() + 60  # a safety net: the two start in well under a second
    while not all(p.exists() for p in written) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(p.read_text()) for p in written]
    assert all(_alive(pid) for pid in children)
    parent.kill()  # SIGKILL: no handler runs, kernbuild stops nothing itself
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if _alive(pid)] == []
