"""``kernbuild reproduce``: a release's .debs rebuilt under reprotest's variations.

A small suite (a metapackage, a make-built package that writes the year it was
built in, and a pipeline's image) is released as kern-1 on a real engine. Its
packages rebuilt without the clock variation are byte for byte the frozen ones,
and so is the SIF payload made again from its image; with every variation (the
clock 398 days ahead), the make-built package differs and the file that differs
is named, with exit status 1. The first run rebuilds in the release's own build
image (kept as kern/build:kern-1); the second, told by the record that the release
was built in an image the engine no longer has, names each package of the image it
used that differs from the release's. Neither run touches the build cache, the
repository or kern.lock. No mocks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Suite, require_tools
from tests.integration.test_release import PIPELINE as RELEASE_PIPELINE

pytestmark = pytest.mark.docker


def _recipe(name: str, depends: str = "base-files", extra: str = "",
            build: str = "  system: none\n", source: str = "") -> str:
    return (f'name: {name}\nversion: "1.0"\nsummary: {name}, a package of the reproduce '
            f"test\ndescription: |\n  A package made by the reproduce test.\n"
            f"license: GPL-3.0-or-later\ncopyright: the kernbuild tests\n{source}build:\n"
            f"{build}packages:\n  {name}:\n    architecture: all\n"
            f"    section: misc\n    depends: [{depends}]\n{extra}")


# test_release's pipeline, on this test's packages
PIPELINE = RELEASE_PIPELINE.replace("rel-", "rep-")

# Not reproducible on purpose: the package holds the year its build ran in.
STAMP_MAKEFILE = """all:
\tdate -u +%Y > year

install:
\tinstall -d $(DESTDIR)/usr/share/rep-stamp
\tinstall -m 0644 year $(DESTDIR)/usr/share/rep-stamp/year
"""


def _state_bytes(suite: Suite) -> dict[str, str]:
    """sha256 of every file of the build cache, the repository and kern.lock."""
    sums = {}
    for part in ("builds", "repo"):
        for path in sorted((suite.state / part).rglob("*")):
            if path.is_file() and not path.is_symlink():
                sums[str(path.relative_to(suite.state))] = hashlib.sha256(
                    path.read_bytes()).hexdigest()
    lock = suite.recipes.parent / "kern.lock"
    sums["kern.lock"] = hashlib.sha256(lock.read_bytes()).hexdigest()
    sums["current"] = str((suite.state / "repo" / "current").resolve())
    return sums


def test_a_release_rebuilds_byte_for_byte(docker_engine, tmp_path: Path) -> None:
    require_tools(("mksquashfs", "squashfs-tools"), ("siftool", "siftool"))
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "suite.yaml").write_text((ROOT / "recipes" / "suite.yaml").read_text())
    (recipes / "rep-alpha.yaml").write_text(_recipe("rep-alpha"))
    (recipes / "rep-check.yaml").write_text(_recipe("rep-check", "rep-alpha", PIPELINE))
    (recipes / "rep-stamp").mkdir()
    (recipes / "rep-stamp" / "Makefile").write_text(STAMP_MAKEFILE)
    (recipes / "rep-stamp.yaml").write_text(_recipe(
        "rep-stamp", build="  system: make\n", source="source:\n  path: rep-stamp\n"))
    suite = Suite(recipes, tmp_path / "state")
    suite.run("release", "-t", "docker", "-j", "2")
    kept = suite.state / "releases" / "kern-1"
    assert "release: 1" in (kept / "recipes" / "suite.yaml").read_text()
    assert (kept / "recipes" / "rep-stamp" / "Makefile").read_text() == STAMP_MAKEFILE
    record = json.loads((kept / "release.json").read_text())
    frozen = sorted(Path(f).name for r in record["recipes"] for f in r["files"])
    assert len(frozen) == 3
    built_in = record["build_image"]
    assert built_in["tag"] == "kern/build:kern-1"
    assert docker_engine.images.get("kern/build:kern-1").id == built_in["image"]
    assert built_in["packages"]["debhelper"] and built_in["packages"]["dpkg-dev"]
    before = _state_bytes(suite)

    # Every variation but the clock: the same bytes, .debs and SIF payload alike.
    steady = suite.run("reproduce", "kern-1", "--vary=-time", "--sif", "--json")
    done = json.loads(steady.stdout)
    assert done["ok"] and done["variations"] == [
        "build_path", "timezone", "umask", "hostname", "locales"]
    assert sorted(d["file"] for d in done["debs"]) == frozen
    assert {d["status"] for d in done["debs"]} == {"identical"}, done["debs"]
    [sif] = done["sifs"]
    assert sif["image"] == "kern/rep-check:1" and sif["status"] == "identical", sif
    assert sif["first_sha256"] == sif["second_sha256"]
    assert done["build_image"] == built_in["image"] == done["released_build_image"]
    assert done["build_image_changes"] == []
    assert _state_bytes(suite) == before
    assert list((suite.state / "reproduce").iterdir()) == []

    # As if kern-1 had been built long ago, in an image gone since, with an older
    # debhelper and a tool the current image lacks.
    gone = {**built_in, "image": "sha256:" + "0" * 64, "packages": {
        **built_in["packages"], "debhelper": "12.0~old", "kern-gone-tool": "1.0"}}
    (kept / "release.json").write_text(json.dumps({**record, "build_image": gone}))

    # Every variation: the clock is a year ahead, and the year the build wrote is named.
    varied = suite.run("reproduce", "kern-1", "--keep", str(tmp_path / "kept"), check=False)
    assert varied.returncode == 1, varied.stdout + varied.stderr
    assert "Traceback" not in varied.stderr
    lines = varied.stdout.splitlines()
    stamp = "rep-stamp_1.0-1kern1_all.deb"
    assert any(stamp in line and "differs" in line for line in lines), varied.stdout
    assert f"{stamp}: data.tar.xz: ./usr/share/rep-stamp/year: content" in varied.stdout
    assert "2/3 .debs identical" in varied.stdout
    assert (f"not the release's {gone['image'][:19]} (gone from the engine); 2 package(s) "
            "differ:") in varied.stdout
    assert f"  debhelper 12.0~old -> {built_in['packages']['debhelper']}" in lines
    assert "  -kern-gone-tool 1.0" in lines
    for name in ("rep-alpha_1.0-1kern1_all.deb", "rep-check_1.0-1kern1_all.deb"):
        assert any(name in line and "identical" in line for line in lines), varied.stdout
    rebuilt = tmp_path / "kept" / stamp
    assert rebuilt.is_file() and rebuilt.read_bytes() != (
        suite.state / "repo" / next(f for r in record["recipes"] for f in r["files"]
                                    if f.endswith(stamp))).read_bytes()
    assert _state_bytes(suite) == before
