"""The udocker target for real: a Docker image loaded into udocker and run in mode R1 (runc).

Skips where udocker or runc is missing, except where KERNBUILD_REQUIRE_DOCKER=1:
there CI must have installed them, and a skip would hide that it did not.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from kernbuild.runtime import ImageRef
from kernbuild.runtime.udocker import UdockerRunner

pytestmark = pytest.mark.docker

IMAGE = "kern/wcslib:1"


@pytest.fixture(scope="module")
def target(docker_engine, tmp_path_factory) -> UdockerRunner:
    made = UdockerRunner(lambda: docker_engine, tmp_path_factory.mktemp("udocker"))
    reason = made.unavailable()
    if reason:
        if os.environ.get("KERNBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"KERNBUILD_REQUIRE_DOCKER=1 but: {reason}")
        pytest.skip(reason)
    return made


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    try:
        return docker_engine.images.get(IMAGE).id
    except Exception as exc:  # noqa: BLE001 - the image is made by the image tests
        if os.environ.get("KERNBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{IMAGE} is missing: {exc}")
        pytest.skip(f"{IMAGE} is missing (kernbuild image wcslib makes it)")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    tmp_path.chmod(0o777)
    return tmp_path


def test_a_step_writes_to_scratch_and_runs_there(target, image, scratch):
    record = target.run(ImageRef(image),
                        "echo hello from udocker > out.txt; pwd; echo to stderr >&2", scratch, 120)
    assert (record.exit_code, record.timed_out) == (0, False), record.output
    assert (scratch / "out.txt").read_text() == "hello from udocker\n"
    assert record.output.splitlines() == ["/scratch", "to stderr"]
    assert (target.home / "repos" / "kernbuild").is_dir()  # udocker's files are under home


def test_the_image_content_and_config_are_there(target, image, scratch):
    record = target.run(ImageRef(image), "command -v wcsware && echo PATH=$PATH", scratch, 120)
    assert record.exit_code == 0, record.output
    assert "/usr/bin/wcsware" in record.output
    assert "PATH=/usr/local/sbin:" in record.output  # the image's ENV came along


def test_a_step_reading_stdin_gets_end_of_file(target, image, scratch):
    record = target.run(ImageRef(image), "cat; wcsware -h >/dev/null 2>&1; echo done", scratch, 30)
    assert (record.exit_code, record.timed_out, record.output) == (0, False, "done\n")


def test_a_failing_step_gives_its_exit_code(target, image, scratch):
    record = target.run(ImageRef(image), "echo failing; exit 7", scratch, 120)
    assert (record.exit_code, record.timed_out, record.output) == (7, False, "failing\n")


def test_a_step_past_its_timeout_is_killed_and_cleaned_up(target, image, scratch):
    record = target.run(ImageRef(image), "echo started; sleep 47", scratch, 3)
    assert record.timed_out and record.exit_code == 124
    assert "started" in record.output
    assert record.seconds < 20
    left = subprocess.run(["pgrep", "-f", "sleep 47"], capture_output=True, text=True,
                          check=False)
    assert left.stdout == "", "the step's processes outlived its timeout"
    for specdir in (target.home / "containers").iterdir():
        states = [p for p in specdir.iterdir() if (p / "state.json").is_file()]
        assert states == [], f"runc state left behind in {specdir}"
    after = target.run(ImageRef(image), "echo still usable", scratch, 120)
    assert (after.exit_code, after.output) == (0, "still usable\n")


def test_parallel_steps_of_one_image_keep_their_own_scratch(target, image, tmp_path):
    dirs = [tmp_path / str(n) for n in range(3)]
    records = {}

    def step(where: Path) -> None:
        where.mkdir(mode=0o777)
        records[where] = target.run(ImageRef(image), f"echo {where.name} > mine; sleep 1; cat mine",
                                    where, 120)

    threads = [threading.Thread(target=step, args=(d,)) for d in dirs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for where in dirs:
        assert (records[where].exit_code, records[where].output) == (0, f"{where.name}\n")


def test_an_image_that_cannot_be_loaded_fails_the_step_with_why(target, scratch):
    record = target.run(ImageRef("sha256:" + "0" * 64), "true", scratch, 60)
    assert (record.exit_code, record.timed_out) == (125, False)
    assert "udocker could not prepare" in record.output


def test_unavailable_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert "pip install udocker" in UdockerRunner(None, tmp_path).unavailable()
    monkeypatch.undo()
    monkeypatch.setattr("kernbuild.runtime.udocker.runc_program", lambda: None)
    if UdockerRunner(None, tmp_path).unavailable().startswith("udocker"):
        pytest.skip("udocker itself is missing")
    assert "apt-get install runc" in UdockerRunner(None, tmp_path).unavailable()
