"""``kernbuild package --executor slurm`` on the real one-node cluster: a build per job.

Skips without a Slurm controller that answers, except where KERNBUILD_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from kernbuild.runtime.slurm import SlurmCluster
from tests.integration.conftest import make_suite

pytestmark = [pytest.mark.slurm, pytest.mark.docker]


def jobs_named(prefix: str) -> dict[str, str]:
    """Queued or running jobs whose name starts with ``prefix``: id -> name."""
    listed = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    return {i: n for i, _, n in (line.partition("|") for line in listed.split())
            if n.startswith(prefix)}


def test_each_wave_builds_as_slurm_jobs_and_publishes(slurm_cluster, docker_engine, tmp_path):
    suite = make_suite(tmp_path)
    # katpoint build-depends on future and katversion: two jobs at once, then katpoint's.
    result = suite.run("package", "katpoint", "--executor", "slurm", "-j", "2", "--json")
    rows = {r["recipe"]: r for r in json.loads(result.stdout)}
    assert {r: row["state"] for r, row in rows.items()} == dict.fromkeys(
        ("future", "katversion", "katpoint"), "built")
    jobs = {r: row["job"] for r, row in rows.items()}
    assert all(job.isdigit() for job in jobs.values()) and len(set(jobs.values())) == 3
    # Its build dependencies were published before katpoint's job was submitted.
    assert int(jobs["katpoint"]) > max(int(jobs["future"]), int(jobs["katversion"]))
    cluster = SlurmCluster()
    assert {cluster.job_state(job)[0] for job in jobs.values()} == {"COMPLETED"}
    published = {p["name"] for p in json.loads(suite.run("repo", "list", "--json").stdout)}
    assert {"python3-katpoint", "python3-future", "python3-katversion"} <= published
    assert not list((suite.state / "builds" / "slurm").iterdir())  # no job's files left

    again = suite.run("package", "katpoint", "--executor", "slurm", "--json")
    assert {r["state"] for r in json.loads(again.stdout)} == {"cached"}  # no job at all


def test_a_cancelled_build_job_fails_its_recipe_and_skips_what_needs_it(
        slurm_cluster, docker_engine, tmp_path):
    suite = make_suite(tmp_path)
    # The jobs may not start for ten minutes: they are cancelled while pending.
    command = [sys.executable, "-m", "kernbuild.cli", "--recipes", str(suite.recipes),
               "--state", str(suite.state), "package", "katpoint", "--executor", "slurm",
               "-j", "2", "--slurm-args", "--begin=now+600", "--json"]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 300
        while len(mine := {i: n for i, n in jobs_named("kern-build-").items()
                           if n in ("kern-build-future", "kern-build-katversion")}) < 2:
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the two build jobs were never queued"
            time.sleep(0.5)
        subprocess.run(["scancel", *mine], check=True, timeout=60)
        out, err = running.communicate(timeout=300)
    finally:
        running.kill()
    assert running.returncode == 1, err
    rows = {r["recipe"]: r for r in json.loads(out)}
    for recipe in ("future", "katversion"):
        assert rows[recipe]["state"] == "failed"
        assert f"Slurm job {rows[recipe]['job']} ended CANCELLED" in rows[recipe]["error"]
    assert rows["katpoint"]["state"] == "skipped"
    assert "error: future: Slurm job" in err
