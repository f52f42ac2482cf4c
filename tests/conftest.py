"""Shared fixtures (a tiny suite written into a temporary directory, ``figure``), and
how ci/test.sh's two pytest-xdist workers share the tests out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SHA = "a" * 64

#: Integration modules that must run on one worker, one after another: those that make
#: images of the same recipes (a tag such as kern/wcslib:1 is the Docker engine's, shared
#: by every state directory) or submit jobs to the one-node Slurm cluster.
FAMILIES = {
    "wcslib-and-slurm": ("test_image", "test_udocker", "test_sif", "test_matrix",
                         "test_native", "test_slurm", "test_cwl"),
    "katpoint-and-releases": ("test_concurrency", "test_download_cache", "test_package",
                              "test_kill_trials", "test_release", "test_repo_verify",
                              "test_upstream", "test_reproduce"),
}
_FAMILY_OF = {module: family for family, modules in FAMILIES.items() for module in modules}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's work units (ci/test.sh: ``-n 2 --dist loadscope``): a test
    module, or a family of the integration modules above, always whole on one worker,
    so its module fixtures are made once and a summary test sees all its module's."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFamily(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return _FAMILY_OF.get(Path(module).stem, module)

    return ByFamily(config, log)


@pytest.fixture
def figure(request: pytest.FixtureRequest):
    """``figure(line)``: a figure the test measured (fuzz cases tried, kill trials
    recovered), printed in the run's "figures" section at the end, with the test's
    name; kept with its report, so it is printed under pytest-xdist too, whose workers'
    own output is not shown."""
    def record(line: str) -> None:
        request.node.user_properties.append(("figure", line))
    return record


def pytest_terminal_summary(terminalreporter) -> None:
    figures = [(report.nodeid.partition("@")[0], value)
               for reports in terminalreporter.stats.values() for report in reports
               if getattr(report, "when", None) == "call"
               for name, value in getattr(report, "user_properties", ()) if name == "figure"]
    if figures:
        terminalreporter.section("figures")
        for nodeid, line in sorted(figures):
            terminalreporter.write_line(f"{nodeid}: {line}")


def recipe_text(name: str, *, depends: list[str] | None = None,
                build_depends: list[str] | None = None, extra: str = "") -> str:
    """A valid single-package pybuild recipe; tests change one thing at a time."""
    return textwrap.dedent(f"""\
        name: {name}
        version: "1.0"
        summary: {name} for tests
        description: |
          A recipe made by the tests.
        license: GPL-3.0-or-later
        source:
          pypi: {name}
          sha256: {SHA}
        build:
          system: pybuild
          depends: {build_depends or []}
        packages:
          python3-{name}:
            architecture: all
            depends: {depends or []}
        smoke:
          - run: python3 -c "import {name}"
        """) + extra


@pytest.fixture
def suite_dir(tmp_path: Path) -> Path:
    """recipes/ with suite.yaml and three recipes: cc needs bb needs aa."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "suite.yaml").write_text("name: kern\nrelease: 9\ndate: 2026-05-01\n")
    (recipes / "aa.yaml").write_text(recipe_text("aa"))
    (recipes / "bb.yaml").write_text(recipe_text("bb", build_depends=["python3-aa"]))
    (recipes / "cc.yaml").write_text(recipe_text("cc", depends=["python3-bb (>= 1.0)"]))
    return recipes
