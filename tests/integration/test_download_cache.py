"""The download cache on a real engine: a build reuses what the one before it fetched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kernbuild.build.downloads import CACHE_ENV
from tests.integration.conftest import Suite, make_suite

pytestmark = pytest.mark.docker

COUNTS = re.compile(r"^# download cache: (\d+) from the cache, (\d+) fetched into it", re.M)


def build_katversion(tmp: Path, cache: Path) -> tuple[dict, str]:
    """katversion, build-depending on cfortran too (a small package no build image holds),
    into a fresh state with ``cache``; returns its result and its build log."""
    suite: Suite = make_suite(tmp)
    recipe = suite.recipes / "katversion.yaml"
    recipe.write_text(recipe.read_text().replace(
        "depends: [python3-packaging]", "depends: [python3-packaging, cfortran]", 1))
    result = suite.run("package", "--json", "katversion", env={CACHE_ENV: str(cache)})
    built = {r["recipe"]: r for r in json.loads(result.stdout)}["katversion"]
    assert built["state"] == "built", built
    log = suite.state / "builds" / "logs" / f"katversion-{built['key'][:12]}.log"
    return built, log.read_text()


def counts(log: str) -> tuple[int, int]:
    found = COUNTS.search(log)
    assert found, log
    return int(found.group(1)), int(found.group(2))


def test_builds_share_downloads_and_a_refused_entry_is_fetched_again(docker_engine, tmp_path):
    cache = tmp_path / "downloads"
    _, first = build_katversion(tmp_path / "one", cache)
    hits, fetched = counts(first)
    assert hits == 0 and fetched >= 1  # cfortran and the indexes, by hash
    [entry] = cache.glob("*/debian/pool/main/c/cfortran/cfortran_*_all.deb")
    good = entry.read_bytes()

    _, second = build_katversion(tmp_path / "two", cache)
    assert counts(second) == (fetched, 0)  # everything from the cache, nothing fetched

    entry.write_bytes(b"not the package apt expects\n" * 100)
    _, third = build_katversion(tmp_path / "three", cache)
    assert "apt refused 1 file(s) from the download cache" in third
    assert entry.read_bytes() == good  # dropped, fetched again, cached whole
    assert not [p for p in cache.rglob("*") if p.name.endswith(".part")]
