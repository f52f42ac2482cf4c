"""Images from the signed repository, on a real Docker engine; their SIFs with the real
apptainer (the host's, or on these Debian 12 hosts, where Debian's needs glibc >= 2.38,
Debian unstable's apptainer 1.4.5 in a trixie container, as the matrix runs it)."""

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
def wcslib_image(suite: Suite) -> dict:
    """kern/wcslib:1, made from a state where nothing is built yet."""
    [entry] = json.loads(suite.run("image", "wcslib", "--json").stdout)
    return entry


def test_image_of_an_unbuilt_recipe_builds_its_packages_first(suite, wcslib_image):
    assert {name for name, _ in suite.repo_versions()} >= {"libwcs8", "wcslib-dev",
                                                          "wcslib-tools"}
    assert [r["exit_code"] for r in wcslib_image["smoke"]] == [0]
    assert wcslib_image["lock"]["packages"] == {"libwcs8": "8.4+ds-1kern1",
                                        "wcslib-tools": "8.4+ds-1kern1"}  # no -dev in images


def test_labels_and_lockfile_say_what_went_in(docker_engine, suite, wcslib_image):
    image = docker_engine.images.get("kern/wcslib:1")
    assert image.id == wcslib_image["lock"]["image"]
    labels = image.labels
    assert labels["org.kernsuite.packages"] == "libwcs8=8.4+ds-1kern1 wcslib-tools=8.4+ds-1kern1"
    assert labels["org.opencontainers.image.version"] == "8.4+ds-1kern1"
    assert labels["org.opencontainers.image.base.digest"] == wcslib_image["lock"]["base_digest"]
    # wcslib comes from Debian's source package: the pinned .dsc's sum.
    assert labels["org.kernsuite.source-sha256"] == (
        "wcslib=2304f8446d0128fcb2a581b8e045dabef499275d857e197dea924e376c6232a8")
    lock = json.loads((suite.recipes.parent / "kern.lock").read_text())
    assert lock["images"]["kern/wcslib:1"]["image"] == image.id


def test_no_docs_or_apt_lists_in_the_image(docker_engine, wcslib_image):
    # wcslib-tools ships wcsware.1 (the .deb has it: see the package's contents)
    script = ("ls /usr/share/doc/libwcs8 /usr/share/doc/wcslib-tools; "
              "ls /usr/share/man/man1 | grep -c wcsware; "
              "find /var/lib/apt/lists /var/cache/apt -type f ! -name lock | wc -l")
    output = docker_engine.containers.run("kern/wcslib:1", ["sh", "-c", script],
                                          remove=True).decode().split()
    # licenses stay; man pages, documentation, package lists and caches do not
    assert output == ["/usr/share/doc/libwcs8:", "copyright", "/usr/share/doc/wcslib-tools:",
                      "copyright", "0", "0"]


def test_a_failing_smoke_step_fails_the_command_with_its_output(suite, wcslib_image):
    recipe = suite.recipes / "wcslib.yaml"
    original = recipe.read_text()
    recipe.write_text(original + "  - run: echo 'the sky is falling' >&2; exit 3\n")
    try:
        result = suite.run("image", "wcslib", check=False)
    finally:
        recipe.write_text(original)
    assert result.returncode == 1
    assert "error: kern/wcslib:1 (docker): smoke step failed (exit 3)" in result.stderr
    assert "the sky is falling" in result.stderr
    assert "1 failed" in result.stdout


def test_committed_dockerfile_builds_with_plain_docker_build(suite, wcslib_image):
    """dockerfiles/ from the checkout, the repository served on loopback, the docker CLI."""
    import functools
    import http.server
    import subprocess
    import threading

    from tests.integration.conftest import ROOT

    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(suite.state / "repo/current"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        build = subprocess.run(
            ["docker", "build", "--network", "host", "-t", "kernbuild-test/wcslib:plain",
             "--build-arg", f"KERN_REPO=http://127.0.0.1:{server.server_port}",
             "-f", str(ROOT / "dockerfiles/wcslib/Dockerfile"), str(ROOT / "dockerfiles")],
            capture_output=True, text=True)
    finally:
        server.shutdown()
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = subprocess.run(["docker", "run", "--rm", "kernbuild-test/wcslib:plain", "sh", "-c",
                          "echo '187.5 2.05' | wcsware -h 2>&1 | head -1; command -v wcsware"],
                         capture_output=True, text=True)
    subprocess.run(["docker", "rmi", "-f", "kernbuild-test/wcslib:plain"], capture_output=True)
    assert run.stdout.strip().endswith("/usr/bin/wcsware")


def test_sif_and_cvmfs_sandbox_run_the_smoke_steps(suite, wcslib_image, tmp_path):
    from kernbuild.images.sif import verify_sif

    sifs, cvmfs = tmp_path / "sif", tmp_path / "cvmfs"
    args = ("image", "wcslib", "-f", "sif", "-f", "sandbox", "-o", str(sifs), "--cvmfs",
            str(cvmfs), "--json")
    [entry] = json.loads(suite.run(*args).stdout)
    sif = Path(entry["lock"]["sif"]["path"])
    assert sif == sifs / "wcslib_1.sif"
    info = verify_sif(sif)
    assert info["arch"] == "amd64"
    # apptainer build records where it built from; kernbuild's own assembly, the image's
    # rendered Singularity definition
    assert ("bootstrap: docker-archive" in info["definition"]
            if entry["lock"]["sif"]["built_with"] == "apptainer build"
            else "kern-apt-install" in info["definition"]), info["definition"]
    assert info["labels"]["org.kernsuite.packages"] == " ".join(
        f"{name}={version}" for name, version in entry["lock"]["packages"].items())
    # each smoke step by apptainer exec, then apptainer test: the real apptainer
    assert [r["exit_code"] for r in entry["sif_smoke"]] == [0, 0]
    assert "apptainer" in entry["lock"]["sif"]["tested_with"]
    sandbox = entry["lock"]["sandbox"]
    assert sandbox["published"] is True
    assert Path(sandbox["path"]).parent == cvmfs / ".images"
    assert (cvmfs / "kern/wcslib:1").resolve() == Path(sandbox["path"]).resolve()
    assert (Path(sandbox["path"]) / ".singularity.d/actions/exec").exists()
    assert [r["exit_code"] for r in entry["sandbox_smoke"]] == [0]
    [again] = json.loads(suite.run(*args).stdout)
    assert again["lock"]["sandbox"]["published"] is False  # same digest: nothing to do
    lock = json.loads((suite.recipes.parent / "kern.lock").read_text())["images"]["kern/wcslib:1"]
    assert lock["sif"]["sha256"] == again["lock"]["sif"]["sha256"]
    assert "smoke" not in lock and "smoke" not in lock["sif"]


# --- the real apptainer ------------------------------------------------------------------
# In this module, with its suite: wcslib's packages and image are built by then.


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
    # A mark of this step's own: other tests (and other kernbuild runs) may have
    # apptainer containers of their own running meanwhile.
    mark = f"step-{os.getpid()}-{tmp_path.name}"
    # 15 s: on a loaded machine apptainer's container alone may take several to start
    result = runner.run(sif, f"echo started; sleep 300; : {mark}", tmp_path, 15)
    assert (result.exit_code, result.timed_out) == (124, True)
    assert "started" in result.output
    if not locate("apptainer"):
        left = [c for c in docker_engine.containers.list(
                    all=True, filters={"label": "kernbuild=apptainer"})
                if mark in " ".join(c.attrs.get("Args") or [])]
        assert left == []


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
