"""The matrix's HTML report, as a release manager reads it: when and where it ran, each
image with its versions and digests, and each cell's runner, result line (what the asserts
measured), skip reason, failure's assert and kept outputs."""

from __future__ import annotations

from kernbuild.matrix import MatrixRun
from kernbuild.matrix.report import result_lines, write_html
from kernbuild.matrix.state import CellResult
from kernbuild.results import LockEntry, SifRecord, StepResult


def test_the_html_report_shows_what_each_cell_found_and_why_one_did_not(tmp_path):
    found = CellResult("k1", "pipeline-simulation", "pipeline-simulation", "sif",
                       "toil-apptainer", "pass", "", 12.5, [
        StepResult("toil-cwl-runner x.cwl", 0, "INFO [job check_image] start\n"
                   "source at RA 1.0 Dec 2.0: peak at pixel (40, 52), want (40.00, 52.00) ok\n"
                   "image check: PASS\nINFO Final process status is success\n", 12.0,
                   phase="cwl", name="toil-apptainer")])
    assert result_lines(found) == [
        "source at RA 1.0 Dec 2.0: peak at pixel (40, 52), want (40.00, 52.00) ok",
        "image check: PASS"]
    skipped = CellResult("k2", "wcs-roundtrip", "wcslib", "sif", "apptainer", "skip",
                         "neither apptainer nor singularity is installed")
    failed = CellResult("k3", "wcs-roundtrip", "wcslib", "docker", "udocker", "fail",
                        "assertion x failed (exit 1)", 1.0,
                        [StepResult("false", 1, "RA 187.49 (want 187.50)\n", 0.5,
                                    phase="assert", name="x")])
    kept = tmp_path / "kept"
    (kept / "k1" / "out").mkdir(parents=True)
    (kept / "k1" / "out" / "check-image.txt").write_text("image check: PASS\n")
    image = LockEntry("kern/pipeline-simulation:1", "pipeline-simulation",
                      packages={"wsclean": "3.6-3", "pipeline-simulation": "1.0-1kern1"},
                      image="sha256:" + "ab" * 32, size=612_000_000,
                      sif=SifRecord("x.sif", "cd" * 32, 1, "amd64", "apptainer"))
    page = write_html(MatrixRun([found, skipped, failed], [image], kept),
                      tmp_path / "html").read_text()
    assert "peak at pixel (40, 52), want (40.00, 52.00) ok" in page
    assert "neither apptainer nor singularity is installed" in page  # without clicking
    assert "assertion x failed (exit 1)" in page and "RA 187.49 (want 187.50)" in page
    assert "by kernbuild" in page and page.count('class="pass"') == 1
    # the image: its packages' exact versions, its id, size and SIF digest
    assert "wsclean 3.6-3" in page and "ab" * 32 in page and "cd" * 32 in page
    assert "612.0 MB" in page
    # the cell's target and runner apart, and its kept report linked and copied
    assert "<td>apptainer</td><td>toil</td>" in page
    link = "cells/pipeline-simulation-pipeline-simulation-sif-toil-apptainer/out/check-image.txt"
    assert f'href="{link}"' in page
    assert (tmp_path / "html" / link).read_text() == "image check: PASS\n"
