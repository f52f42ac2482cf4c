"""The native target: packages from the suite's signed repository in an mmdebstrap chroot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Suite, require_tools
from debian.debian_support import Version

from kernbuild.runtime import ImageRef
from kernbuild.runtime.native import NativeRunner
from kernbuild.recipe.load import load_settings

pytestmark = pytest.mark.docker  # the repository is built with Docker

PACKAGES = ("libwcs8", "wcslib-tools")


@pytest.fixture(scope="module")
def suite(wcslib_suite: Suite) -> Suite:
    """wcslib and wcs-roundtrip built already: this module tests what runs them."""
    return wcslib_suite


@pytest.fixture(scope="module")
def tools():
    require_tools(("mmdebstrap", "mmdebstrap"), ("bwrap", "bubblewrap"))


@pytest.fixture(scope="module")
def native(suite, tools, tmp_path_factory):
    """The target on the suite's repository, and the pinned list of PACKAGES in it."""
    suite.run("package", "wcslib")
    settings = load_settings(suite.recipes)
    if settings.base_is_registry_image:
        pytest.skip(f"the suite's base {settings.base} is not a Debian codename")
    newest: dict[str, Version] = {}
    for entry in json.loads(suite.run("repo", "list", "--json").stdout):
        if entry["name"] in PACKAGES:
            version = Version(entry["version"])
            newest[entry["name"]] = max(newest.get(entry["name"], version), version)
    assert set(newest) == set(PACKAGES), newest
    packages = " ".join(f"{name}={newest[name]}" for name in PACKAGES)
    target = NativeRunner(suite.state / "repo", settings.repo_distribution, settings.base,
                          settings.mirror, tmp_path_factory.mktemp("native-cache"))
    return target, packages, newest


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    where = tmp_path / "scratch"
    where.mkdir(mode=0o777)
    return where


def test_runs_steps_in_a_chroot_of_the_pinned_packages(native, scratch: Path):
    target, packages, newest = native
    assert target.unavailable() == ""
    assert target.name == "native" and target.form == "packages"

    found = target.run(ImageRef(packages), "command -v wcsware", scratch, 60)
    assert (found.exit_code, found.timed_out) == (0, False), found.output
    assert found.output.strip() == "/usr/bin/wcsware"

    # Exactly the pinned versions, installed from the signed repository.
    query = target.run(ImageRef(packages), "dpkg-query -W -f '${Package}=${Version}\\n' "
                       + " ".join(newest), scratch, 60)
    assert query.exit_code == 0, query.output
    assert set(query.output.split()) == set(packages.split())

    wrote = target.run(ImageRef(packages), "pwd > where.txt && echo made > made.txt", scratch, 60)
    assert wrote.exit_code == 0, wrote.output
    assert (scratch / "made.txt").read_text() == "made\n"
    assert (scratch / "where.txt").read_text().strip() == str(scratch.resolve())

    failed = target.run(ImageRef(packages), "echo before; exit 7", scratch, 60)
    assert (failed.exit_code, failed.timed_out) == (7, False)
    assert "before" in failed.output

    started = time.monotonic()
    slow = target.run(ImageRef(packages), "sleep 60", scratch, 2)
    assert slow.timed_out and slow.exit_code == 124
    assert time.monotonic() - started < 30


def test_second_run_reuses_the_chroot(native, scratch: Path):
    target, packages, _ = native
    target.run(ImageRef(packages), "true", scratch, 60)  # made here if the first test did not run
    chroots = sorted(p.name for p in target.cache.iterdir())
    assert len(chroots) == 1  # and no build directory left behind

    # The same list in another order and spacing is the same chroot.
    reordered = "  ".join(reversed(packages.split()))
    started = time.monotonic()
    again = target.run(ImageRef(reordered), "command -v wcsware", scratch, 60)
    assert again.exit_code == 0, again.output
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in target.cache.iterdir()) == chroots


def test_a_bad_package_list_fails_the_step_with_a_reason(native, scratch: Path):
    target, _, _ = native
    record = target.run(ImageRef("--include=evil"), "true", scratch, 60)
    assert record.exit_code == 125 and "not a Debian package" in record.output
    missing = target.run(ImageRef("wcslib-tools=0.0-0kern0"), "true", scratch, 60)
    assert missing.exit_code == 125 and "mmdebstrap could not install" in missing.output
    assert not [p for p in target.cache.iterdir() if p.name.startswith(".")]
