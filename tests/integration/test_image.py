"""Images from the signed repository, on a real Docker engine."""

from __future__ import annotations

import json

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
    assert wcslib_image["packages"] == {"libwcs8": "8.4+ds-1kern1",
                                        "wcslib-tools": "8.4+ds-1kern1"}  # no -dev in images


def test_labels_and_lockfile_say_what_went_in(docker_engine, suite, wcslib_image):
    image = docker_engine.images.get("kern/wcslib:1")
    assert image.id == wcslib_image["image"]
    labels = image.labels
    assert labels["org.kernsuite.packages"] == "libwcs8=8.4+ds-1kern1 wcslib-tools=8.4+ds-1kern1"
    assert labels["org.opencontainers.image.version"] == "8.4+ds-1kern1"
    assert labels["org.opencontainers.image.base.digest"] == wcslib_image["base_digest"]
    assert labels["org.kernsuite.source-sha256"] == (
        "wcslib=54413ae2025ad5c0df1946fafec1844206d317dc3fb74a7f5644969120f73431")
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
    assert "error: kern/wcslib:1: smoke step failed (exit 3)" in result.stderr
    assert "the sky is falling" in result.stderr
    assert "1/2 passed" in result.stdout
