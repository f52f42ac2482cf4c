"""Integration fixtures: a real Docker engine, the real suite, the real CLI.

Without an engine these tests skip, except where KERNBUILD_REQUIRE_DOCKER=1
(ci/test.sh sets it): there a missing engine is a failure, so CI can never
report skipped integration tests as a pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _engine_error() -> str:
    try:
        from kernbuild import engine

        engine.connect()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine" here
        return str(exc)
    return ""


def require_tools(*tools: tuple[str, str]) -> None:
    """Skip without these (program, Debian package) tools, or fail where CI installs them."""
    missing = [package for program, package in tools if not shutil.which(program)]
    if missing:
        problem = f"needs {' '.join(missing)} (apt-get install {' '.join(missing)})"
        if os.environ.get("KERNBUILD_REQUIRE_DOCKER") == "1":  # CI installs them: never skip
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="session", autouse=True)
def shared_download_cache(tmp_path_factory):
    """One download cache for every state directory of the session (kernbuild's
    KERNBUILD_DOWNLOAD_CACHE): each test's fresh state still builds everything, but
    fetches each Debian package (CUDA's included) once per session, not once per test.
    A cache named by the environment already (CI's, kept between runs) is used as it is."""
    from kernbuild.build.downloads import CACHE_ENV

    if os.environ.get(CACHE_ENV):
        yield Path(os.environ[CACHE_ENV])
        return
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("downloads")
        patch.setenv(CACHE_ENV, str(cache))
        yield cache


@pytest.fixture(scope="session")
def docker_engine():
    """A client of the running engine; skip (or fail in CI) without one."""
    problem = _engine_error()
    if problem:
        if os.environ.get("KERNBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"KERNBUILD_REQUIRE_DOCKER=1 but: {problem}")
        pytest.skip(f"no Docker engine: {problem}")
    from kernbuild import engine

    return engine.connect()


#: The source mirror of tools that live only on GitHub (unreachable here): ../shared/sources.
SOURCE_MIRROR = ROOT.parent / "shared" / "sources"


def source_mirror_env(tarball: str) -> dict[str, str]:
    """The environment naming the source mirror, for a test that needs ``tarball`` from
    it; skip (or fail where CI provides the mirror) without it."""
    if not (SOURCE_MIRROR / tarball).is_file():
        problem = f"no source mirror with {tarball} at {SOURCE_MIRROR}"
        if os.environ.get("KERNBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return {"KERNBUILD_SOURCE_MIRROR": str(SOURCE_MIRROR)}


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A one-node cluster that answers; skip (or fail in CI) without one."""
    from kernbuild.runtime.slurm import SlurmCluster

    problem = SlurmCluster().unavailable()
    if problem:
        if os.environ.get("KERNBUILD_REQUIRE_SLURM") == "1":
            pytest.fail(f"KERNBUILD_REQUIRE_SLURM=1 but: {problem}")
        pytest.skip(f"no Slurm cluster: {problem}")


@dataclass
class Suite:
    """A copy of the repository's recipes with its own state directory."""

    recipes: Path
    state: Path

    def run(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "kernbuild.cli", "--recipes", str(self.recipes),
             "--state", str(self.state), *args],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"kernbuild {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def package(self, *args: str, check: bool = True) -> dict[str, dict]:
        """``kernbuild package --json``: recipe name -> its result."""
        result = self.run("package", "--json", *args, check=check)
        return {r["recipe"]: r for r in json.loads(result.stdout or "[]")}

    def repo_versions(self) -> set[tuple[str, str]]:
        return {(p["name"], p["version"])
                for p in json.loads(self.run("repo", "list", "--json").stdout)}


def make_suite(tmp: Path) -> Suite:
    recipes = tmp / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    return Suite(recipes, tmp / "state")


@pytest.fixture(scope="module")
def suite(docker_engine, tmp_path_factory) -> Suite:
    """The suite in a fresh state directory, shared by one test module."""
    return make_suite(tmp_path_factory.mktemp("suite"))


def copy_of(suite: Suite, tmp_path: Path) -> Suite:
    """An independent copy of a built suite: recipes, source cache, builds, repository, key.

    Not the image and matrix caches: they are large, and a native target's chroot holds
    device nodes (its /dev/zero) that a file copy would read forever.
    """
    other = Suite(tmp_path / "recipes", tmp_path / "state")
    shutil.copytree(suite.recipes, other.recipes)
    other.state.mkdir()
    for part in ("sources", "builds", "repo", "gnupg"):
        if (suite.state / part).exists():
            shutil.copytree(suite.state / part, other.state / part, symlinks=True,
                            ignore=shutil.ignore_patterns("S.gpg-agent*"))  # agent sockets
    return other


@pytest.fixture(scope="session")
def wcslib_built(docker_engine, tmp_path_factory) -> Suite:
    """The suite with wcslib (a C library, minutes to compile here) and wcs-roundtrip
    built and published, once per session: the template of :func:`wcslib_suite`."""
    template = make_suite(tmp_path_factory.mktemp("wcslib-built"))
    template.run("package", "wcs-roundtrip")
    return template


@pytest.fixture(scope="module")
def wcslib_suite(wcslib_built: Suite, tmp_path_factory) -> Suite:
    """A module's own suite, wcslib and wcs-roundtrip built already (a copy of
    :func:`wcslib_built`: its sources, builds, repository and key), for the modules
    that test what is done with them, not how they are built."""
    return copy_of(wcslib_built, tmp_path_factory.mktemp("suite"))
