"""State locks between real processes: exclusion, the waiter's message, a SIGKILLed holder,
refusal and a bounded wait.

Every other process is started with multiprocessing's "spawn" (a fresh interpreter, as a
second kernbuild command is): a forked child would share the parent's lock descriptors.
Timeouts here are safety nets that make a regression fail instead of hang, never what
a test measures.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.locks import (StateLocks, command_line, process_alive, wait_from_env)

SAFETY = 60  # seconds: only ever reached when something is broken

spawn = multiprocessing.get_context("spawn")


def _hold(state: str, resource: str, command: str, held, release) -> None:
    """Child: hold ``resource`` until ``release`` is set (or forever, if it never is)."""
    with StateLocks(Path(state), command=command).hold(resource):
        held.set()
        release.wait(SAFETY)


def _wait_for(state: str, resource: str, said, acquired) -> None:
    """Child: take ``resource``, waiting as long as it takes; report what it printed."""
    locks = StateLocks(Path(state), command="kernbuild waiter", say=said.put)
    with locks.hold(resource):
        acquired.set()


def _count(state: str, counter: str, times: int) -> None:
    """Child: ``times`` read-sleep-write increments of a counter file, each under the lock:
    without exclusion, two children interleave and increments are lost."""
    locks = StateLocks(Path(state), command="kernbuild counter")
    for _ in range(times):
        with locks.hold("repo"):
            value = int(Path(counter).read_text())
            time.sleep(0.01)
            Path(counter).write_text(str(value + 1))


@pytest.fixture
def holder(tmp_path):
    """Start a process holding a lock on ``tmp_path``; yields (start, process list)."""
    started: list = []

    def start(resource: str, command: str = "kernbuild package katversion"):
        held, release = spawn.Event(), spawn.Event()
        process = spawn.Process(target=_hold, args=(str(tmp_path), resource, command,
                                                    held, release))
        process.start()
        assert held.wait(SAFETY), "the holder never took the lock"
        started.append(process)
        return process, release

    yield start
    for process in started:
        process.kill()
        process.join(SAFETY)


def test_the_lock_excludes_other_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    children = [spawn.Process(target=_count, args=(str(tmp_path), str(counter), 15))
                for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(SAFETY)
        assert child.exitcode == 0
    assert counter.read_text() == "45"  # no increment lost: never two holders at once


def test_no_wait_refuses_naming_the_holder(tmp_path, holder):
    process, release = holder("build:katversion")
    with pytest.raises(KernError) as refused:
        with StateLocks(tmp_path, wait=0).hold("build:katversion"):
            pytest.fail("took a lock another process holds")
    message = str(refused.value)
    assert f"state {tmp_path} is busy: build:katversion is held by pid {process.pid} " \
           "(kernbuild package katversion, since " in message
    release.set()
    process.join(SAFETY)
    with StateLocks(tmp_path, wait=0).hold("build:katversion"):
        pass  # free again once its holder let go


def test_a_waiter_says_once_whom_it_waits_for_then_gets_the_lock(tmp_path, holder):
    process, release = holder("repo", "kernbuild image katpoint")
    said, acquired = spawn.Queue(), spawn.Event()
    waiter = spawn.Process(target=_wait_for, args=(str(tmp_path), "repo", said, acquired))
    waiter.start()
    line = said.get(timeout=SAFETY)
    assert line.startswith(f"waiting for repo: held by pid {process.pid} "
                           "(kernbuild image katpoint, since ")
    assert not acquired.is_set()  # it said so because it is waiting
    release.set()
    assert acquired.wait(SAFETY), "the waiter never got the lock its holder let go"
    waiter.join(SAFETY)
    assert waiter.exitcode == 0
    assert said.empty()  # one line, not one per try


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path, holder):
    process, _release = holder("build:katversion")
    said, acquired = spawn.Queue(), spawn.Event()
    waiter = spawn.Process(target=_wait_for,
                           args=(str(tmp_path), "build:katversion", said, acquired))
    waiter.start()
    assert "held by pid" in said.get(timeout=SAFETY)
    os.kill(process.pid, signal.SIGKILL)  # no time to clean up anything
    assert acquired.wait(SAFETY), "a killed holder's lock was never taken over"
    waiter.join(SAFETY)
    with StateLocks(tmp_path, wait=0).hold("build:katversion"):
        pass


def test_a_bounded_wait_ends_in_a_clear_error(tmp_path, holder):
    process, _release = holder("image:kern/katpoint:1")
    said: list[str] = []
    with pytest.raises(KernError) as timed_out:
        with StateLocks(tmp_path, wait=0.5, say=said.append).hold("image:kern/katpoint:1"):
            pytest.fail("took a lock another process holds")
    assert len(said) == 1 and said[0].startswith(
        f"waiting for image:kern/katpoint:1: held by pid {process.pid} "
        "(kernbuild package katversion, since ")
    assert "is still busy after 0.5 s: image:kern/katpoint:1 is held by pid" in str(
        timed_out.value)


def test_locks_of_different_resources_are_independent(tmp_path, holder):
    holder("build:katversion")
    with StateLocks(tmp_path, wait=0).hold("build:katpoint"):
        pass
    # An image tag's '/' is escaped: one file in locks/, not a directory per part.
    locks = StateLocks(tmp_path)
    assert locks.path("image:kern/katpoint:1").parent == tmp_path / "locks"
    assert locks.path("image:kern/a_b") != locks.path("image:kern_a/b")
    with pytest.raises(ValueError):
        locks.path("everything")  # not a resource of the documented order


def test_the_holder_record_is_what_waiters_read(tmp_path):
    locks = StateLocks(tmp_path, command="kernbuild test")
    with locks.hold("matrix"):
        found = locks.holder("matrix")
        assert (found.pid, found.command) == (os.getpid(), "kernbuild test")
        assert str(found).startswith(f"pid {os.getpid()} (kernbuild test, since ")


def test_the_command_line_leaves_out_directories():
    assert command_line(["--recipes", "/a/recipes", "--state=/tmp/s", "package",
                         "katversion", "--force"]) == "kernbuild package katversion --force"


def test_wait_from_the_environment(monkeypatch):
    monkeypatch.delenv("KERNBUILD_LOCK_WAIT", raising=False)
    assert wait_from_env() is None
    monkeypatch.setenv("KERNBUILD_LOCK_WAIT", "0")
    assert wait_from_env() == 0
    monkeypatch.setenv("KERNBUILD_LOCK_WAIT", "soon")
    with pytest.raises(KernError, match="not a number of seconds"):
        wait_from_env()


def test_a_reused_pid_is_not_the_process_meant():
    assert process_alive(os.getpid())
    assert process_alive(os.getpid(), started_before=time.time())
    # This process started after that moment: a label naming its pid then meant another.
    assert not process_alive(os.getpid(), started_before=time.time() - 10 * 365 * 86400)
    child = spawn.Process(target=time.sleep, args=(0,))
    child.start()
    child.join(SAFETY)
    assert not process_alive(child.pid)
