"""The real apptainer: kernbuild's SIFs run with it, the host's or Debian's in a container.

On these Debian 12 hosts there is no apptainer (Debian's needs glibc >= 2.38), so these
tests run Debian unstable's apptainer 1.4.5 in a trixie container, as the matrix's
apptainer target does; on a host with its own, that one.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Suite

from kernbuild.errors import KernError
from kernbuild.recipe.load import load_settings
from kernbuild.runtime import ImageRef, RuntimeContext
from kernbuild.runtime.apptainer import ApptainerRunner
from kernbuild.runtime.tools import locate
from kernbuild.workspace import Workspace

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sif_build(suite: Suite) -> dict:
    """kern/wcslib:1 as a SIF, smoke-tested by ``kernbuild image`` with apptainer."""
    [build] = json.loads(suite.run("image", "wcslib", "-f", "sif", "--json").stdout)
    return build


@pytest.fixture(scope="module")
def runner(suite: Suite, sif_build) -> ApptainerRunner:
    context = RuntimeContext.for_workspace(Workspace(suite.recipes, suite.state),
                                           load_settings(suite.recipes))
    made = ApptainerRunner.from_context(context)
    assert made.unavailable() == ""
    return made


def test_kernbuild_image_tests_the_sif_with_apptainer(sif_build):
    sif = sif_build["lock"]["sif"]
    assert "apptainer" in sif["tested_with"] and "sif-bwrap" not in sif["tested_with"]
    steps = sif_build["sif_smoke"]
    assert [s["exit_code"] for s in steps] == [0, 0]
    assert steps[-1]["command"] == "apptainer test"  # the image's own %test, as users run it


def test_exec_runs_in_the_step_directory_with_a_clean_environment(runner, sif_build, tmp_path):
    sif = ImageRef(sif_build["lock"]["sif"]["path"], sif_build["lock"]["sif"]["sha256"])
    os.environ["KERNBUILD_TEST_LEAK"] = "from the host"
    try:
        result = runner.run(sif, "pwd; echo made > out.txt; cat /etc/debian_version; "
                                 "command -v wcsware; echo leak=${KERNBUILD_TEST_LEAK:-none}",
                            tmp_path, 120)
    finally:
        del os.environ["KERNBUILD_TEST_LEAK"]
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == str(tmp_path) and "/usr/bin/wcsware" in lines
    assert "leak=none" in lines  # --cleanenv
    assert (tmp_path / "out.txt").read_text() == "made\n"  # the bound directory, written
    failed = runner.run(sif, "echo before; exit 7", tmp_path, 120)
    assert failed.exit_code == 7 and "before" in failed.output


def test_a_step_past_its_timeout_is_killed_and_leaves_no_container(runner, sif_build,
                                                                   tmp_path, docker_engine):
    sif = ImageRef(sif_build["lock"]["sif"]["path"])
    result = runner.run(sif, "echo started; sleep 300", tmp_path, 5)
    assert (result.exit_code, result.timed_out) == (124, True)
    assert "started" in result.output
    if not locate("apptainer"):
        assert docker_engine.containers.list(all=True, filters={"label": "kernbuild=apptainer"}) \
            == []


def test_apptainer_reads_the_labels_and_spython_drives_it(runner, sif_build):
    labels = runner.inspect_labels(Path(sif_build["lock"]["sif"]["path"]))
    assert labels["org.kernsuite.packages"].startswith("libwcs8=")


def test_doctor_names_the_apptainer_and_its_version(suite: Suite, runner):
    report = json.loads(suite.run("doctor", "--json", check=False).stdout)
    [check] = [c for c in report["checks"] if c["name"] == "apptainer/singularity"]
    assert check["status"] == "ok"
    assert "1.4.5" in check["detail"] or "apptainer version" in check["detail"]


def test_the_wrapper_is_apptainer_to_anything_that_calls_it(runner, sif_build, tmp_path):
    """What cwltool --singularity and spython run: `singularity` by name, on PATH."""
    program = Path(runner.program())
    done = subprocess.run([str(program.parent / "singularity"), "--version"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "version" in done.stdout


def test_the_sif_is_signed_and_a_changed_one_is_refused_by_name(suite: Suite, runner,
                                                                  sif_build, tmp_path):
    from kernbuild.build import open_repository
    from kernbuild.recipe import load_suite

    runner.use_key(open_repository(Workspace(suite.recipes, suite.state),
                                   load_suite(suite.recipes)).key)
    sif = Path(sif_build["lock"]["sif"]["path"])
    runner.verify(sif)  # signed with the suite's key: passes
    tampered = tmp_path / "tampered.sif"
    data = bytearray(sif.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte, inside the root filesystem's partition
    tampered.write_bytes(bytes(data))
    with pytest.raises(KernError, match=f"{tampered}: its signature does not verify"):
        runner.prepare(ImageRef(str(tampered), "tampered"))  # what the matrix does first
    # kernbuild image refuses a cached SIF that changed, and builds it anew next time
    [cached] = (suite.state / "images" / "sif-cache").glob("*-apptainer.sif")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    refused = suite.run("image", "wcslib", "-f", "sif", check=False)
    assert refused.returncode == 1
    assert "its signature does not verify with the suite's key" in refused.stderr
    assert not cached.exists()
    [again] = json.loads(suite.run("image", "wcslib", "-f", "sif", "--json").stdout)
    assert [s["exit_code"] for s in again["sif_smoke"]] == [0, 0]


def test_apptainer_built_and_assembled_sifs_agree(suite: Suite, runner, sif_build,
                                                  docker_engine, tmp_path):
    """The same image as a SIF two ways: by apptainer build, and by kernbuild's own
    assembly (for hosts without apptainer). Same files, labels and environment; both run
    the smoke steps under the real apptainer. Differences in /.singularity.d are printed."""
    from kernbuild.images import sif as sifs
    from kernbuild.images.rootfs import export_rootfs
    from kernbuild.images.singularity import write_singularity_dir
    from kernbuild.images.writers import WRITERS
    from kernbuild.images.plan import plan_image
    from kernbuild.recipe import load_suite

    suite_ = load_suite(suite.recipes)
    plan = plan_image(suite_, suite_.get("wcslib"), suite_.settings.base_tag)
    image = docker_engine.images.get(sif_build["lock"]["image"])
    env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"])
    definition = WRITERS["singularity"].render(plan)
    rootfs = export_rootfs(docker_engine, image.id, tmp_path / "rootfs")
    write_singularity_dir(rootfs, definition, image.labels, env)
    assembled = sifs.assemble_sif(rootfs, definition, image.labels, tmp_path / "assembled.sif")
    built = Path(sif_build["lock"]["sif"]["path"])
    trees = {name: sifs.unpack_sif(path, tmp_path / f"{name}-tree")
             for name, path in (("built", built), ("assembled", assembled))}

    def files(root: Path, inside: bool) -> dict[str, str]:
        found = {}
        for path in sorted(root.rglob("*")):
            relative = str(path.relative_to(root))
            if relative.startswith(".singularity.d") != inside:
                continue
            mode = path.lstat().st_mode
            found[relative] = ("link " + os.readlink(path) if stat.S_ISLNK(mode)
                               else "dir" if stat.S_ISDIR(mode)
                               # regular files by content; a device node (apptainer's SIF
                               # has /dev/console) by its type only: reading one may block
                               else path.read_bytes().hex()[:64] if stat.S_ISREG(mode)
                               else f"special {stat.S_IFMT(mode):o}")
        return found

    outside = {name: files(tree, inside=False) for name, tree in trees.items()}
    only_built = sorted(set(outside["built"]) - set(outside["assembled"]))
    only_assembled = sorted(set(outside["assembled"]) - set(outside["built"]))
    changed = sorted(p for p in set(outside["built"]) & set(outside["assembled"])
                     if outside["built"][p] != outside["assembled"][p])
    meta = {name: files(tree, inside=True) for name, tree in trees.items()}
    print(f"outside /.singularity.d: {len(outside['built'])} entries; only in apptainer's "
          f"{only_built}; only in kernbuild's {only_assembled}; differing {changed}")
    for one, other in (("built", "assembled"), ("assembled", "built")):
        print(f"/.singularity.d, only in the {one} SIF:", sorted(set(meta[one]) - set(meta[other])))
    # The image's own files are the same. What differs is what a container runtime puts
    # there: device nodes in /dev (apptainer's build makes them), and the files Docker
    # writes into every container, which `docker export` carries (hostname, mtab).
    runtime_made = ("dev/", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab")
    assert [p for p in only_built + only_assembled + changed
            if not p.startswith(runtime_made)] == []
    assert runner.inspect_labels(assembled)["org.kernsuite.packages"] == \
        runner.inspect_labels(built)["org.kernsuite.packages"]
    probe = "echo LANG=$LANG PATH=$PATH; " + plan.smoke[0]
    for path in (built, assembled):
        result = runner.run(ImageRef(str(path)), probe, tmp_path, 120)
        assert result.exit_code == 0, (path, result.output)
        assert f"LANG={env['LANG']}" in result.output
    assert runner.test(assembled).exit_code == 0
