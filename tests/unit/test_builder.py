"""The builder's keys, cache and scheduling, with the container step replaced.

The repository and the cache are real; only ``PackageBuilder.build`` (the part
that needs Docker) is swapped for one that makes a tiny .deb with dpkg-deb.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time


import pytest

from kernbuild.build import BuildEnvironment, PackageBuilder
from kernbuild.build.package import BUILD_FORMAT
from kernbuild.errors import KernError
from kernbuild.recipe import load_suite
from kernbuild.recipe.model import Recipe
from kernbuild.repo import AptRepository, SigningKey
from kernbuild.sources import SourceCache
from kernbuild.workspace import Workspace
from tests.conftest import recipe_text

pytestmark = pytest.mark.skipif(not (shutil.which("dpkg-deb") and shutil.which("apt-ftparchive")
                                     and shutil.which("gpg")),
                                reason="needs dpkg-deb, apt-ftparchive (apt-utils) and gpg")


class FakeBuilder(PackageBuilder):
    """Builds a one-file .deb per binary package instead of running a container.

    Records the recipes it was asked to build (``calls``) and the most builds that
    ran at once (``peak``); ``fail`` names recipes whose build fails.
    """

    def setup(self, fail: set[str], delay: float) -> "FakeBuilder":
        self.fail, self.delay = fail, delay
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.peak = 0
        self.lock = threading.Lock()
        return self

    def build(self, recipe: Recipe, version: str):
        with self.lock:
            self.calls.append(recipe.name)
            self.running.add(recipe.name)
            self.peak = max(self.peak, len(self.running))
        time.sleep(self.delay)
        with self.lock:
            self.running.discard(recipe.name)
        if recipe.name in self.fail:
            raise KernError(f"{recipe.name}: dpkg-buildpackage failed (exit 2)")
        out = self.workspace.builds / self.key(recipe)
        out.mkdir(parents=True, exist_ok=True)
        debs = []
        for package in recipe.packages:
            root = out / f"root-{package.name}"
            (root / "DEBIAN").mkdir(parents=True)
            (root / "DEBIAN/control").write_text(
                f"Package: {package.name}\nVersion: {version}\nArchitecture: all\n"
                f"Maintainer: t <t@example.org>\nDescription: test\n")
            deb = out / f"{package.name}_{version}_all.deb"
            # Reproducible like the real builds: mtimes clamped to SOURCE_DATE_EPOCH.
            subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build",
                            str(root), str(deb)], check=True, capture_output=True,
                           env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
            shutil.rmtree(root)
            debs.append(deb)
        (out / "manifest.json").write_text(json.dumps(
            {"version": version, "debs": [d.name for d in debs]}))
        return tuple(debs), ()


@pytest.fixture
def make_builder(suite_dir, tmp_path):
    def make(jobs: int = 1, fail: set[str] | None = None, image: str = "sha256:build1",
             delay: float = 0.0) -> FakeBuilder:
        suite = load_suite(suite_dir)
        workspace = Workspace(suite_dir, tmp_path / "state")
        key = SigningKey.ensure(workspace.gnupg)
        builder = FakeBuilder(
            suite=suite, workspace=workspace,
            environment=BuildEnvironment("base", "sha256:base", "build", image),
            sources=SourceCache(workspace.sources),
            repo=AptRepository(workspace.repo, "kern-9", key),
            connect=lambda: pytest.fail("no engine in unit tests"), jobs=jobs)
        return builder.setup(fail or set(), delay)
    yield make
    subprocess.run(["gpgconf", "--homedir", str(tmp_path / "state/gnupg"), "--kill", "all"],
                   capture_output=True)


def test_builds_in_order_then_publishes(make_builder):
    builder = make_builder()
    results = builder.run(["cc"])
    assert [(r.recipe, r.state) for r in results] == [("aa", "built"), ("bb", "built"),
                                                      ("cc", "built")]
    assert builder.calls == ["aa", "bb", "cc"]
    assert {(p.name, p.version) for p in builder.repo.packages()} == {
        ("python3-aa", "1.0-1kern9"), ("python3-bb", "1.0-1kern9"), ("python3-cc", "1.0-1kern9")}


def test_second_run_is_all_cached(make_builder):
    make_builder().run(["cc"])
    again = make_builder()
    generation = again.repo.current_generation()
    assert [r.state for r in again.run(["cc"])] == ["cached"] * 3
    assert again.calls == []
    assert again.repo.current_generation() == generation  # nothing republished


def test_a_change_rebuilds_reverse_dependencies_only(make_builder, suite_dir):
    make_builder().run(["cc"])
    (suite_dir / "bb.yaml").write_text(recipe_text("bb", build_depends=["python3-aa"])
                                       .replace('version: "1.0"', 'version: "1.1"'))
    builder = make_builder()
    results = {r.recipe: (r.state, r.version) for r in builder.run(["cc"])}
    # cc is rebuilt against the new bb: a binary-only rebuild, never new bytes under
    # an already published version.
    assert results == {"aa": ("cached", "1.0-1kern9"), "bb": ("built", "1.1-1kern9"),
                       "cc": ("built", "1.0-1kern9+b1")}
    assert {p.version for p in builder.repo.packages() if p.name == "python3-cc"} == {
        "1.0-1kern9", "1.0-1kern9+b1"}


def test_a_new_build_image_rebuilds_everything(make_builder):
    make_builder().run(["cc"])
    rebuilt = make_builder(image="sha256:build2").run(["cc"])
    assert [(r.state, r.version) for r in rebuilt] == [("built", "1.0-1kern9+b1")] * 3
    again = make_builder(image="sha256:build3").run(["aa"])
    assert [(r.state, r.version) for r in again] == [("built", "1.0-1kern9+b2")]


def test_a_forced_rebuild_keeps_its_version(make_builder):
    make_builder().run(["aa"])
    builder = make_builder()
    [result] = builder.run(["aa"], force=True)
    assert (result.state, result.version) == ("built", "1.0-1kern9")


def test_keys_cover_format_dependencies_and_settings(make_builder, suite_dir):
    builder = make_builder()
    aa, bb = builder.suite.get("aa"), builder.suite.get("bb")
    assert builder.key(aa) != builder.key(bb)
    (suite_dir / "suite.yaml").write_text("name: kern\nrelease: 10\ndate: 2026-05-01\n")
    renamed = make_builder()
    assert renamed.key(renamed.suite.get("aa")) != builder.key(aa)


def test_bumping_the_build_format_changes_every_key(make_builder, monkeypatch):
    builder = make_builder()
    before = builder.key(builder.suite.get("aa"))
    monkeypatch.setattr("kernbuild.build.package.BUILD_FORMAT", BUILD_FORMAT + "x")
    fresh = make_builder()
    assert fresh.key(fresh.suite.get("aa")) != before


def test_failure_skips_dependents_and_publishes_the_rest(make_builder, suite_dir):
    (suite_dir / "dd.yaml").write_text(recipe_text("dd"))
    builder = make_builder(fail={"bb"})
    results = {r.recipe: r for r in builder.run(["cc", "dd"])}
    assert results["bb"].state == "failed" and "dpkg-buildpackage failed" in results["bb"].error
    assert results["cc"].state == "skipped" and results["cc"].error == "cc: needs bb, which failed"
    assert results["dd"].state == "built" and results["aa"].state == "built"
    assert {p.name for p in builder.repo.packages()} == {"python3-aa", "python3-dd"}


def test_jobs_build_independent_recipes_at_once(make_builder, suite_dir):
    for name in ("dd", "ee", "ff"):
        (suite_dir / f"{name}.yaml").write_text(recipe_text(name))
    builder = make_builder(jobs=2, delay=0.3)
    results = builder.run(["dd", "ee", "ff"])
    assert {r.state for r in results} == {"built"}
    assert builder.peak == 2
