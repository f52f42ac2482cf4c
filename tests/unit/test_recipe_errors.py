"""Error snapshots: every bad recipe in recipe_errors/ and the diagnostics lint prints for it.

Each case is a recipe file (``<case>.yaml``), or a directory of recipe files and
perhaps a ``suite.yaml`` for problems across recipes (``<case>/``); beside it,
``<case>.snap`` holds the expected diagnostics exactly as ``kernbuild lint`` prints
them. The whole text is compared, lines, columns and hints included, so a change
to any message shows up here as a diff to review.

After a deliberate change, rewrite the snapshots and review them with git diff::

    KERNBUILD_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_recipe_errors.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernbuild.errors import RecipeError
from kernbuild.recipe import load_suite

CASES = Path(__file__).parent / "recipe_errors"
UPDATE = os.environ.get("KERNBUILD_UPDATE_SNAPSHOTS") == "1"


def cases() -> list[str]:
    return sorted(p.name for p in CASES.iterdir()
                  if p.is_dir() or p.suffix == ".yaml")


def lint_text(case: str) -> str:
    """What lint prints for one case, with paths relative to recipe_errors/.

    A file loads as the only recipe of a suite with default settings (recipe_errors/
    has no suite.yaml); a directory is a suite of its own.
    """
    path = Path(case)
    with pytest.raises(RecipeError) as caught:
        if path.is_dir():
            load_suite(path)
        else:
            load_suite(Path("."), [path])
    return "".join(f"{d}\n" for d in caught.value.diagnostics)


def test_there_are_cases_and_each_has_a_snapshot():
    assert len(cases()) >= 10
    snapshots = {p.stem for p in CASES.glob("*.snap")}
    assert snapshots == {Path(c).stem for c in cases()} or UPDATE


@pytest.mark.parametrize("case", cases())
def test_diagnostics_match_the_snapshot(case, monkeypatch):
    monkeypatch.chdir(CASES)  # relative paths in, relative paths in every message out
    found = lint_text(case)
    snapshot = CASES / f"{Path(case).stem}.snap"
    if UPDATE:
        snapshot.write_text(found)
        return
    assert snapshot.exists(), f"no snapshot {snapshot.name}: run with KERNBUILD_UPDATE_SNAPSHOTS=1"
    assert found == snapshot.read_text()
