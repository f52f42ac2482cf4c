"""The Slurm executor on a real one-node cluster: matrix cells packed into batch jobs.

Skips without a Slurm controller that answers (``sinfo``), except where
KERNBUILD_REQUIRE_SLURM=1: there a missing cluster is a failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kernbuild.matrix import Cell
from kernbuild.matrix.slurm import SlurmExecutor
from kernbuild.runtime.apptainer import ApptainerRunner
from kernbuild.runtime.bwrap import SifBwrapRunner
from kernbuild.runtime.docker import DockerRunner
from kernbuild.recipe import load_suite
from tests.integration.conftest import Suite

pytestmark = [pytest.mark.slurm, pytest.mark.docker]


@pytest.fixture(scope="module")
def suite(wcslib_suite: Suite) -> Suite:
    """wcslib and wcs-roundtrip built already: this module tests what runs them."""
    return wcslib_suite


@pytest.fixture(scope="module")
def images(slurm_cluster, suite: Suite) -> dict[str, dict]:
    """The wcs-roundtrip pipeline's images, Docker and SIF: recipe -> its entry."""
    result = suite.run("image", "wcs-roundtrip", "wcslib", "-f", "docker", "-f", "sif",
                       "--json")
    return {e["lock"]["recipe"]: e["lock"] for e in json.loads(result.stdout)}


def cells_of(recipes: Path, entry: dict, pipeline: str = "wcs-roundtrip") -> list[Cell]:
    recipe = load_suite(recipes).get(pipeline)
    from kernbuild import engine

    return [Cell(recipe, entry["recipe"], "docker", DockerRunner(engine.connect),
                 entry["image"], entry["image"]),
            Cell(recipe, entry["recipe"], "sif", SifBwrapRunner(recipes.parent / "unused"),
                 entry["sif"]["path"], entry["sif"]["sha256"]),
            # the real apptainer, run inside the Slurm job as `srun apptainer exec` would
            Cell(recipe, entry["recipe"], "sif", ApptainerRunner(), entry["sif"]["path"],
                 entry["sif"]["sha256"])]


def test_cells_pass_as_slurm_jobs_on_docker_sif_bwrap_and_apptainer(suite, images, tmp_path):
    executor = SlurmExecutor(tmp_path / "slurm", poll=0.5)
    cells = cells_of(suite.recipes, images["wcslib"])
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:  # the matrix calls it from threads
        results = list(pool.map(lambda c: executor.run(c, suite.recipes, suite.state), cells))
    seconds = time.monotonic() - started
    for cell, result in zip(cells, results):
        assert (result.status, result.reason) == ("pass", ""), result.log
        assert (result.key, result.target, result.form) == (cell.key, cell.target.name,
                                                            cell.form)
        assert [s.name for s in result.steps[:-1]] == [
            "make-header", "pixel-to-sky", "sky-to-pixel", "sky-position-as-projected",
            "back-to-the-same-pixel"]
        assert "RA 187.491995 (want 187.491995)" in result.steps[3].output
        assert result.steps[-1].phase == "slurm" and "pass" in result.steps[-1].output
    print(f"three cells through Slurm in {seconds:.1f} s")
    # each job ran in a directory of its own, holding its cells' specs and results
    jobs = list((tmp_path / "slurm").iterdir())
    assert len(jobs) == len(cells)
    assert {p.name for job in jobs for p in (job / "results").iterdir()} == {
        f"{c.key}.json" for c in cells}
    # the SIF was unpacked on the node, into the state directory, under its digest
    assert (suite.state / "matrix" / "rootfs" / images["wcslib"]["sif"]["sha256"]).is_dir()


def test_a_job_past_its_slurm_time_limit_fails_with_timeout(suite, images, tmp_path,
                                                            docker_engine):
    # a copy of the recipes whose workflow sleeps for ten minutes: Slurm checks time
    # limits only every half minute or so, and a loaded host has taken two to end it
    recipes = tmp_path / "recipes"
    shutil.copytree(suite.recipes, recipes)
    path = recipes / "wcs-roundtrip.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["pipeline"]["steps"] = [{"name": "sleep", "run": "sleep 600", "timeout": 900}]
    path.write_text(yaml.safe_dump(raw))
    cell = cells_of(recipes, images["wcslib"])[0]  # docker: the container outlives no job

    executor = SlurmExecutor(tmp_path / "slurm", ["--time=0:05"], poll=0.5)
    started = time.monotonic()
    result = executor.run(cell, recipes, suite.state)
    seconds = time.monotonic() - started
    print(f"TIMEOUT after {seconds:.1f} s")
    assert result.status == "fail", result.log
    assert "TIMEOUT" in result.reason and "Slurm job" in result.reason
    assert result.steps[-1].phase == "slurm" and result.steps[-1].timed_out
    assert seconds < 600  # Slurm ended it, not the sleep
    # SIGTERM let the worker remove its container: nothing sleeps on (the engine may
    # still be finishing that removal when sacct already says TIMEOUT)
    def sleeping() -> list:
        return [c for c in docker_engine.containers.list(filters={"label": "kernbuild=matrix"},
                                                         ignore_removed=True)
                if c.attrs["Config"]["Cmd"] == ["sh", "-c", "sleep 600"]]

    deadline = time.monotonic() + 30
    while sleeping() and time.monotonic() < deadline:
        time.sleep(1)
    assert sleeping() == []


