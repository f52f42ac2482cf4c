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
