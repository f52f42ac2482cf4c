"""Two releases of a small suite, cut by ci/release.sh on a real engine, installed by apt.

Release 1 of three cheap metapackages and a pipeline (matrix on the docker target);
then one recipe upgraded, one dropped with a reason, one added; release 2. Both
distributions install in a clean container; the notes name exactly those changes;
kern-1's packages and signed index are byte for byte what they were. No mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Suite

pytestmark = pytest.mark.docker

DROP_REASON = "merged into rel-alpha upstream"


def _recipe(name: str, version: str, depends: str = "base-files", extra: str = "") -> str:
    return (f'name: {name}\nversion: "{version}"\nsummary: {name}, a package of the '
            f'release test\ndescription: |\n  A metapackage made by the release test.\n'
            f"license: GPL-3.0-or-later\ncopyright: the kernbuild tests\nbuild:\n"
            f"  system: none\npackages:\n  {name}:\n    architecture: all\n"
            f"    section: metapackages\n    depends: [{depends}]\n{extra}")


PIPELINE = """pipeline:
  images: [rel-check]
  steps:
    - name: version
      run: dpkg-query -W -f '${Version}' rel-alpha > version.txt
  assert:
    - name: alpha-is-the-suite-s
      run: grep -q kern version.txt
"""


def _release(suite: Suite, out: Path, *options: str) -> dict:
    """``bash ci/release.sh`` on the suite, the matrix on docker only; its outcome."""
    done = subprocess.run(
        ["bash", str(ROOT / "ci" / "release.sh"), "--recipes", str(suite.recipes),
         "--state", str(suite.state), "--out", str(out), "--", "-t", "docker", "-j", "2",
         *options],
        capture_output=True, text=True, env={**os.environ, "KERNBUILD_SETUP_DONE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((out / "outcome.json").read_text())


def _frozen_bytes(suite: Suite, dist: str) -> dict[str, str]:
    """sha256 of every file of ``dist`` as served and of every pool file it lists."""
    current = suite.state / "repo" / "current"
    tree = current / "dists" / dist
    sums = {str(p.relative_to(current)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}
    for line in (tree / "main/binary-amd64/Packages").read_text().splitlines():
        if line.startswith("Filename: "):
            name = line.split(": ", 1)[1]
            sums[name] = hashlib.sha256((current / name).read_bytes()).hexdigest()
    return sums


def _install(docker_engine, suite: Suite, dist: str, packages: list[str]) -> tuple[int, str]:
    """apt-get install ``packages`` from ``dist`` in a clean container of the base image,
    knowing only the repository and its key; (exit status, dpkg's versions or the error)."""
    script = (
        "set -e; mkdir -p /etc/apt/keyrings; cp /repo/kern-archive-keyring.gpg /etc/apt/keyrings/;"
        f" echo 'deb [signed-by=/etc/apt/keyrings/kern-archive-keyring.gpg] file:/repo/current "
        f"{dist} main' > /etc/apt/sources.list.d/kern.list;"
        " apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends \"$@\""
        " >/tmp/apt.log 2>&1 || { tail -5 /tmp/apt.log; exit 1; };"
        " dpkg-query -W -f '${Package} ${Version}\\n' \"$@\"")
    container = docker_engine.containers.run(
        "kern/base:trixie", ["sh", "-c", script, "install", *packages], detach=True,
        volumes={str(suite.state / "repo"): {"bind": "/repo", "mode": "ro"}},
        labels={"kernbuild": "test-release"})
    try:
        status = container.wait(timeout=600)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


def test_two_releases_side_by_side(docker_engine, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    settings = (ROOT / "recipes" / "suite.yaml").read_text()
    (recipes / "suite.yaml").write_text(settings)
    (recipes / "rel-alpha.yaml").write_text(_recipe("rel-alpha", "1.0"))
    (recipes / "rel-beta.yaml").write_text(_recipe("rel-beta", "1.0"))
    (recipes / "rel-check.yaml").write_text(_recipe("rel-check", "1.0", "rel-alpha", PIPELINE))
    suite = Suite(recipes, tmp_path / "state")

    first = _release(suite, tmp_path / "out-1")
    assert first["record"]["distribution"] == "kern-1"
    assert first["next_release"] == 2
    assert "release: 2  " in (recipes / "suite.yaml").read_text()
    kern1 = _frozen_bytes(suite, "kern-1")
    assert any(name.endswith("rel-alpha_1.0-1kern1_all.deb") for name in kern1)

    # The suite moves on: one upgraded, one dropped with its reason, one added.
    (recipes / "rel-alpha.yaml").write_text(_recipe("rel-alpha", "1.1"))
    (recipes / "rel-beta.yaml").unlink()
    (recipes / "rel-gamma.yaml").write_text(_recipe("rel-gamma", "0.3"))
    text = (recipes / "suite.yaml").read_text()
    # Without a reason for the drop the release is refused at once, nothing built.
    refused = suite.run("release", check=False)
    assert refused.returncode == 1
    assert "KERN-2 drops rel-beta of KERN-1 without a reason" in refused.stderr
    assert "suite.yaml:3:1" in refused.stderr and "Traceback" not in refused.stderr
    (recipes / "suite.yaml").write_text(text + f"dropped:\n  rel-beta: {DROP_REASON}\n")

    cvmfs = tmp_path / "cvmfs"
    second = _release(suite, tmp_path / "out-2", "--cvmfs", str(cvmfs))
    notes = second["notes"]
    assert notes["previous"] == "KERN-1"
    assert [(c["name"], c["new"]) for c in notes["added"]] == [("rel-gamma", "0.3")]
    assert [(c["name"], c["reason"]) for c in notes["dropped"]] == [("rel-beta", DROP_REASON)]
    assert [(c["name"], c["old"], c["new"]) for c in notes["upgraded"]] == [
        ("rel-alpha", "1.0", "1.1")]
    assert [(c["name"], c["old"], c["new"]) for c in notes["rebuilt"]] == [
        ("rel-check", "1.0-1kern1", "1.0-1kern2")]
    markdown = (tmp_path / "out-2" / "notes.md").read_text()
    assert "- rel-alpha: 1.0 → 1.1" in markdown and DROP_REASON in markdown
    assert "| rel-check | rel-check | docker | docker | pass |" in markdown

    # The release's record, kept with it and copied out as CI's artifacts.
    for name in ("notes.md", "notes.json", "release.json", "kern.lock", "junit.xml",
                 "report/index.html", "repo-verify.json", "notes-dry-run.md"):
        assert (tmp_path / "out-2" / name).is_file(), name
    record = json.loads((suite.state / "releases/kern-2/release.json").read_text())
    [image] = record["images"]
    assert image["tag"] == "kern/rel-check:2" and image["digest"].startswith("sha256:")
    assert docker_engine.images.get(image["digest"]).id == image["digest"]
    assert image["packages"] == {"rel-alpha": "1.1-1kern2", "rel-check": "1.0-1kern2"}
    # On CVMFS by digest, named after the release as well as by its tag.
    named = cvmfs / "kern-2" / "rel-check"
    assert image["sandbox"] == str(named) and named.is_symlink()
    stored = cvmfs / ".images" / image["digest"].removeprefix("sha256:")
    assert named.resolve() == stored.resolve() == (cvmfs / "kern/rel-check:2").resolve()
    assert (stored / ".singularity.d").is_dir()
    lock = json.loads((tmp_path / "out-2" / "kern.lock").read_text())
    assert lock["images"]["kern/rel-check:2"]["image"] == image["digest"]
    assert json.loads((tmp_path / "out-2" / "repo-verify.json").read_text())["ok"]

    # kern-1 is byte for byte what it was, and still installs; kern-2 is what it says.
    assert _frozen_bytes(suite, "kern-1") == kern1
    status, said = _install(docker_engine, suite, "kern-1",
                            ["rel-alpha", "rel-beta", "rel-check"])
    assert status == 0, said
    assert set(said.split("\n")) >= {"rel-alpha 1.0-1kern1", "rel-beta 1.0-1kern1",
                                     "rel-check 1.0-1kern1"}, said
    status, said = _install(docker_engine, suite, "kern-2",
                            ["rel-alpha", "rel-gamma", "rel-check"])
    assert status == 0, said
    assert set(said.split("\n")) >= {"rel-alpha 1.1-1kern2", "rel-gamma 0.3-1kern2",
                                     "rel-check 1.0-1kern2"}, said
    status, said = _install(docker_engine, suite, "kern-2", ["rel-beta"])
    assert status != 0 and "rel-beta" in said, said

    # A released number is never cut again.
    (recipes / "suite.yaml").write_text(
        (recipes / "suite.yaml").read_text().replace("release: 3", "release: 2"))
    again = suite.run("release", check=False)
    assert again.returncode == 1 and "kern-2 is released already" in again.stderr
