"""Images from the signed repository, on a real Docker engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Suite

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def wcslib_image(suite: Suite) -> dict:
    """kern/wcslib:1, made from a state where nothing is built yet."""
    [entry] = json.loads(suite.run("image", "wcslib", "--json").stdout)
    return entry


def test_image_of_an_unbuilt_recipe_builds_its_packages_first(suite, wcslib_image):
    assert {name for name, _ in suite.repo_versions()} >= {"libwcs8", "wcslib-dev",
                                                          "wcslib-tools"}
    assert [r["exit_code"] for r in wcslib_image["smoke"]] == [0]
    assert wcslib_image["lock"]["packages"] == {"libwcs8": "8.4+ds-1kern1",
                                        "wcslib-tools": "8.4+ds-1kern1"}  # no -dev in images


def test_labels_and_lockfile_say_what_went_in(docker_engine, suite, wcslib_image):
    image = docker_engine.images.get("kern/wcslib:1")
    assert image.id == wcslib_image["lock"]["image"]
    labels = image.labels
    assert labels["org.kernsuite.packages"] == "libwcs8=8.4+ds-1kern1 wcslib-tools=8.4+ds-1kern1"
    assert labels["org.opencontainers.image.version"] == "8.4+ds-1kern1"
    assert labels["org.opencontainers.image.base.digest"] == wcslib_image["lock"]["base_digest"]
    # wcslib comes from Debian's source package: the pinned .dsc's sum.
    assert labels["org.kernsuite.source-sha256"] == (
        "wcslib=2304f8446d0128fcb2a581b8e045dabef499275d857e197dea924e376c6232a8")
    lock = json.loads((suite.recipes.parent / "kern.lock").read_text())
    assert lock["images"]["kern/wcslib:1"]["image"] == image.id


def test_no_docs_or_apt_lists_in_the_image(docker_engine, wcslib_image):
    # wcslib-tools ships wcsware.1 (the .deb has it: see the package's contents)
    script = ("ls /usr/share/doc/libwcs8 /usr/share/doc/wcslib-tools; "
              "ls /usr/share/man/man1 | grep -c wcsware; "
              "find /var/lib/apt/lists /var/cache/apt -type f ! -name lock | wc -l")
    output = docker_engine.containers.run("kern/wcslib:1", ["sh", "-c", script],
                                          remove=True).decode().split()
    # licenses stay; man pages, documentation, package lists and caches do not
    assert output == ["/usr/share/doc/libwcs8:", "copyright", "/usr/share/doc/wcslib-tools:",
                      "copyright", "0", "0"]


def test_a_failing_smoke_step_fails_the_command_with_its_output(suite, wcslib_image):
    recipe = suite.recipes / "wcslib.yaml"
    original = recipe.read_text()
    recipe.write_text(original + "  - run: echo 'the sky is falling' >&2; exit 3\n")
    try:
        result = suite.run("image", "wcslib", check=False)
    finally:
        recipe.write_text(original)
    assert result.returncode == 1
    assert "error: kern/wcslib:1 (docker): smoke step failed (exit 3)" in result.stderr
    assert "the sky is falling" in result.stderr
    assert "1 failed" in result.stdout


def test_committed_dockerfile_builds_with_plain_docker_build(suite, wcslib_image):
    """dockerfiles/ from the checkout, the repository served on loopback, the docker CLI."""
    import functools
    import http.server
    import subprocess
    import threading

    from tests.integration.conftest import ROOT

    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(suite.state / "repo/current"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        build = subprocess.run(
            ["docker", "build", "--network", "host", "-t", "kernbuild-test/wcslib:plain",
             "--build-arg", f"KERN_REPO=http://127.0.0.1:{server.server_port}",
             "-f", str(ROOT / "dockerfiles/wcslib/Dockerfile"), str(ROOT / "dockerfiles")],
            capture_output=True, text=True)
    finally:
        server.shutdown()
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = subprocess.run(["docker", "run", "--rm", "kernbuild-test/wcslib:plain", "sh", "-c",
                          "echo '187.5 2.05' | wcsware -h 2>&1 | head -1; command -v wcsware"],
                         capture_output=True, text=True)
    subprocess.run(["docker", "rmi", "-f", "kernbuild-test/wcslib:plain"], capture_output=True)
    assert run.stdout.strip().endswith("/usr/bin/wcsware")


def test_sif_and_cvmfs_sandbox_run_the_smoke_steps(suite, wcslib_image, tmp_path):
    from kernbuild.images.sif import verify_sif

    sifs, cvmfs = tmp_path / "sif", tmp_path / "cvmfs"
    args = ("image", "wcslib", "-f", "sif", "-f", "sandbox", "-o", str(sifs), "--cvmfs",
            str(cvmfs), "--json")
    [entry] = json.loads(suite.run(*args).stdout)
    sif = Path(entry["lock"]["sif"]["path"])
    assert sif == sifs / "wcslib_1.sif"
    info = verify_sif(sif)
    assert info["arch"] == "amd64"
    # apptainer build records where it built from; kernbuild's own assembly, the image's
    # rendered Singularity definition
    assert ("bootstrap: docker-archive" in info["definition"]
            if entry["lock"]["sif"]["built_with"] == "apptainer build"
            else "kern-apt-install" in info["definition"]), info["definition"]
    assert info["labels"]["org.kernsuite.packages"] == " ".join(
        f"{name}={version}" for name, version in entry["lock"]["packages"].items())
    # each smoke step by apptainer exec, then apptainer test: the real apptainer
    assert [r["exit_code"] for r in entry["sif_smoke"]] == [0, 0]
    assert "apptainer" in entry["lock"]["sif"]["tested_with"]
    sandbox = entry["lock"]["sandbox"]
    assert sandbox["published"] is True
    assert Path(sandbox["path"]).parent == cvmfs / ".images"
    assert (cvmfs / "kern/wcslib:1").resolve() == Path(sandbox["path"]).resolve()
    assert (Path(sandbox["path"]) / ".singularity.d/actions/exec").exists()
    assert [r["exit_code"] for r in entry["sandbox_smoke"]] == [0]
    [again] = json.loads(suite.run(*args).stdout)
    assert again["lock"]["sandbox"]["published"] is False  # same digest: nothing to do
    lock = json.loads((suite.recipes.parent / "kern.lock").read_text())["images"]["kern/wcslib:1"]
    assert lock["sif"]["sha256"] == again["lock"]["sif"]["sha256"]
    assert "smoke" not in lock and "smoke" not in lock["sif"]
