"""``kernbuild outdated`` on the real suite against the real PyPI and Debian archive.

Skips, saying why, only where pypi.org cannot be reached; it needs no Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
MIRROR = ROOT.parent / "shared" / "sources"


def _pypi_error() -> str:
    try:
        urllib.request.urlopen("https://pypi.org/pypi/losoto/json", timeout=10).close()
    except OSError as exc:
        return str(exc)
    return ""


def test_outdated_reports_real_upstream_versions(tmp_path: Path) -> None:
    problem = _pypi_error()
    if problem:
        pytest.skip(f"pypi.org is not reachable from here: {problem}")
    mirrors = ["--source-mirror", str(MIRROR)] if MIRROR.is_dir() else []
    result = subprocess.run(
        [sys.executable, "-m", "kernbuild.cli", "--recipes", str(ROOT / "recipes"),
         "--state", str(tmp_path / "state"), *mirrors, "outdated", "--json"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}

    recipes = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml") if p.stem != "suite")
    assert sorted(rows) == recipes
    pypi = [row for row in rows.values() if row["kind"] == "pypi"]
    assert len(pypi) >= 20
    for row in pypi:
        # A real answer for every PyPI recipe: its newest final release, never older than
        # the release the recipe pins (PyPI keeps every release).
        assert row["status"] in ("up-to-date", "outdated"), row
        assert not Version(row["newest"]).is_prerelease, row
        assert Version(row["newest"]) >= Version(row["current"]), row
        assert (row["status"] == "outdated") == (Version(row["newest"]) > Version(row["current"]))
    # PyPI's own idea of losoto's latest release is what the report says is newest.
    with urllib.request.urlopen("https://pypi.org/pypi/losoto/json", timeout=10) as answer:
        latest = json.loads(answer.read())["info"]["version"]
    assert rows["losoto"]["newest"] == latest
    for row in rows.values():
        if row["kind"] in ("path", "none"):
            assert row["status"] == "n/a", row
        elif row["status"] == "unknown":
            assert row["reason"], row  # an unknown always says why
