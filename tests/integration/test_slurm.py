"""The Slurm executor on a real one-node cluster: matrix cells as batch jobs.

Skips without a Slurm controller that answers (``sinfo``), except where
KERNBUILD_REQUIRE_SLURM=1: there a missing cluster is a failure.
"""

from __future__ import annotations

import json
import shutil
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
    print(f"two cells through Slurm in {seconds:.1f} s")
    # each job ran in a directory of its own under the cell's key
    assert {p.name for p in (tmp_path / "slurm").iterdir()} == {c.key for c in cells}
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
