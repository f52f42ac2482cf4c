"""Shared fixtures: a tiny suite written into a temporary directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SHA = "a" * 64


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