def test_a_job_over_its_memory_limit_fails_naming_it(suite, images, tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(suite.recipes, recipes)
    path = recipes / "wcs-roundtrip.yaml"
    raw = yaml.safe_load(path.read_text())
    # the shell holds 600 MiB in a variable, for longer than Slurm's 5 s sampling
    raw["pipeline"]["steps"] = [{"name": "hog",
                                 "run": "x=$(head -c 600M /dev/zero | tr '\\0' a); sleep 20"}]
    path.write_text(yaml.safe_dump(raw))
    cell = cells_of(recipes, images["wcslib"])[1]  # sif-bwrap: the step is in the job

    result = SlurmExecutor(tmp_path / "slurm", ["--mem=250M"], poll=0.5).run(
        cell, recipes, suite.state)
    assert result.status == "fail", result.log
    assert "OUT_OF_MEMORY" in result.reason and "Slurm job" in result.reason, result.log


def _our_jobs(work: Path) -> list[tuple[str, str, Path]]:
    """(job id, state, work directory) of the queue's jobs that run in ``work``: the
    cluster may be shared, so only these."""
    listed = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    jobs = [line.split("|", 2) for line in listed.splitlines() if line.count("|") == 2]
    return [(i, state, Path(d)) for i, state, d in jobs if Path(d).parent == work]


def _running_jobs(process: subprocess.Popen, work: Path) -> list[tuple[str, str, Path]]:
    """The jobs in ``work`` once one of them runs; empty if ``process`` ended first."""
    running: list = []
    while not running and process.poll() is None:
        running = [job for job in _our_jobs(work) if job[1] == "RUNNING"]
        time.sleep(0.2)
    return running


def _holding(suite: Suite, tmp_path: Path, seconds: int) -> Path:
    """A copy of the recipes whose wcs-roundtrip cells first hold for ``seconds``, so that
    a job can be cancelled or its submitter killed while a cell runs. Its pipeline
    changed, not its packages: the module's images are the ones the cells run in."""
    recipes = tmp_path / "recipes"
    shutil.copytree(suite.recipes, recipes)
    path = recipes / "wcs-roundtrip.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["pipeline"]["data"].insert(0, {"name": "hold", "run": f"sleep {seconds}"})
    path.write_text(yaml.safe_dump(raw))
    return recipes


def test_a_cancelled_group_fails_exactly_its_cells_and_resume_reruns_only_those(
        suite, images, tmp_path):
    # The matrix's wcs-roundtrip cells (two images, docker and sif-bwrap) packed into two
    # Slurm jobs; each cell first holds for a few seconds, so a job can be cancelled
    # while its first cell runs.
    recipes = _holding(suite, tmp_path, 8)
    args = [sys.executable, "-m", "kernbuild.cli", "--recipes", str(recipes), "--state",
            str(suite.state), "test", "--json", "--pipeline", "wcs-roundtrip", "--target",
            "docker", "--target", "sif-bwrap", "--executor", "slurm", "--jobs", "2"]
    work = suite.state / "matrix" / "slurm"
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = _running_jobs(first, work)
        assert running, first.communicate()
        job_id, _, directory = running[0]
        subprocess.run(["scancel", job_id], check=True, timeout=60)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1, err
    results = {r["key"]: r for r in json.loads(out)}
    assert len(results) == 4
    held = {c["pipeline"] + c["image"] + c["target"] for c in
            json.loads((directory / "group.json").read_text())["cells"]}
    finished = {p.stem for p in (directory / "results").iterdir()}  # none, unless slow
    cancelled = {k for k, r in results.items()
                 if r["pipeline"] + r["image"] + r["target"] in held} - finished
    assert cancelled and len(held) < len(results)  # the other job's cells ran on
    failed = {k for k, r in results.items() if r["status"] == "fail"}
    assert failed == cancelled, {k: r["reason"] for k, r in results.items()}
    for key in failed:
        assert f"Slurm job {job_id} ended CANCELLED" in results[key]["reason"]
    assert all(r["status"] == "pass" for k, r in results.items() if k not in failed)

    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rerun = {r["key"]: r for r in json.loads(again.stdout)}
    assert {k for k, r in rerun.items() if not r["resumed"]} == failed
    assert all(r["status"] == "pass" for r in rerun.values())


def test_the_jobs_of_a_sigkilled_run_are_cancelled_by_the_next(suite, images, tmp_path):
    # A SIGKILL leaves no time to scancel: the job runs on, and the next kernbuild test
    # on the same state cancels it (its --comment names the dead run), then runs anew.
    recipes = _holding(suite, tmp_path, 30)
    args = [sys.executable, "-m", "kernbuild.cli", "--recipes", str(recipes), "--state",
            str(suite.state), "test", "--json", "--pipeline", "wcs-roundtrip", "--image",
            "wcslib", "--target", "sif-bwrap", "--executor", "slurm"]
    work = suite.state / "matrix" / "slurm"
    killed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = _running_jobs(killed, work)
        assert running, killed.communicate()
    finally:
        killed.kill()  # SIGKILL
        killed.communicate(timeout=60)
    [(job_id, _, _)] = running
    assert job_id in {job[0] for job in _our_jobs(work)}  # what the kill left running

    again = subprocess.run(args, capture_output=True, text=True, timeout=600)

    assert (f"reaped 1 Slurm job left by killed kernbuild runs (pids {killed.pid})"
            in again.stderr), again.stderr
    assert job_id not in {job[0] for job in _our_jobs(work)}
    assert again.returncode == 0, again.stderr
    [cell] = json.loads(again.stdout)
    assert cell["status"] == "pass", cell
