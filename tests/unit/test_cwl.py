"""The CWL pipelines, without Docker: each workflow and job file valid CWL v1.2 for cwltool,
each tool naming its pipeline's kernbuild image, and the SIF names cwltool looks for."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kernbuild.recipe import load_suite
from kernbuild.runtime.cwl import CwltoolRunner, sif_names

ROOT = Path(__file__).resolve().parents[2]
CWL_PIPELINES = [r for r in load_suite(ROOT / "recipes").pipelines if r.pipeline.cwl]


def test_the_suite_has_the_three_pilot_pipelines():
    assert sorted(r.name for r in CWL_PIPELINES) == [
        "pipeline-imaging", "pipeline-pulsar", "pipeline-simulation"]


@pytest.mark.skipif(CwltoolRunner().program() is None,
                    reason="cwltool is not installed (pip install '.[cwl]')")
@pytest.mark.parametrize("recipe", CWL_PIPELINES, ids=lambda r: r.name)
def test_cwltool_validates_the_workflow_and_its_job(recipe):
    cwl = recipe.pipeline.cwl
    done = subprocess.run([CwltoolRunner().program(), "--validate",
                           str(ROOT / "recipes" / cwl.workflow), str(ROOT / "recipes" / cwl.job)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid CWL" in done.stdout + done.stderr


@pytest.mark.parametrize("recipe", CWL_PIPELINES, ids=lambda r: r.name)
def test_every_tool_runs_in_the_pipelines_own_image(recipe):
    directory = (ROOT / "recipes" / recipe.pipeline.cwl.workflow).parent
    tools = [yaml.safe_load(p.read_text()) for p in directory.rglob("*.cwl")]
    tools = [t for t in tools if t.get("class") == "CommandLineTool"]
    assert tools
    for tool in tools:
        assert tool["cwlVersion"] == "v1.2"
        # a hint: Docker and Apptainer run the image, cwltool --no-container what is installed
        assert "DockerRequirement" not in tool.get("requirements", {}), tool.get("id")
        hints = tool["hints"]
        assert hints["DockerRequirement"]["dockerPull"] == f"kern/{recipe.name}:1", tool.get("id")


def test_sif_names_are_those_cwltool_and_cwltool_3_1_look_for():
    assert sif_names("kern/pipeline-imaging:1") == ["kern_s_pipeline-imaging:1.sif",
                                                    "kern_pipeline-imaging:1.sif"]
    assert sif_names("kern/a_b:1")[0] == "kern_s_a___b:1.sif"


def test_cwltool_and_toil_link_one_sif_into_their_shared_cache_at_once(tmp_path: Path,
                                                                      monkeypatch):
    """Both apptainer CWL targets prepare the same SIF at the same moment (the matrix's
    workers do): each name ends as a link to the SIF, and neither raises."""
    import os
    import threading
    import time

    real_link = os.link

    def slow_link(source, destination):  # every thread is past its checks before one links
        time.sleep(0.05)
        real_link(source, destination)

    monkeypatch.setattr(os, "link", slow_link)

    from kernbuild.runtime import ImageRef, RuntimeContext
    from kernbuild.runtime.cwl import CwltoolApptainerRunner, ToilApptainerRunner

    class Verified:  # the SIF's signature is not what this test is about
        def prepare(self, image):
            pass

    context = RuntimeContext(lambda: None, tmp_path / "state", tmp_path / "repo", None)
    sif = tmp_path / "pipeline_1.sif"
    sif.write_bytes(b"SIF" * 1000)
    image = ImageRef(str(sif), "sha256:1", "kern/pipeline:1")
    runners = [kind(context) for kind in (CwltoolApptainerRunner, ToilApptainerRunner) * 4]
    for runner in runners:
        runner._apptainer = Verified()
    start, errors = threading.Barrier(len(runners)), []

    def prepare(runner):
        start.wait()
        try:
            runner.prepare(image)
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    cache = runners[0].sif_cache()
    assert all(os.path.samefile(cache / name, sif) for name in sif_names(image.tag))
    assert sorted(p.name for p in cache.iterdir()) == sorted(sif_names(image.tag))
