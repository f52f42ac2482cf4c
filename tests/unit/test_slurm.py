"""The Slurm executor without Slurm: state mapping, spec and result JSON, the group worker."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from dataclasses import replace

import pytest

from kernbuild.matrix import Cell, slurm
from kernbuild.matrix.slurm import (
    SlurmExecutor,
    cell_from_spec,
    cell_spec,
    result_from_json,
    result_of_job,
    result_to_json,
)
from kernbuild.results import StepResult
from kernbuild.runtime import Runner
from kernbuild.runtime.slurm import parse_fields
from kernbuild.recipe import load_suite

ROOT = Path(__file__).resolve().parents[2]


class EchoTarget(Runner):
    name, form = "echo", "docker"

    def run(self, image, command, cwd=None, timeout=60):
        return StepResult(command, 0, f"ran {command[:10]}", 0.0)


@pytest.fixture(scope="module")
def pipeline():
    return load_suite(ROOT / "recipes").get("wcs-roundtrip")


@pytest.fixture
def cell(pipeline) -> Cell:
    return Cell(pipeline, "wcslib", "docker", EchoTarget(), "sha256:abc", "sha256:abc")


@pytest.mark.parametrize("state", ["TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED",
                                   "CANCELLED by 0", "FAILED", "PREEMPTED", "UNKNOWN"])
def test_a_cell_the_job_left_unfinished_fails_naming_the_state_even_with_exit_0(
        cell, tmp_path, state):
    result = result_of_job(cell, "42", state, "0:0", tmp_path / "no-result.json",
                           "slurmstepd: error: *** JOB 42 ...", 12.0)
    assert result.status == "fail"
    assert state.split()[0] in result.reason and "42" in result.reason
    assert (result.pipeline, result.image, result.target, result.key) == (
        "wcs-roundtrip", "wcslib", "echo", cell.key)
    assert result.steps[-1].phase == "slurm"
    assert "JOB 42" in result.steps[-1].output
    assert result.steps[-1].timed_out == (state == "TIMEOUT")
    assert "slurm job 42" in result.log


@pytest.mark.parametrize("state", ["TIMEOUT", "NODE_FAIL", "CANCELLED by 0", "COMPLETED"])
def test_a_cell_that_finished_before_its_job_ended_keeps_its_result(cell, tmp_path, state):
    # the worker writes a cell's result (atomically, synced) only once the cell is over:
    # what became of the job afterwards, with the cells after it, does not change it
    stored = cell.result("pass", "", 2.0, [StepResult("true", 0, "", 0.1, phase="step",
                                                      name="s")])
    (tmp_path / "result.json").write_text(json.dumps(result_to_json(stored)))
    result = result_of_job(cell, "43", state, "0:0", tmp_path / "result.json", "log", 30.0)
    assert (result.status, result.reason) == ("pass", "")
    assert [(s.phase, s.exit_code) for s in result.steps] == [("step", 0), ("slurm", 0)]


def test_a_failed_cell_of_a_job_that_ran_out_of_memory_says_so(cell, tmp_path):
    stored = cell.result("fail", "step hog failed (exit 137)", 2.0)
    (tmp_path / "result.json").write_text(json.dumps(result_to_json(stored)))
    result = result_of_job(cell, "44", "OUT_OF_MEMORY", "0:125", tmp_path / "result.json",
                           "", 30.0)
    assert result.reason == ("step hog failed (exit 137); its Slurm job 44 ended "
                             "OUT_OF_MEMORY: OUT_OF_MEMORY")


def test_a_job_killed_for_its_memory_says_so(cell, tmp_path):
    log = ("slurmstepd-vm: error: StepId=11.batch exceeded memory limit (644579328 > "
           "104857600), being killed\nslurmstepd-vm: error: Exceeded job memory limit\n")
    result = result_of_job(cell, "11", "FAILED", "0:9", tmp_path / "result.json", log, 8.0)
    assert result.status == "fail"
    assert result.reason == ("Slurm job 11 ended FAILED (exit code 0:9): OUT_OF_MEMORY, "
                             "it exceeded its memory limit (--mem)")


def test_completed_reads_the_result_file_and_attaches_slurm_out(cell, tmp_path):
    stored = cell.result("fail", "assertion x failed (exit 1)", 3.5,
                         [StepResult("false", 1, "nope", 0.5, phase="assert", name="x")])
    (tmp_path / "result.json").write_text(json.dumps(result_to_json(stored)))
    result = result_of_job(cell, "7", "COMPLETED", "0:0", tmp_path / "result.json",
                           "kernbuild: done\n", 4.0)
    assert (result.status, result.reason) == ("fail", "assertion x failed (exit 1)")
    assert [(s.phase, s.name) for s in result.steps] == [("assert", "x"), ("slurm", "job 7")]
    assert result.steps[1].output == "kernbuild: done\n"


def test_completed_without_a_result_file_fails(cell, tmp_path):
    result = result_of_job(cell, "8", "COMPLETED", "0:0", tmp_path / "missing.json", "", 1.0)
    assert result.status == "fail"
    assert "COMPLETED" in result.reason and "no result for this cell" in result.reason


def test_result_json_round_trip(cell):
    original = cell.result("pass", "", 1.25, [
        StepResult("make", 0, "out", 0.1, phase="data", name="make"),
        StepResult("run", 124, "", 9.0, True, phase="step", name="run")])
    again = result_from_json(json.loads(json.dumps(result_to_json(original))))
    assert again == original
    assert isinstance(again.steps[1], StepResult) and again.steps[1].timed_out


def test_spec_round_trip_rebuilds_the_cell(pipeline, tmp_path):
    from kernbuild.runtime.bwrap import SifBwrapRunner
    from kernbuild.runtime.docker import DockerRunner

    for target_name, form, kind in (("docker", "docker", DockerRunner),
                                    ("sif-bwrap", "sif", SifBwrapRunner)):
        target = kind(None) if kind is DockerRunner else kind(tmp_path / "matrix" / "rootfs")
        original = Cell(pipeline, "wcslib", form, target, "/x/wcslib.sif", "d" * 64)
        spec = json.loads(json.dumps(cell_spec(original, ROOT / "recipes", tmp_path)))
        assert spec == {"recipes": str((ROOT / "recipes").resolve()),
                        "state": str(tmp_path.resolve()), "pipeline": "wcs-roundtrip",
                        "image": "wcslib", "form": form, "target": target_name,
                        "gpu": False, "ref": "/x/wcslib.sif", "digest": "d" * 64, "tag": "",
                        "components": []}
        again = cell_from_spec(spec)
        assert isinstance(again.target, kind) and not again.gpu
        assert again.key == original.key  # same pipeline, image and target: same cell
        # a GPU image's cell stays one on the compute node: it runs kern-gpu-check first
        gpu_cell = Cell(pipeline, "wcslib-gpu", form, target.with_gpu(), "/x/g.sif", "e" * 64)
        assert cell_from_spec(json.loads(json.dumps(cell_spec(gpu_cell, ROOT / "recipes",
                                                              tmp_path)))).gpu
    # the sif-bwrap target unpacks into state/matrix/rootfs/<digest>, once
    where = tmp_path / "matrix" / "rootfs" / ("d" * 64)
    where.mkdir(parents=True)
    assert again.target.rootfs(again.image_ref) == where


def test_worker_runs_the_group_and_writes_each_cells_result(pipeline, tmp_path, monkeypatch):
    made = []

    def make(*_):
        made.append(EchoTarget())
        return made[-1]

    monkeypatch.setattr(slurm, "make_target", make)
    katpoint = load_suite(ROOT / "recipes").get("katpoint")
    cells = [Cell(pipeline, "wcslib", "docker", EchoTarget(), "sha256:abc", "sha256:abc"),
             Cell(katpoint, "katpoint", "docker", EchoTarget(), "sha256:def", "sha256:def")]
    group = tmp_path / "group.json"
    group.write_text(json.dumps({"submitted": 1.0, "cells": [
        cell_spec(c, ROOT / "recipes", tmp_path / "state") for c in cells]}))
    assert slurm.main(["run-group", str(group), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{c.key}.json" for c in cells)
    results = [result_from_json(json.loads(slurm.result_file(tmp_path / "out", c.key)
                                           .read_text())) for c in cells]
    assert [(r.status, r.key) for r in results] == [("pass", c.key) for c in cells]
    assert [s.name for s in results[0].steps][:2] == ["make-header", "pixel-to-sky"]
    assert len(made) == 1  # one target for both cells: what it pools is reused
    # the first cell's turn began at the submission: the job's start counts as overhead
    assert results[0].overhead > 1000 and results[0].seconds >= results[0].overhead


def test_parse_scontrol_fields():
    line = ("JobId=5 JobName=kern-x UserId=root(0) JobState=TIMEOUT Reason=TimeLimit "
            "ExitCode=0:0 Command=(null) WorkDir=/tmp")
    fields = parse_fields(line)
    assert (fields["JobState"], fields["ExitCode"], fields["Reason"]) == (
        "TIMEOUT", "0:0", "TimeLimit")


def _fake_slurm(bin_dir: Path, sbatch_log: Path, state: str) -> None:
    """Stub sbatch/squeue/scontrol/sinfo: record sbatch's arguments, report ``state``."""
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'printf "%s\\n" "$@" > {shlex.quote(str(sbatch_log))}; echo "99;cluster"',
        "squeue": "exit 0",
        "sinfo": "echo idle",
        "scontrol": f'echo "JobId=99 JobState={state} Reason=x ExitCode=0:0"',
        "sacct": "exit 1",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_executor_submits_and_maps_a_timeout(cell, tmp_path, monkeypatch):
    log = tmp_path / "sbatch.args"
    _fake_slurm(tmp_path / "bin", log, "TIMEOUT")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    executor = SlurmExecutor(tmp_path / "work", ["--time=0:05", "--partition=main"], poll=0.01)
    assert executor.unavailable() == ""
    result = executor.run(cell, ROOT / "recipes", tmp_path / "state")
    assert result.status == "fail" and "TIMEOUT" in result.reason and "99" in result.reason
    args = log.read_text().splitlines()
    assert args[:2] == ["--parsable", "--job-name=kern-wcs-roundtrip"]
    # the cell's own limit (steps' timeouts + margin, minutes), then the caller's override
    steps_total = sum(s.timeout for _, s in cell.pipeline.pipeline.all_steps)
    assert f"--time={-(-(steps_total + slurm.MARGIN_S) // 60)}" in args
    assert args.index("--time=0:05") > args.index(f"--time={executor.time_limit([cell])}")
    wrap = shlex.split(args[args.index("--wrap") + 1])
    assert wrap[1:4] == ["-m", "kernbuild.matrix.slurm", "run-group"]
    spec = json.loads(Path(wrap[4]).read_text())
    assert [(c["pipeline"], c["target"]) for c in spec["cells"]] == [("wcs-roundtrip", "echo")]
    assert Path(wrap[4]).parent.parent == tmp_path / "work"


