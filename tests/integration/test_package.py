"""Recipes to .debs to a signed repository to apt, on a real Docker engine."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

import kernbuild

from tests.integration.conftest import Suite, copy_of

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def built(suite: Suite) -> dict[str, dict]:
    """katpoint and what it needs (future, katversion), two builds at a time."""
    return suite.package("katpoint", "--jobs", "2")


def install(docker_engine, suite: Suite, *packages: str) -> tuple[int, str]:
    """apt-get install in a clean base container that knows only the repo URL and key."""
    line = "deb [signed-by=/repo/kern-archive-keyring.gpg] file:/repo/current kern-1 main"
    script = (f"echo '{line}' > /etc/apt/sources.list.d/kern.list && apt-get update -q && "
              "apt-get install -y -q --no-install-recommends " + " ".join(packages))
    output = docker_engine.containers.run(
        "kern/base:trixie", ["sh", "-c", script + "; echo EXIT=$?"], remove=True,
        volumes={str(suite.state / "repo"): {"bind": "/repo", "mode": "ro"}})
    text = output.decode()
    return int(text.rsplit("EXIT=", 1)[1]), text


def test_package_builds_dependencies_first_and_publishes(suite, built):
    assert {name: r["state"] for name, r in built.items()} == {
        "future": "built", "katversion": "built", "katpoint": "built"}
    assert list(built) == ["future", "katversion", "katpoint"]  # the build order
    assert {("python3-future", "1.0.0-1kern1"), ("python3-katversion", "1.3-1kern1"),
            ("python3-katpoint", "0.10.3-1kern1")} <= suite.repo_versions()
    for result in built.values():
        assert not [line for line in result["lintian"] if line.startswith("E:")], result


def test_installed_from_the_repository_it_runs(suite, built):
    result = suite.run("smoke", "katpoint")
    # katversion (our package) stamped the version; the Sun is where it belongs.
    assert "Sun az 2.88100 el -0.78588 rad" in result.stdout


def test_second_run_builds_nothing(suite, built):
    result = suite.run("package", "katpoint")
    assert "nothing to build: every package is up to date" in result.stdout
    again = suite.package("katpoint")
    assert {r["state"] for r in again.values()} == {"cached"}
    assert {r["key"] for r in again.values()} == {r["key"] for r in built.values()}


def test_forced_rebuild_gives_identical_debs(suite, built):
    before = {Path(d).name: hashlib.sha256(Path(d).read_bytes()).hexdigest()
              for d in built["katversion"]["debs"]}
    rebuilt = suite.package("katversion", "--force")["katversion"]
    assert rebuilt["state"] == "built"
    after = {Path(d).name: hashlib.sha256(Path(d).read_bytes()).hexdigest()
             for d in rebuilt["debs"]}
    assert after == before  # and the repository accepted it: same name, same bytes


def test_a_change_rebuilds_the_recipe_and_its_reverse_dependencies_only(
        docker_engine, suite, built, tmp_path):
    changed = copy_of(suite, tmp_path)
    recipe = changed.recipes / "future.yaml"
    recipe.write_text(recipe.read_text().replace('version: "1.0.0"\n',
                                                 'version: "1.0.0"\nrevision: 2\n'))
    results = {name: (r["state"], r["version"]) for name, r in changed.package("katpoint").items()}
    assert results == {"future": ("built", "1.0.0-2kern1"),
                       "katversion": ("cached", "1.3-1kern1"),
                       "katpoint": ("built", "0.10.3-1kern1+b1")}  # a binary-only rebuild
    versions = changed.repo_versions()
    assert {("python3-future", "1.0.0-1kern1"), ("python3-future", "1.0.0-2kern1"),
            ("python3-katpoint", "0.10.3-1kern1"),
            ("python3-katpoint", "0.10.3-1kern1+b1")} <= versions
    assert "Sun az" in changed.run("smoke", "katpoint").stdout  # the rebuild installs and runs
    # The old version stays installable by pinning it.
    code, output = install(docker_engine, changed, "python3-future=1.0.0-1kern1")
    assert code == 0, output
    assert "Setting up python3-future (1.0.0-1kern1)" in output


FAILING = textwrap.dedent("""\
    name: {name}
    version: "1.0"
    summary: a recipe whose build {what}
    description: |
      Made by the tests.
    license: MIT
    source:
      path: {name}-src
    build:
      system: make
    packages:
      {name}:
        depends: [{depends}]
    """)


def test_offline_build_failure_is_reported_and_leaves_no_trace(suite, built, tmp_path):
    broken = copy_of(suite, tmp_path)
    source = broken.recipes / "netfetch-src"
    source.mkdir()
    # The build reaches for the network: it must fail, since builds run offline.
    (source / "Makefile").write_text(
        "all:\n\tpython3 -c \"import socket; "
        "socket.create_connection(('deb.debian.org', 80), 5)\"\n"
        "install:\n")
    (broken.recipes / "netfetch.yaml").write_text(
        FAILING.format(name="netfetch", what="needs the network", depends=""))
    (broken.recipes / "needsnet.yaml").write_text(
        FAILING.format(name="needsnet", what="never starts", depends="netfetch"))
    (broken.recipes / "needsnet-src").mkdir()
    (broken.recipes / "needsnet-src" / "Makefile").write_text("all:\ninstall:\n")
    generations = sorted(p.name for p in (broken.state / "repo/generations").iterdir())

    result = broken.run("package", "needsnet", check=False)

    assert result.returncode == 1
    assert str(Path(kernbuild.__file__).parent) not in result.stderr  # no traceback of ours
    assert "error: netfetch: dpkg-buildpackage failed" in result.stderr
    assert "the whole log is kept in" in result.stderr
    assert "error: needsnet: needs netfetch, which failed" in result.stderr
    log = next((broken.state / "builds/logs").glob("netfetch-*.log")).read_text()
    assert "Temporary failure in name resolution" in log or "unreachable" in log.lower()
    # Nothing half-written: no cache entry, no new repository generation.
    assert not [p for p in (broken.state / "builds").iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in (broken.state / "repo/generations").iterdir()) == generations


def test_compiled_library_with_several_packages(suite):
    results = suite.package("wcslib")
    assert results["wcslib"]["state"] == "built", results
    debs = sorted(Path(d).name.split("_")[0] for d in results["wcslib"]["debs"])
    assert debs == ["libwcs8", "wcslib-dev", "wcslib-tools"]
    suite.run("smoke", "wcslib")


def test_cmake_project_from_a_local_path(suite, built, tmp_path):
    local = copy_of(suite, tmp_path)
    source = local.recipes / "skyhello-src"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(textwrap.dedent("""\
        cmake_minimum_required(VERSION 3.13)
        project(skyhello C)
        set(GREETING "world" CACHE STRING "who to greet")
        add_executable(skyhello main.c)
        target_compile_definitions(skyhello PRIVATE GREETING="${GREETING}")
        install(TARGETS skyhello DESTINATION bin)
        """))
    (source / "main.c").write_text(
        '#include <stdio.h>\nint main(void) { printf("hello, %s\\n", GREETING); return 0; }\n')
    (local.recipes / "skyhello.yaml").write_text(textwrap.dedent("""\
        name: skyhello
        version: "1.0"
        summary: greets the sky
        description: |
          A C program built with cmake, for the tests.
        license: MIT
        source:
          path: skyhello-src
        build:
          system: cmake
          configure: ["-DGREETING=radio sky $HOME"]   # a space and a '$': quoted for make and sh
        packages:
          skyhello: {}
        smoke:
          - run: test "$(skyhello)" = 'hello, radio sky $HOME'
        """))
    assert local.package("skyhello")["skyhello"]["state"] == "built"
    local.run("smoke", "skyhello")


def test_an_unreachable_registry_base_is_one_clear_error(suite, built, tmp_path):
    local = copy_of(suite, tmp_path)
    settings = local.recipes / "suite.yaml"
    settings.write_text(settings.read_text().replace("base: trixie",
                                                     "base: 127.0.0.1:9/kern/nope:1"))
    result = local.run("package", "katversion", check=False)
    assert result.returncode == 1
    assert "error: cannot pull the base image 127.0.0.1:9/kern/nope:1" in result.stderr
    assert "docker load" in result.stderr and "Traceback" not in result.stderr
