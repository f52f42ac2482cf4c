"""The matrix's HTML report: the grid, and each cell's result line, as a release manager
reads it (what the asserts measured; why a cell was skipped; a failure's assert)."""

from __future__ import annotations

from kernbuild.matrix.report import result_lines, write_html
from kernbuild.matrix.state import CellResult
from kernbuild.results import StepResult


def test_the_html_report_shows_what_each_cell_found_and_why_one_did_not(tmp_path):
    found = CellResult("k1", "pipeline-simulation", "pipeline-simulation", "docker",
                       "cwltool", "pass", "", 12.5, [
        StepResult("cwltool x.cwl", 0, "INFO [job check_image] start\n"
                   "source at RA 1.0 Dec 2.0: peak at pixel (40, 52), want (40.00, 52.00) ok\n"
                   "image check: PASS\nINFO Final process status is success\n", 12.0,
                   phase="cwl", name="cwltool")])
    assert result_lines(found) == [
        "source at RA 1.0 Dec 2.0: peak at pixel (40, 52), want (40.00, 52.00) ok",
        "image check: PASS"]
    skipped = CellResult("k2", "wcs-roundtrip", "wcslib", "sif", "apptainer", "skip",
                         "neither apptainer nor singularity is installed")
    failed = CellResult("k3", "wcs-roundtrip", "wcslib", "docker", "udocker", "fail",
                        "assertion x failed (exit 1)", 1.0,
                        [StepResult("false", 1, "RA 187.49 (want 187.50)\n", 0.5,
                                    phase="assert", name="x")])
    page = write_html([found, skipped, failed], tmp_path).read_text()
    assert "peak at pixel (40, 52), want (40.00, 52.00) ok" in page
    assert "neither apptainer nor singularity is installed" in page  # without clicking
    assert "assertion x failed (exit 1)" in page and "RA 187.49 (want 187.50)" in page
    assert "by kernbuild" in page and page.count('class="pass"') == 1
