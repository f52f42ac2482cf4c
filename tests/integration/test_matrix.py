"""The matrix tester on a real engine: every target's cells (the real apptainer among them),
failures, SIGKILL and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import textwrap
from xml.etree import ElementTree

import pytest

from tests.integration.conftest import Suite, copy_of

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def suite(wcslib_suite: Suite) -> Suite:
    """wcslib and wcs-roundtrip built already: this module tests what runs them."""
    return wcslib_suite


@pytest.fixture(scope="module")
def first_run(suite: Suite, tmp_path_factory) -> tuple[list[dict], object]:
    reports = tmp_path_factory.mktemp("reports")
    result = suite.run("test", "--pipeline", "wcs-roundtrip", "--jobs", "2", "--json",
                       "--junit", str(reports / "junit.xml"), "--html", str(reports / "html"))
    return json.loads(result.stdout), reports


def statuses(cells: list[dict]) -> dict[tuple, str]:
    return {(c["pipeline"], c["image"], c["form"], c["target"]): c["status"] for c in cells}


def test_every_pipeline_in_every_image_form_on_every_target(first_run):
    cells, _ = first_run
    expected = {}
    for image in ("wcs-roundtrip", "wcslib"):
        expected[("wcs-roundtrip", image, "docker", "docker")] = "pass"
        expected[("wcs-roundtrip", image, "docker", "udocker")] = "pass"
        expected[("wcs-roundtrip", image, "sif", "sif-bwrap")] = "pass"
        # Debian's apptainer (in a trixie container here, where the host has none)
        expected[("wcs-roundtrip", image, "sif", "apptainer")] = "pass"
        expected[("wcs-roundtrip", image, "packages", "native")] = "pass"
    assert statuses(cells) == expected
    # the scientific assertion ran and printed what it checked
    passed = next(c for c in cells if c["target"] == "docker")
    assert [s["name"] for s in passed["steps"]] == [
        "make-header", "pixel-to-sky", "sky-to-pixel", "sky-position-as-projected",
        "back-to-the-same-pixel"]
    assert "RA 187.491995 (want 187.491995)" in passed["steps"][3]["output"]


def test_sif_bwrap_agrees_with_the_real_apptainer_on_every_step(first_run):
    """The stand-in earns its place (it runs SIFs where no apptainer can) only if it sees
    what apptainer sees: the same exit status and output, step by step."""
    cells, _ = first_run
    by = {(c["image"], c["target"]): c for c in cells}
    for image in ("wcs-roundtrip", "wcslib"):
        real, stand_in = by[(image, "apptainer")], by[(image, "sif-bwrap")]

        def said(step):
            return [line for line in step["output"].splitlines()
                    if not line.startswith(("INFO:", "WARNING:"))]

        assert [(s["name"], s["exit_code"], said(s)) for s in real["steps"]] == \
            [(s["name"], s["exit_code"], said(s)) for s in stand_in["steps"]]


def test_reports_junit_and_html(first_run):
    _, reports = first_run
    suite_xml = ElementTree.parse(reports / "junit.xml").getroot().find("testsuite")
    assert (suite_xml.get("tests"), suite_xml.get("failures"), suite_xml.get("skipped")) == (
        "10", "0", "0")
    page = (reports / "html/index.html").read_text()
    assert page.count('class="pass"') == 10 and page.count('class="skip"') == 0
    log = reports / "html/logs/wcs-roundtrip-wcslib-sif-sif-bwrap.log"
    assert 'href="logs/wcs-roundtrip-wcslib-sif-sif-bwrap.log"' in page
    assert "assert back-to-the-same-pixel: exit 0" in log.read_text()


BROKEN = textwrap.dedent("""\
    name: {name}
    version: "1.0"
    summary: a pipeline made to fail
    description: |
      Made by the tests.
    license: MIT
    build:
      system: none
    packages:
      {name}:
        architecture: all
        depends: [wcslib-tools]
    pipeline:
      images: [wcslib]
      steps:
        - name: work
          run: {step}
          timeout: 3
      assert:
        - name: the-answer
          run: {check}
    """)


def test_a_failing_assertion_and_a_hung_step_are_red_with_their_logs(suite, first_run, tmp_path):
    broken = copy_of(suite, tmp_path)
    (broken.recipes / "wrong-answer.yaml").write_text(BROKEN.format(
        name="wrong-answer", step="echo 41 > answer.txt",
        check="echo got $(cat answer.txt), want 42; test $(cat answer.txt) = 42"))
    (broken.recipes / "hangs.yaml").write_text(BROKEN.format(
        name="hangs", step="sleep 60", check="test -d ."))
    html = tmp_path / "html"
    result = broken.run("test", "--pipeline", "wcs-roundtrip", "--pipeline", "wrong-answer",
                        "--pipeline", "hangs", "--target", "docker", "--target", "sif-bwrap",
                        "--json", "--html", str(html), check=False)
    assert result.returncode == 1
    cells = {(c["pipeline"], c["target"]): c for c in json.loads(result.stdout)}
    for target in ("docker", "sif-bwrap"):
        wrong = cells[("wrong-answer", target)]
        assert (wrong["status"], wrong["reason"]) == (
            "fail", "assertion the-answer failed (exit 1)")
        assert "got 41, want 42" in wrong["steps"][-1]["output"]
        hung = cells[("hangs", target)]
        assert (hung["status"], hung["reason"]) == ("fail", "step work timed out after 3 s")
        assert cells[("wcs-roundtrip", target)]["status"] == "pass"  # the rest go on
    assert "error: wrong-answer in wcslib (docker) on docker: assertion the-answer failed" \
        in result.stderr
    page = (html / "index.html").read_text()
    assert page.count('class="fail"') == 4
    assert "got 41, want 42" in (html / "logs/wrong-answer-wcslib-docker-docker.log").read_text()


def test_sigkill_mid_run_then_resume_reruns_nothing_that_passed(suite, first_run, tmp_path):
    slow = copy_of(suite, tmp_path)
    recipe = slow.recipes / "wcs-roundtrip.yaml"
    recipe.write_text(recipe.read_text().replace("  steps:\n", "  steps:\n"
                                                 "    - name: think\n      run: sleep 4\n", 1))
    database = slow.state / "matrix/results.sqlite"
    command = [sys.executable, "-m", "kernbuild.cli", "--recipes", str(slow.recipes), "--state",
               str(slow.state), "test", "--pipeline", "wcs-roundtrip", "--target", "docker",
               "--target", "sif-bwrap"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    passed: list[str] = []
    deadline = time.monotonic() + 600
    while not passed and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        if database.exists():
            with sqlite3.connect(database) as db:
                # The file exists a moment before the run has created its schema.
                if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cells'").fetchone():
                    passed = [row[0] for row in db.execute(
                        "SELECT key FROM cells WHERE status = 'pass' AND steps LIKE '%think%'")]
    assert passed, "no cell finished before the deadline"
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and anything it started
    process.wait()
    subprocess.run(["docker", "rm", "-f", *subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=kernbuild=matrix"],
        capture_output=True, text=True).stdout.split()], capture_output=True)

    cells = json.loads(slow.run("test", "--pipeline", "wcs-roundtrip", "--target", "docker",
                                "--target", "sif-bwrap", "--resume", "--json").stdout)
    assert {c["status"] for c in cells} == {"pass"}
    resumed = {c["key"] for c in cells if c["resumed"]}
    assert set(passed) <= resumed  # what had passed before the kill was not run again
    assert len(resumed) < len(cells) or len(passed) == len(cells)
