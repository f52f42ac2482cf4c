"""The suite's headline: prefactor from a source mirror, its chain, and honest smoke tests.

``kernbuild package prefactor`` builds prefactor (its source only on GitHub, so
from ../shared/sources) and every suite recipe it needs (losoto, lsmtool,
RMextract, lofar-parameterset); prefactor is then installed with apt in a clean
container that knows only the repository, and each of its scripts must start.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import SOURCE_MIRROR, Suite, make_suite, source_mirror_env

pytestmark = pytest.mark.docker

PREFACTOR_TARBALL = "prefactor-934efe7a05ed85e921fbd94b365bfb87c7b050cb.tar.gz"


@pytest.fixture(scope="module")
def mirror() -> Path:
    source_mirror_env(PREFACTOR_TARBALL)  # skips (or fails in CI) without it
    return SOURCE_MIRROR


def with_mirror(directory: Path | str) -> dict[str, str]:
    return {"KERNBUILD_SOURCE_MIRROR": str(directory)}


def test_prefactor_and_its_chain_build_from_the_mirror_and_every_script_starts(
        suite: Suite, mirror: Path) -> None:
    results = json.loads(suite.run("package", "prefactor", "-j", "2", "--json",
                                   env=with_mirror(mirror)).stdout)
    states = {r["recipe"]: r["state"] for r in results}
    assert states == {name: "built" for name in
                      ("losoto", "lofar-parameterset", "lsmtool", "rmextract", "prefactor")}
    assert [Path(d).name for d in next(r for r in results if r["recipe"] == "prefactor")["debs"]
            ] == ["prefactor_3.2-1kern1_all.deb"]
    # apt-get install prefactor in a clean container that knows only the repository.
    smoke = json.loads(suite.run("smoke", "prefactor", "--json").stdout)
    assert all(step["exit_code"] == 0 for step in smoke), smoke
    output = "\n".join(step["output"] for step in smoke)
    assert "TAI - UTC = 37.0 s" in output  # casacore's measures found offline
    assert "35 scripts, 35 start as expected" in output
    for name in ("concat_MS.py", "sort_times_into_freqGroups.py"):  # the lofarpipe four
        assert f"ok   {name}" in output


# The fetch is the first thing a build does: debianize (fetch and render, no build)
# shows the real recipe's source handling without building its chain first.


def test_without_the_mirror_prefactor_is_one_message_naming_upstream(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    result = suite.run("debianize", "prefactor", "-o", str(tmp_path / "out"), check=False,
                       env=with_mirror(""))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "https://github.com/lofar-astron/prefactor" in result.stderr
    assert PREFACTOR_TARBALL in result.stderr and "--source-mirror" in result.stderr


def test_a_changed_byte_in_the_mirror_is_refused(mirror: Path, tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    tampered = tmp_path / "mirror"
    tampered.mkdir()
    data = bytearray((mirror / PREFACTOR_TARBALL).read_bytes())
    data[len(data) // 3] ^= 0x20
    (tampered / PREFACTOR_TARBALL).write_bytes(bytes(data))
    result = suite.run("debianize", "prefactor", "-o", str(tmp_path / "out"), check=False,
                       env=with_mirror(tampered))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sha256 mismatch" in result.stderr and PREFACTOR_TARBALL in result.stderr
    trees = suite.state / "sources" / "trees"
    assert not trees.exists() or not any(trees.iterdir())  # nothing unpacked from it
    assert not (tmp_path / "out").exists()


def test_the_mirror_gives_prefactor_with_its_data(mirror: Path, tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    suite.run("debianize", "prefactor", "-o", str(tmp_path / "out"), env=with_mirror(mirror))
    tree = tmp_path / "out"
    assert len(list((tree / "scripts").iterdir())) == 35
    assert (tree / "debian" / "prefactor.README.Debian").read_text().count(".py\n") >= 4


def test_a_hidden_dependency_fails_the_smoke_test(suite: Suite, tmp_path: Path) -> None:
    """The build has python3-yaml (a build dependency); the package forgets to depend on
    it. Smoke tests install into a clean container, so the import must fail there."""
    hidden = Suite(tmp_path / "recipes", suite.state)
    shutil.copytree(suite.recipes, hidden.recipes)
    source = hidden.recipes / "hiddendep-src"
    source.mkdir()
    (source / "hiddendep.py").write_text("import yaml\n\nLOADED = yaml.safe_load('a: 1')\n")
    (source / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='hiddendep', version='1.0', "
        "py_modules=['hiddendep'])\n")
    (hidden.recipes / "hiddendep.yaml").write_text(textwrap.dedent("""\
        name: hiddendep
        version: "1.0"
        summary: imports yaml without depending on it
        description: |
          Made by the tests.
        license: MIT
        source:
          path: hiddendep-src
        build:
          system: pybuild
          depends: [python3-setuptools, python3-yaml]
        packages:
          python3-hiddendep:
            architecture: all
        smoke:
          - run: python3 -c "import hiddendep; assert hiddendep.LOADED == dict(a=1)"
        """))
    assert hidden.package("hiddendep")["hiddendep"]["state"] == "built"
    result = hidden.run("smoke", "hiddendep", "--json", check=False)
    assert result.returncode == 1
    install, step = json.loads(result.stdout)  # the package installs; its import fails
    assert install["exit_code"] == 0, install["output"]
    assert step["exit_code"] != 0 and "No module named 'yaml'" in step["output"]