def test_a_group_jobs_time_limit_is_its_cells_own_summed(pipeline):
    from kernbuild.matrix import CWL_TIMEOUT

    imaging = load_suite(ROOT / "recipes").get("pipeline-imaging")
    cells = [Cell(pipeline, "wcslib", "docker", EchoTarget(), "a", "a"),
             Cell(imaging, "pipeline-imaging", "docker", EchoTarget(), "b", "b")]
    steps_total = sum(s.timeout for _, s in pipeline.pipeline.all_steps)
    # a CWL cell may take its whole workflow timeout, not the margin alone
    assert SlurmExecutor(Path("/x")).time_limit(cells) == -(
        -(steps_total + CWL_TIMEOUT + slurm.MARGIN_S) // 60)


def test_unavailable_names_the_problem_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    why = SlurmExecutor(tmp_path).unavailable()
    assert "sbatch" in why and "ci/setup-slurm.sh" in why
    bin_dir = tmp_path / "bin"
    _fake_slurm(bin_dir, tmp_path / "log", "RUNNING")
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to "
                                   "contact slurm controller (connect failure)' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    why = SlurmExecutor(tmp_path).unavailable()
    assert "Unable to contact slurm controller" in why and "ci/setup-slurm.sh" in why



def test_a_jobs_comment_names_its_run_and_only_a_dead_runs_jobs_are_reaped(tmp_path):
    from kernbuild.runtime.slurm import dead_owner, owner_comment

    state = tmp_path / "state"
    mine = owner_comment(state)
    assert mine.startswith("kernbuild owner=") and f"pid={os.getpid()} " in mine
    assert dead_owner(mine, state) is None  # this process lives
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    pid = int(ended.stdout)
    dead = mine.replace(f"pid={os.getpid()} ", f"pid={pid} ")
    assert dead_owner(dead, state) == pid
    assert dead_owner(dead, tmp_path / "another-state") is None
    assert dead_owner(dead.replace("host=", "host=elsewhere-"), state) is None
    assert dead_owner("", state) is None and dead_owner("a user's comment", state) is None
    assert dead_owner("kernbuild pid=x", state) is None


def _slurm_builds(tmp_path, state: str, result: dict | None = None):
    """SlurmBuilds on the stub cluster; its sbatch writes ``result`` as the job's, if given."""
    from kernbuild.build.slurm import SlurmBuilds
    from kernbuild.runtime.slurm import SlurmCluster
    from kernbuild.workspace import Workspace

    log = tmp_path / "sbatch.args"
    _fake_slurm(tmp_path / "bin", log, state)
    if result is not None:
        sbatch = tmp_path / "bin" / "sbatch"
        sbatch.write_text(sbatch.read_text().replace("echo \"99;cluster\"", (
            'for a; do case $a in --chdir=*) d=${a#--chdir=};; esac; done; '
            f"printf '%s' {shlex.quote(json.dumps(result))} > $d/result.json; "
            'echo "99;cluster"')))
    workspace = Workspace(ROOT / "recipes", tmp_path / "state")
    return SlurmBuilds(SlurmCluster(["--partition=build"], poll=0.01), workspace,
                       ("katpoint",), None), log


def test_a_build_job_slurm_ended_early_fails_its_recipe_with_the_jobs_state(tmp_path,
                                                                             monkeypatch):
    from kernbuild.build.slurm import TIME_LIMIT

    builds, log = _slurm_builds(tmp_path, "NODE_FAIL")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    katpoint = load_suite(ROOT / "recipes").get("katpoint")
    result = builds.build(katpoint, False, None, "0.10-1kern1", "k" * 64)
    assert (result.state, result.job, result.version) == ("failed", "99", "0.10-1kern1")
    assert "katpoint: Slurm job 99 ended NODE_FAIL (exit code 0:0) before its build" \
        in result.error
    args = log.read_text().splitlines()
    assert "--job-name=kern-build-katpoint" in args
    assert args.index("--partition=build") > args.index(f"--time={TIME_LIMIT}")
    wrap = shlex.split(args[args.index("--wrap") + 1])
    assert wrap[1:4] == ["-m", "kernbuild.build.slurm", "build"]
    spec = json.loads(Path(wrap[4]).read_text())
    assert (spec["recipe"], spec["names"], spec["force"]) == ("katpoint", ["katpoint"], False)
    assert Path(wrap[4]).parent.parent == tmp_path / "state" / "builds" / "slurm"
    assert str(Path(wrap[4]).parent) in result.error  # its files are kept, and named


def test_a_build_jobs_own_result_is_the_recipes_and_its_files_go(tmp_path, monkeypatch):
    from kernbuild.build.package import BuildResult
    from kernbuild.build.slurm import result_from_json, result_to_json

    built = BuildResult("katpoint", "0.10-1kern1", "k" * 64, "built",
                        (Path("/s/builds/k/python3-katpoint_0.10-1kern1_all.deb"),), 12.5,
                        ("W: python3-katpoint: no-manual-page",))
    assert result_from_json(result_to_json(built)) == built
    builds, _ = _slurm_builds(tmp_path, "COMPLETED", result_to_json(built))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    katpoint = load_suite(ROOT / "recipes").get("katpoint")
    result = builds.build(katpoint, False, None, "0.10-1kern1", "k" * 64)
    assert result == replace(built, job="99")
    assert list(builds.work.iterdir()) == []
