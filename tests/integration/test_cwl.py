"""A CWL pipeline through the matrix: cwltool with Docker, Toil with the real apptainer.

The simulation pipeline (Spiel-style) predicts five point sources into a Measurement Set
with WSClean, images them back and checks each source's position and flux: its assert
is a step of the workflow, so a workflow that completes has checked the science. The
imaging and time-domain pipelines run the same way in `bash ci/pipelines.sh`.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Suite, copy_of

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def cells(suite: Suite) -> dict[str, dict]:
    result = suite.run("test", "--pipeline", "pipeline-simulation", "-t", "cwltool",
                       "-t", "toil-apptainer", "--json")
    return {c["target"]: c for c in json.loads(result.stdout)}


def test_the_workflow_passes_with_cwltool_and_with_toil_on_apptainer(cells):
    assert {target: c["status"] for target, c in cells.items()} == {
        "cwltool": "pass", "toil-apptainer": "pass"}
    assert cells["cwltool"]["form"] == "docker" and cells["toil-apptainer"]["form"] == "sif"
    for cell in cells.values():
        [step] = cell["steps"]
        assert step["phase"] == "cwl"


def test_the_check_recovered_every_source_at_its_pixel_with_its_flux(cells):
    """The workflow's own assert printed what it measured; read it back, as a person would."""
    import re

    log = cells["cwltool"]["steps"][0]["output"]
    found = re.findall(r"peak at pixel \((\d+), (\d+)\), want \(([\d.]+), ([\d.]+)\) ok; "
                       r"flux ([\d.]+) Jy, want ([\d.]+)", log)
    assert len(found) == 5, log[-3000:]
    for x, y, want_x, want_y, flux, want in found:
        assert abs(int(x) - float(want_x)) <= 1 and abs(int(y) - float(want_y)) <= 1
        assert abs(float(flux) / float(want) - 1) < 0.1
    assert "image check: PASS" in log


def test_wrong_science_fails_the_cell(suite: Suite, tmp_path, cells):
    """Imaging without cleaning leaves sidelobes the check refuses: the cell fails."""
    broken = copy_of(suite, tmp_path)
    job = broken.recipes / "pipeline-simulation" / "simulation-job.yml"
    job.write_text(job.read_text().replace("niter: 10000", "niter: 0"))
    result = broken.run("test", "--pipeline", "pipeline-simulation", "-t", "cwltool",
                        "--json", check=False)
    assert result.returncode == 1
    [cell] = json.loads(result.stdout)
    assert cell["status"] == "fail" and "the workflow failed" in cell["reason"]
