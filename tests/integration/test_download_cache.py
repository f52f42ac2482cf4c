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


def build_katversion(tmp: Path, cache: Path, depends: str = "cfortran",
                     *options: str, suite: Suite | None = None) -> tuple[dict, str]:
    """katversion, build-depending on ``depends`` too (small packages no build image
    holds), into a fresh state with ``cache`` (or into ``suite``'s, again); returns its
    result and its build log."""
    suite = suite or make_suite(tmp)
    recipe = suite.recipes / "katversion.yaml"
    recipe.write_text(re.sub(r"depends: \[python3-packaging[^]]*\]",
                             f"depends: [python3-packaging, {depends}]", recipe.read_text(),
                             count=1))
    result = suite.run("package", "--json", "katversion", *options, env={CACHE_ENV: str(cache)})
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
    # Without snapshots, so that each build installs (and fetches) its dependencies.
    _, first = build_katversion(tmp_path / "one", cache, "cfortran", "--no-snapshots")
    hits, fetched = counts(first)
    assert hits == 0 and fetched >= 1  # cfortran and the indexes, by hash
    [entry] = cache.glob("*/debian/pool/main/c/cfortran/cfortran_*_all.deb")
    good = entry.read_bytes()

    _, second = build_katversion(tmp_path / "two", cache, "cfortran", "--no-snapshots")
    assert counts(second) == (fetched, 0)  # everything from the cache, nothing fetched

    entry.write_bytes(b"not the package apt expects\n" * 100)
    _, third = build_katversion(tmp_path / "three", cache, "cfortran", "--no-snapshots")
    assert "apt refused 1 file(s) from the download cache" in third
    assert entry.read_bytes() == good  # dropped, fetched again, cached whole
    assert not [p for p in cache.rglob("*") if p.name.endswith(".part")]


def snapshots_of_katversion(client) -> dict[str, object]:
    from kernbuild.build import snapshots

    return {tag: image for image in client.images.list(
                filters={"label": [f"{snapshots.LABEL}={snapshots.KIND}",
                                   f"{snapshots.RECIPE}=katversion"]})
            for tag in image.tags}


def test_a_build_starts_from_the_snapshot_of_the_same_dependencies(docker_engine, tmp_path):
    from kernbuild import engine

    client = engine.connect()
    for image in snapshots_of_katversion(client).values():  # an earlier run's
        client.images.remove(image.id, force=True)
    cache = tmp_path / "downloads"
    one, first = build_katversion(tmp_path / "one", cache)
    made = re.search(r"^# snapshot (kern/build-deps:\w+) took", first, re.M)
    assert made and "$ apt-get build-dep" in first, first
    tag = made.group(1)
    labels = client.images.get(tag).labels
    manifest = json.loads((Path(one["debs"][0]).parent / "manifest.json").read_text())
    assert labels["org.kernbuild.build-image"] == manifest["build_image"]
    # No label that makes a container some process's own survives into the image.
    assert not any(labels[k] for k in ("org.kernbuild.pid", "org.kernbuild.owner"))

    two, second = build_katversion(tmp_path / "two", cache)
    assert f"installed already in {tag}" in second, second
    assert "$ apt-get build-dep" not in second  # nothing installed: dpkg-checkbuilddeps passed
    deb_one, deb_two = Path(one["debs"][0]), Path(two["debs"][0])
    assert deb_one.read_bytes() == deb_two.read_bytes()  # a snapshot changes no output

    # Other build dependencies, in the state that has a repository now, so that its
    # kern.list is mounted into the build: another snapshot, and the older one is removed.
    again = Suite(recipes=tmp_path / "one" / "recipes", state=tmp_path / "one" / "state")
    _, third = build_katversion(tmp_path, cache, "cfortran, libjs-jquery", "--force",
                                suite=again)
    newer = re.search(r"^# snapshot (kern/build-deps:\w+) took", third, re.M)
    assert newer and newer.group(1) != tag, third
    assert list(snapshots_of_katversion(client)) == [newer.group(1)]
    # A snapshot made with the repository mounted takes the same mounts again (the
    # engine once refused them: the commit had declared them VOLUMEs).
    assert not client.images.get(newer.group(1)).attrs["Config"].get("Volumes")
    _, fourth = build_katversion(tmp_path, cache, "cfortran, libjs-jquery", "--force",
                                 suite=again)
    assert f"installed already in {newer.group(1)}" in fourth, fourth
    client.images.remove(newer.group(1))
