"""The EOSC LOFAR pilot's three CWL pipelines through the matrix, for real.

Imaging (prefactor-style), time domain (PRESTO) and simulation (Spiel-style) each run
by cwltool and by Toil with Docker; the simulation also by Toil with the real apptainer
and by cwltool with no container at all, in a chroot of the image's packages. A
pipeline's asserts are steps of its workflow, so a cell that passes has checked its
science; these tests read back what the asserts measured, as a person reading the
report would, and check it against the truth the job put in. Toil with its Slurm batch
system runs in test_slurm.py; every pipeline on every CWL target in ci/pipelines.sh.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.conftest import Suite, copy_of, source_mirror_env

pytestmark = pytest.mark.docker

PIPELINES = ("pipeline-imaging", "pipeline-pulsar", "pipeline-simulation")
PRESTO = "presto-d59105f375d0992315c647c2c4b4d22c01fcea6c.tar.gz"  # GitHub only: the mirror


@pytest.fixture(scope="module")
def run(suite: Suite, tmp_path_factory) -> tuple[dict[tuple[str, str], dict], str]:
    """Every pipeline by cwltool and Toil in Docker, the simulation also by Toil on
    apptainer and by cwltool natively: (pipeline, target) -> cell, and the HTML page."""
    html = tmp_path_factory.mktemp("report")
    first = suite.run("test", *[f"--pipeline={p}" for p in PIPELINES], "-t", "cwltool",
                      "-t", "toil", "-j", "2", "--json", env=source_mirror_env(PRESTO))
    # the simulation's cwltool and Toil cells are the first run's, resumed
    second = suite.run("test", "--pipeline", "pipeline-simulation", "-t", "cwltool",
                       "-t", "toil", "-t", "toil-apptainer", "-t", "cwltool-native", "--resume",
                       "--html", str(html), "--json")
    cells = {(c["pipeline"], c["target"]): c
             for result in (first, second) for c in json.loads(result.stdout)}
    return cells, (html / "index.html").read_text()


def log_of(cells, pipeline: str, target: str) -> str:
    [step] = cells[pipeline, target]["steps"]
    assert step["phase"] == "cwl"
    return step["output"]


def test_every_pipeline_passes_with_cwltool_and_toil_and_the_simulation_everywhere(run):
    cells, _ = run
    assert {key: c["status"] for key, c in cells.items()} == {
        **{(p, t): "pass" for p in PIPELINES for t in ("cwltool", "toil")},
        ("pipeline-simulation", "toil-apptainer"): "pass",
        ("pipeline-simulation", "cwltool-native"): "pass"}
    simulation = {t: cells["pipeline-simulation", t] for t in (
        "cwltool", "toil", "toil-apptainer", "cwltool-native")}
    assert {t: (c["form"], c["engine"], c["runner"]) for t, c in simulation.items()} == {
        "cwltool": ("docker", "docker", "cwltool"), "toil": ("docker", "docker", "toil"),
        "toil-apptainer": ("sif", "apptainer", "toil"),
        "cwltool-native": ("packages", "native", "cwltool")}


def test_the_imaging_source_is_on_its_pixel_with_its_flux_and_the_rfi_flagged(run):
    cells, _ = run
    for target in ("cwltool", "toil"):
        log = log_of(cells, "pipeline-imaging", target)
        [(x, y, want_x, want_y, flux, want)] = re.findall(
            r"peak at pixel \((\d+), (\d+)\), want \(([\d.]+), ([\d.]+)\) ok; "
            r"flux ([\d.]+) Jy, want ([\d.]+)", log)
        assert abs(int(x) - float(want_x)) <= 1 and abs(int(y) - float(want_y)) <= 1
        assert abs(float(flux) / float(want) - 1) < 0.1
        [(hit, injected)] = re.findall(r"injected RFI cells flagged: (\d+) / (\d+)", log)
        assert hit == injected and int(injected) > 0
        [clean] = re.findall(r"clean cells flagged: \d+ / \d+ \(([\d.]+)%\)", log)
        assert float(clean) < 5.0
        assert "exactly the outlier" in log and "losoto check: PASS" in log


def test_the_pulsar_is_found_at_its_period_and_dm(run):
    cells, _ = run
    for target in ("cwltool", "toil"):
        log = log_of(cells, "pipeline-pulsar", target)
        [(found, true)] = re.findall(r"best: P = ([\d.]+) s, want ([\d.]+) s", log)
        assert abs(float(found) / float(true) - 1) <= 1e-3
        [(dm, true_dm)] = re.findall(r"best: DM ([\d.]+) \(sigma [\d.]+\), want ([\d.]+)", log)
        assert abs(float(dm) - float(true_dm)) <= 3
        assert "search check: PASS" in log


def test_the_simulation_recovers_every_source_at_its_pixel_with_its_flux(run):
    cells, _ = run
    for target in ("cwltool", "toil-apptainer", "cwltool-native"):
        log = log_of(cells, "pipeline-simulation", target)
        found = re.findall(r"peak at pixel \((\d+), (\d+)\), want \(([\d.]+), ([\d.]+)\) ok; "
                           r"flux ([\d.]+) Jy, want ([\d.]+)", log)
        assert len(found) == 5, log[-3000:]
        for x, y, want_x, want_y, flux, want in found:
            assert abs(int(x) - float(want_x)) <= 1 and abs(int(y) - float(want_y)) <= 1
            assert abs(float(flux) / float(want) - 1) < 0.1
        assert "image check: PASS" in log


def test_the_report_shows_images_runners_results_and_kept_outputs(run):
    _, page = run
    assert "kern/pipeline-simulation:1" in page  # the image, and its packages' versions
    assert re.search(r"pipeline-simulation 1\.0-1kern\d", page)
    assert re.search(r"sha256:[0-9a-f]{64}", page)  # its Docker image id
    assert "<td>apptainer</td><td>toil</td>" in page and "<td>native</td><td>cwltool</td>" in page
    assert "image check: PASS" in page  # a cell's result lines, on the page
    assert re.search(r'href="cells/[^"]*toil-apptainer/joblogs/', page)  # Toil's job logs
    assert re.search(r'href="cells/[^"]*cwltool/out/check-image.txt"', page)


@pytest.mark.slurm
def test_toil_on_slurm_runs_every_cwl_step_as_a_slurm_job(suite: Suite, run, slurm_cluster):
    """``--toil-batch-system slurm``: Toil submits the workflow's steps itself
    (--batchSystem slurm), and Slurm's own records say each of those jobs completed."""
    from kernbuild.matrix.slurm import SlurmExecutor

    result = suite.run("test", "--pipeline", "pipeline-simulation", "-t", "toil",
                       "--executor", "slurm", "--toil-batch-system", "slurm", "--json")
    [cell] = json.loads(result.stdout)
    assert cell["status"] == "pass", cell["reason"]
    log = log_of({("s", "toil"): cell}, "s", "toil")
    jobs = re.findall(r"queued as job (\d+)", log)
    steps = (suite.recipes / "pipeline-simulation" / "simulation.cwl").read_text().count(
        "    run: ")
    assert len(set(jobs)) >= steps, log[-3000:]
    slurm = SlurmExecutor(suite.state / "unused")
    assert {(slurm.job_state(job) or ("unknown",))[0] for job in jobs} == {"COMPLETED"}
    assert "image check: PASS" in log


