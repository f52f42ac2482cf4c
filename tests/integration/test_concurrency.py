"""Several kernbuild commands on one state directory, and commands killed mid-build:
real processes on a real Docker engine.

katversion is the smallest recipe that builds a real package (pybuild, one .deb).
Timeouts are safety nets that make a regression fail instead of hang; no test
measures a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
import pytest

from kernbuild.runtime.docker import OWNER, PID, owner_id
from tests.integration.conftest import Suite
from tests.integration.test_package import install

pytestmark = pytest.mark.docker

SAFETY = 600  # seconds: reached only when something hangs


@pytest.fixture
def start(suite: Suite):
    """Start kernbuild commands on ``suite`` in the background; any still running at the
    end of the test (it failed) is stopped, with SIGTERM so that it removes its containers."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "kernbuild.cli", "--recipes", str(suite.recipes),
             "--state", str(suite.state), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})})
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=SAFETY)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=SAFETY)
    return process.returncode, stdout, stderr


def containers(docker_engine, suite: Suite, pid: int | None = None) -> list:
    """The containers labelled as kernbuild's for ``suite``'s state (and ``pid``'s)."""
    labels = [f"{OWNER}={owner_id(suite.state)}"] + ([f"{PID}={pid}"] if pid else [])
    return docker_engine.containers.list(all=True, filters={"label": labels})


def build_container_of(docker_engine, suite: Suite, process: subprocess.Popen):
    """Wait until ``process`` has its build container running (it then holds the
    recipe's build lock); that container."""
    deadline = time.monotonic() + SAFETY
    while time.monotonic() < deadline:
        found = [c for c in containers(docker_engine, suite, process.pid)
                 if c.labels.get("kernbuild") == "build"]
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"kernbuild ended before its build started:\n{finish(process)}")
        time.sleep(0.5)
    pytest.fail("no build container appeared")


def deb_sha256(debs: list[str]) -> dict[str, str]:
    return {Path(d).name: hashlib.sha256(Path(d).read_bytes()).hexdigest() for d in debs}


def test_two_forced_builds_at_once_wait_for_each_other(docker_engine, suite, start):
    first = start("package", "--json", "katversion", "--force")
    build_container_of(docker_engine, suite, first)  # it holds build:katversion now
    second = start("package", "--json", "katversion", "--force")
    (code1, out1, err1), (code2, out2, err2) = finish(first), finish(second)

    assert (code1, code2) == (0, 0), (err1, err2)
    assert "Traceback" not in err1 + err2
    assert (f"waiting for build:katversion: held by pid {first.pid} "
            "(kernbuild package --json katversion --force, since ") in err2
    built, waited = json.loads(out1)[0], json.loads(out2)[0]
    assert built["state"] == "built"
    # The second found the entry the first made while it waited, rather than redo it.
    assert (waited["state"], waited["key"], waited["debs"]) == ("cached", built["key"],
                                                                built["debs"])
    entry = suite.state / "builds" / built["key"]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["sha256"] == deb_sha256(built["debs"])  # the entry is whole
    assert not [p.name for p in (suite.state / "builds").iterdir() if p.name.startswith(".")]
    code, output = install(docker_engine, suite, "python3-katversion")
    assert code == 0, output
    assert "Setting up python3-katversion (1.3-1kern1)" in output


def test_a_busy_state_makes_a_command_wait_or_refuse(docker_engine, suite, start):
    holder = start("package", "katversion", "--force")
    build_container_of(docker_engine, suite, holder)
    # The holder stopped (SIGSTOP) while the others ask: it keeps its lock, and on a
    # loaded host its short build cannot end, letting the lock go, before they start.
    holder.send_signal(signal.SIGSTOP)
    try:
        # One after the other: at once, either could find the other holding the brief
        # environment lock, and the message would name that lock instead.
        code_r, _, err_r = finish(start("package", "katversion", "--force", "--no-wait"))
        waited = start("package", "katversion", "--force", env={"KERNBUILD_LOCK_WAIT": "1"})
        code_w, _, err_w = finish(waited)
        assert holder.poll() is None, "the holder ended before the others asked for its lock"
        held_by = f"held by pid {holder.pid} (kernbuild package katversion --force, since "
        assert code_r == 1
        assert f"state {suite.state} is busy: build:katversion is {held_by}" in err_r
        assert "waiting for" not in err_r
        assert code_w == 1
        assert f"waiting for build:katversion: {held_by}" in err_w
        assert (f"state {suite.state} is still busy after 1 s: build:katversion is {held_by}"
                in err_w)
        assert "Traceback" not in err_r + err_w
    except BaseException:
        holder.send_signal(signal.SIGCONT)
        raise

    # SIGTERM leaves time to clean up: the holder removes its build container itself.
    # Sent while it is stopped, it is the first thing the holder handles when continued,
    # its build container surely still running.
    holder.send_signal(signal.SIGTERM)
    holder.send_signal(signal.SIGCONT)
    code_h, _, err_h = finish(holder)
    assert code_h == 128 + signal.SIGTERM and "Traceback" not in err_h
    # (its handler says "kernbuild: SIGTERM: removed 1 container it had started" when it
    # removed it; after a long stop the build's own thread may have done so first)
    assert containers(docker_engine, suite, holder.pid) == []


@pytest.fixture
def uninterrupted(suite) -> dict[str, str]:
    """katversion's .deb of a build nothing interrupted (cached if built already)."""
    result = suite.package("katversion")["katversion"]
    return deb_sha256(result["debs"])


def test_a_sigkilled_build_is_reaped_by_the_next_run(docker_engine, suite, uninterrupted,
                                                     start):
    for _ in range(3):
        killed = start("package", "katversion", "--force")
        container = build_container_of(docker_engine, suite, killed)
        killed.send_signal(signal.SIGSTOP)  # frozen mid-build: it can remove nothing now
        try:
            container.reload()
        except docker.errors.NotFound:  # on a loaded host its build ended first: again
            killed.send_signal(signal.SIGCONT)
            finish(killed)
            continue
        killed.send_signal(signal.SIGKILL)  # no time to clean up anything
        finish(killed)
        break
    else:
        pytest.fail("three builds ended before they could be killed mid-build")
    container.reload()
    assert container.status == "running"  # what a SIGKILL leaves: the next run's to reap

    rerun = suite.run("package", "--json", "katversion", "--force")

    assert (f"reaped 1 build container left by killed kernbuild runs (pids {killed.pid})"
            in rerun.stderr)
    left = [(c.short_id, c.labels[PID]) for c in containers(docker_engine, suite)]
    assert left == []  # nothing of the killed run, nor of the rerun, is left running
    assert not list((suite.state / "builds").glob(f".build-{killed.pid}-*"))  # its scratch
    result = json.loads(rerun.stdout)[0]
    assert result["state"] == "built"
    assert deb_sha256(result["debs"]) == uninterrupted