@pytest.mark.slurm
def test_a_toil_cell_on_the_slurm_executor_runs_inside_its_packed_job(
        suite: Suite, run, slurm_cluster):
    """``--executor slurm`` alone: Toil's cell is packed into a Slurm job like any other,
    Toil running its steps there on its single_machine batch system: no step is a Slurm
    job of its own."""
    result = suite.run("test", "--pipeline", "pipeline-simulation", "-t", "toil",
                       "--executor", "slurm", "--json")
    [cell] = json.loads(result.stdout)
    assert cell["status"] == "pass", cell["reason"]
    assert [s["phase"] for s in cell["steps"]] == ["cwl", "slurm"]  # the job that held it
    log = cell["steps"][0]["output"]
    assert "image check: PASS" in log and "queued as job" not in log, log[-3000:]


def test_a_wrong_expectation_fails_the_imaging_cell_with_the_asserts_message(
        suite: Suite, tmp_path, run):
    """The job file says the source is ten pixels (300") east of where it was put."""
    broken = copy_of(suite, tmp_path)
    job = broken.recipes / "pipeline-imaging" / "imaging-job.yml"
    job.write_text(job.read_text() + 'expect: ["1020,-360,1.0"]\n')
    result = broken.run("test", "--pipeline", "pipeline-imaging", "-t", "cwltool", "--json",
                        check=False)
    assert result.returncode == 1
    [cell] = json.loads(result.stdout)
    assert cell["status"] == "fail"
    # the assert's own line: the peak where the source is, ten pixels from where it was wanted
    found = re.search(r"peak at pixel \((\d+), (\d+)\), want \(([\d.]+), ([\d.]+)\) WRONG",
                      cell["reason"])
    assert found, cell["reason"]
    x, y, want_x, want_y = map(float, found.groups())
    assert abs(abs(x - want_x) - 10) <= 1 and abs(y - want_y) <= 1
