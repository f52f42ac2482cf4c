"""SIF files and unpacked trees, made from tiny hand-built root filesystems (no Docker).

The round trips need squashfs-tools and siftool, running commands needs bubblewrap:
without them those tests skip, naming the package.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.images import sif, singularity
from kernbuild.images.cvmfs import export_sandbox
from kernbuild.images import rootfs as rootfs_
from kernbuild.runtime import bwrap


def run_in_rootfs(*args, **kwargs) -> tuple[int, str]:
    """bwrap.run_in_rootfs's (exit status, output)."""
    result = bwrap.run_in_rootfs(*args, **kwargs)
    return result.exit_code, result.output


ROOT_USER = os.geteuid() == 0
needs_sif_tools = pytest.mark.skipif(
    not (shutil.which("mksquashfs") and shutil.which("unsquashfs") and shutil.which("siftool")),
    reason="needs squashfs-tools and siftool (apt-get install squashfs-tools siftool)")
needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap"),
                                 reason="needs bubblewrap (apt-get install bubblewrap)")

DEFINITION = textwrap.dedent("""\
    # a comment before the header
    Bootstrap: docker
    From: kern/base:trixie

    %environment
        export KERN_FROM_DEF=yes

    %labels
        org.kernsuite.release kern-9

    %runscript
        exec "$@"

    %help
        A tiny image.

    %test
        sh -c 'echo smoke one'
        sh -c 'printf "%s\\n" "smoke two"'
    """)
LABELS = {"org.kernsuite.release": "kern-9", "org.opencontainers.image.title": "tiny"}
ENVIRONMENT = {"PATH": "/opt/tiny/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "TRICKY": 'a "quoted" $dollar `tick` \\ back'}


def make_rootfs(root: Path, *, shell: bool = False) -> Path:
    """A few files, a symlink, a hardlink, a setuid file and one owned by someone else;
    with ``shell``, the host's dash as /bin/sh with the libraries it needs."""
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc/debian_version").write_text("13.0\n")
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "usr/lib").mkdir()
    (root / "usr/lib/os-release").write_text('ID=tiny\n')
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-again")
    (root / "etc/alternatives").mkdir()
    (root / "etc/alternatives/tool").symlink_to("/usr/bin/tool")  # absolute, as in Debian
    (root / "etc/owned").write_text("theirs\n")
    if ROOT_USER:
        os.chown(root / "etc/owned", 1234, 5678)
    if shell:
        dash = os.path.realpath(shutil.which("dash") or "/bin/sh")
        copies = {dash: "/bin/sh"}
        libraries = subprocess.run(["ldd", dash], check=True, capture_output=True, text=True)
        for line in libraries.stdout.splitlines():
            path = line.split("=>")[-1].split("(")[0].strip()
            if path.startswith("/"):
                copies[os.path.realpath(path)] = path
        for source, target in copies.items():
            (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / target.lstrip("/"))
    return root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = make_rootfs(tmp_path / "rootfs")
    singularity.write_singularity_dir(root, DEFINITION, LABELS, ENVIRONMENT)
    return root


def tree(root: Path) -> dict[str, tuple]:
    """What a root filesystem holds: path -> (type, mode, uid, gid, content or link)."""
    entries = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            what = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            what = ("dir", None)
        else:
            what = ("file", path.read_bytes())
        entries[str(path.relative_to(root))] = (*what, stat.S_IMODE(st.st_mode),
                                                 st.st_uid, st.st_gid)
    return entries


# --- /.singularity.d ---------------------------------------------------------------------

def test_singularity_dir_is_what_apptainer_build_writes(rootfs: Path):
    meta = rootfs / ".singularity.d"
    assert sorted(p.name for p in (meta / "actions").iterdir()) == ["exec", "run", "shell",
                                                                   "start", "test"]
    assert sorted(p.name for p in (meta / "env").iterdir()) == [
        "01-base.sh", "10-docker2singularity.sh", "90-environment.sh", "94-appsbase.sh",
        "95-apps.sh", "99-base.sh", "99-runtimevars.sh"]
    for script in [*(meta / "actions").iterdir(), *(meta / "env").iterdir(), meta / "runscript",
                   meta / "startscript", meta / "test"]:
        assert stat.S_IMODE(script.stat().st_mode) == 0o755, script
        assert script.read_text().startswith("#!")
    assert (meta / "libs").is_dir()
    assert (meta / "Singularity").read_text() == DEFINITION
    assert json.loads((meta / "labels.json").read_text()) == LABELS
    assert (meta / "runscript").read_text() == '#!/bin/sh\n\nexec "$@"\n'
    assert (meta / "test").read_text() == (
        "#!/bin/sh\n\nsh -c 'echo smoke one'\nsh -c 'printf \"%s\\n\" \"smoke two\"'\n")
    assert (meta / "runscript.help").read_text() == "A tiny image.\n"
    assert "export KERN_FROM_DEF=yes" in (meta / "env/90-environment.sh").read_text()
    docker_env = (meta / "env/10-docker2singularity.sh").read_text()
    assert 'export PATH="/opt/tiny/bin:/usr/bin:/bin"\n' in docker_env
    assert 'export LANG="${LANG:-"C.UTF-8"}"\n' in docker_env
    for point in ("dev", "proc", "sys", "tmp", "var/tmp", "home", "root", "etc"):
        assert (rootfs / point).is_dir(), point
    for name in ("etc/hosts", "etc/resolv.conf"):
        assert (rootfs / name).is_file() and (rootfs / name).read_text() == ""
    assert os.readlink(rootfs / "singularity") == ".singularity.d/runscript"
    assert os.readlink(rootfs / ".exec") == ".singularity.d/actions/exec"
    assert os.readlink(rootfs / "environment") == ".singularity.d/env/90-environment.sh"


def test_environment_values_survive_the_shell_quoting(rootfs: Path):
    script = rootfs / ".singularity.d/env/10-docker2singularity.sh"
    result = subprocess.run(["sh", "-c", f'. "{script}"; printf "%s" "$TRICKY"'],
                            check=False, capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"]})
    assert result.stdout == ENVIRONMENT["TRICKY"]
    # a value the user sets wins over the image's, as under apptainer (PATH excepted)
    result = subprocess.run(["sh", "-c", f'. "{script}"; echo "$LANG $PATH"'],
                            check=False, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "LANG": "fr_FR.UTF-8"})
    assert result.stdout == "fr_FR.UTF-8 /opt/tiny/bin:/usr/bin:/bin\n"


def test_a_bad_environment_name_is_refused(tmp_path: Path):
    root = make_rootfs(tmp_path / "rootfs")
    with pytest.raises(KernError, match="cannot export"):
        singularity.write_singularity_dir(root, DEFINITION, {}, {"BAD-NAME": "x"})


def test_files_of_the_image_that_link_outside_are_replaced_not_written_through(tmp_path: Path):
    outside = tmp_path / "host-hosts"
    outside.write_text("127.0.0.1 host\n")
    root = make_rootfs(tmp_path / "rootfs")
    (root / "etc/hosts").symlink_to(outside)
    singularity.write_singularity_dir(root, DEFINITION, {}, {})
    assert outside.read_text() == "127.0.0.1 host\n"
    assert not (root / "etc/hosts").is_symlink() and (root / "etc/hosts").read_text() == ""


def test_a_directory_of_the_image_that_links_outside_is_refused(tmp_path: Path):
    outside = tmp_path / "host-etc"
    outside.mkdir()
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(KernError, match="leads outside the image"):
        singularity.write_singularity_dir(root, DEFINITION, {}, {})
    assert list(outside.iterdir()) == []


# --- SIF round trips ------------------------------------------------------------------------

@needs_sif_tools
def test_assemble_verify_unpack_round_trip(rootfs: Path, tmp_path: Path):
    output = sif.assemble_sif(rootfs, DEFINITION, LABELS, tmp_path / "out" / "tiny.sif")
    assert output == tmp_path / "out" / "tiny.sif"
    assert os.listdir(output.parent) == ["tiny.sif"]  # nothing temporary left beside it
    assert output.read_bytes()[:32].rstrip(b"\0") == b"#!/usr/bin/env run-singularity\n"

    listing = subprocess.run(["siftool", "list", str(output)], capture_output=True, text=True,
                             check=True).stdout
    assert "|Def.FILE" in listing and "|JSON.Generic" in listing
    assert "|FS (Squashfs/*System/amd64)" in listing

    info = sif.verify_sif(output)
    assert info["arch"] == "amd64"
    assert info["definition"] == DEFINITION
    assert info["labels"] == LABELS
    [partition] = info["partitions"]
    assert partition["type"] == "PrimSys" and partition["fs"] == "Squashfs"
    assert partition["group"] == "1"

    unpacked = sif.unpack_sif(output, tmp_path / "unpacked")
    assert unpacked == tmp_path / "unpacked"
    assert tree(unpacked) == tree(rootfs)
    assert os.stat(unpacked / "usr/bin/tool").st_ino \
        == os.stat(unpacked / "usr/bin/tool-again").st_ino
    assert stat.S_IMODE(os.stat(unpacked / "usr/bin/tool").st_mode) == 0o4755
    if ROOT_USER:
        assert (os.stat(unpacked / "etc/owned").st_uid, os.stat(unpacked / "etc/owned").st_gid) \
            == (1234, 5678)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@needs_sif_tools
def test_the_partition_carries_the_architecture(rootfs: Path, tmp_path: Path):
    output = sif.assemble_sif(rootfs, DEFINITION, {}, tmp_path / "tiny-arm64.sif", arch="arm64")
    info = sif.verify_sif(output)
    assert info["arch"] == "arm64" and info["labels"] == {}
    with pytest.raises(KernError, match="unknown architecture"):
        sif.assemble_sif(rootfs, DEFINITION, {}, tmp_path / "x.sif", arch="x86_64")


@needs_sif_tools
def test_the_squashfs_is_reproducible_with_source_date_epoch(rootfs: Path, tmp_path: Path,
                                                             monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    partitions = []
    for name in ("a.sif", "b.sif"):
        output = sif.assemble_sif(rootfs, DEFINITION, LABELS, tmp_path / name)
        [p] = sif.verify_sif(output)["partitions"]
        partitions.append(output.read_bytes()[p["start"]:p["end"]])
    assert partitions[0] == partitions[1]


@needs_sif_tools
def test_a_rootfs_without_singularity_dir_is_refused(tmp_path: Path):
    root = make_rootfs(tmp_path / "rootfs")
    with pytest.raises(KernError, match="no /.singularity.d"):
        sif.assemble_sif(root, DEFINITION, {}, tmp_path / "x.sif")
    assert not (tmp_path / "x.sif").exists()


# --- missing tools and failures -------------------------------------------------------------

def fake_path(monkeypatch, tmp_path: Path, keep: tuple[str, ...] = (),
              fakes: dict[str, str] | None = None) -> None:
    """PATH holding only ``keep`` (the real tools) and ``fakes`` (name -> shell script)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in keep:
        (bin_dir / name).symlink_to(shutil.which(name))
    for name, script in (fakes or {}).items():
        (bin_dir / name).write_text("#!/bin/sh\n" + script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_missing_tools_name_their_packages(rootfs: Path, tmp_path: Path, monkeypatch):
    fake_path(monkeypatch, tmp_path)
    with pytest.raises(KernError) as error:
        sif.assemble_sif(rootfs, DEFINITION, {}, tmp_path / "x.sif")
    assert "install squashfs-tools" in error.value.hint
    fake_path(monkeypatch, tmp_path, fakes={"mksquashfs": "exit 0\n"})
    with pytest.raises(KernError) as error:
        sif.assemble_sif(rootfs, DEFINITION, {}, tmp_path / "x.sif")
    assert "install siftool" in error.value.hint
    with pytest.raises(KernError) as error:
        sif.verify_sif(tmp_path / "x.sif")
    assert "install siftool" in error.value.hint
    with pytest.raises(KernError) as error:
        sif.unpack_sif(tmp_path / "x.sif", tmp_path / "dest")
    assert "install squashfs-tools" in error.value.hint
    with pytest.raises(KernError) as error:
        run_in_rootfs(rootfs, "true")
    assert "install bubblewrap" in error.value.hint
    assert not (tmp_path / "x.sif").exists()


@needs_sif_tools
def test_a_failing_tool_leaves_nothing_half_written(rootfs: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.sif").write_text("the previous image\n")
    fake_path(monkeypatch, tmp_path, keep=("mksquashfs",),
              fakes={"siftool": 'echo "Error: something broke" >&2; exit 1\n'})
    with pytest.raises(KernError, match="siftool failed.*something broke"):
        sif.assemble_sif(rootfs, DEFINITION, {}, out / "tiny.sif")
    assert os.listdir(out) == ["tiny.sif"]
    assert (out / "tiny.sif").read_text() == "the previous image\n"


@needs_sif_tools
def test_a_full_disk_is_named(rootfs: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    fake_path(monkeypatch, tmp_path, keep=("siftool",), fakes={
        "mksquashfs": 'echo "Write failed because No space left on device" >&2; exit 1\n'})
    with pytest.raises(KernError, match=f"no space left on {out}") as error:
        sif.assemble_sif(rootfs, DEFINITION, {}, out / "tiny.sif")
    assert error.value.hint
    assert os.listdir(out) == []


@needs_sif_tools
def test_a_full_disk_while_writing_is_named(rootfs: Path, tmp_path: Path, monkeypatch):
    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sif.os, "replace", full)
    with pytest.raises(KernError, match="no space left on"):
        sif.assemble_sif(rootfs, DEFINITION, {}, tmp_path / "out" / "tiny.sif")
    assert os.listdir(tmp_path / "out") == []


# --- verify_sif refuses what apptainer could not run ----------------------------------------

@pytest.fixture
def good_sif(rootfs: Path, tmp_path: Path) -> Path:
    if not (shutil.which("mksquashfs") and shutil.which("siftool")):
        pytest.skip("needs squashfs-tools and siftool (apt-get install squashfs-tools siftool)")
    return sif.assemble_sif(rootfs, DEFINITION, LABELS, tmp_path / "good.sif")


def test_verify_refuses_a_file_that_is_not_a_sif(good_sif: Path, tmp_path: Path):
    garbage = tmp_path / "garbage.sif"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(KernError, match="not a readable SIF file"):
        sif.verify_sif(garbage)
    with pytest.raises(KernError, match="no SIF file"):
        sif.verify_sif(tmp_path / "absent.sif")


def test_verify_refuses_a_truncated_sif(good_sif: Path, tmp_path: Path):
    truncated = tmp_path / "truncated.sif"
    truncated.write_bytes(good_sif.read_bytes()[:-1000])
    with pytest.raises(KernError, match="truncated"):
        sif.verify_sif(truncated)
    with pytest.raises(KernError):
        sif.unpack_sif(truncated, tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists()


def test_verify_refuses_a_damaged_partition(good_sif: Path, tmp_path: Path):
    [partition] = sif.verify_sif(good_sif)["partitions"]
    data = bytearray(good_sif.read_bytes())
    data[partition["start"]:partition["start"] + 64] = bytes(64)
    damaged = tmp_path / "damaged.sif"
    damaged.write_bytes(bytes(data))
    with pytest.raises(KernError, match="no intact squashfs"):
        sif.verify_sif(damaged)


def test_verify_names_what_is_missing(good_sif: Path, tmp_path: Path):
    no_definition = tmp_path / "no-definition.sif"
    shutil.copy(good_sif, no_definition)
    subprocess.run(["siftool", "del", "1", str(no_definition)], check=True, capture_output=True)
    with pytest.raises(KernError, match="no definition file"):
        sif.verify_sif(no_definition)
    no_partition = tmp_path / "no-partition.sif"
    shutil.copy(good_sif, no_partition)
    subprocess.run(["siftool", "del", "3", str(no_partition)], check=True, capture_output=True)
    with pytest.raises(KernError, match="0 primary system partitions"):
        sif.verify_sif(no_partition)


def test_unpack_wants_an_empty_destination(good_sif: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "something").write_text("x")
    with pytest.raises(KernError, match="not an empty directory"):
        sif.unpack_sif(good_sif, dest)
    (dest / "something").unlink()
    assert (sif.unpack_sif(good_sif, dest) / "etc/debian_version").read_text() == "13.0\n"


# --- running commands -----------------------------------------------------------------------

@pytest.fixture
def shell_rootfs(tmp_path: Path) -> Path:
    if not shutil.which("bwrap"):
        pytest.skip("needs bubblewrap (apt-get install bubblewrap)")
    root = make_rootfs(tmp_path / "shell-rootfs", shell=True)
    singularity.write_singularity_dir(root, DEFINITION, LABELS, ENVIRONMENT)
    return root


def test_commands_run_with_the_image_environment(shell_rootfs: Path):
    code, output = run_in_rootfs(
        shell_rootfs, 'read v < /etc/debian_version; echo "$v $LANG $KERN_FROM_DEF"; '
                      'echo "$LD_LIBRARY_PATH"; echo "$PATH"; pwd')
    assert code == 0, output
    assert output.splitlines() == ["13.0 C.UTF-8 yes", "/.singularity.d/libs",
                                   "/opt/tiny/bin:/usr/bin:/bin", "/tmp"]


def test_exit_status_and_stderr_come_back(shell_rootfs: Path):
    assert run_in_rootfs(shell_rootfs, "echo oops >&2; exit 3") == (3, "oops\n")
    code, output = run_in_rootfs(shell_rootfs, "/.singularity.d/test")
    assert (code, output) == (0, "smoke one\nsmoke two\n")


def test_the_image_is_read_only_and_tmp_is_fresh(shell_rootfs: Path):
    code, _ = run_in_rootfs(shell_rootfs, "echo x > /etc/new")
    assert code != 0
    assert not (shell_rootfs / "etc/new").exists()
    assert run_in_rootfs(shell_rootfs, "echo x > /tmp/left; echo ok")[0] == 0
    assert run_in_rootfs(shell_rootfs, "test -e /tmp/left")[0] == 1
    assert list((shell_rootfs / "tmp").iterdir()) == []


def test_the_working_directory(shell_rootfs: Path, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("from the host\n")
    assert run_in_rootfs(shell_rootfs, "read v < data.txt; echo $v; pwd", cwd=str(project)) \
        == (0, f"from the host\n{project}\n")
    assert run_in_rootfs(shell_rootfs, "pwd", cwd="/etc") == (0, "/etc\n")
    assert run_in_rootfs(shell_rootfs, "pwd", cwd="/tmp/work/here") == (0, "/tmp/work/here\n")
    with pytest.raises(KernError, match="neither"):
        run_in_rootfs(shell_rootfs, "pwd", cwd="/no/such/place")


def test_a_command_past_its_time_is_killed(shell_rootfs: Path):
    code, output = run_in_rootfs(shell_rootfs, "echo started; while :; do :; done", timeout=1)
    assert code == 124
    assert output.startswith("started\n") and "killed after 1 s" in output


# --- CVMFS ----------------------------------------------------------------------------------

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_export_sandbox_publishes_by_digest(rootfs: Path, tmp_path: Path):
    cvmfs = tmp_path / "cvmfs"
    (rootfs / "etc/secret").write_text("x")
    os.chmod(rootfs / "etc/secret", 0o000)
    path, changed = export_sandbox(rootfs, cvmfs, "kern/tiny:1", DIGEST_A)
    assert (path, changed) == (cvmfs / ".images" / ("a" * 64), True)
    assert (path / "etc/debian_version").read_text() == "13.0\n"
    assert os.readlink(path / "etc/alternatives/tool") == "/usr/bin/tool"
    assert os.stat(path / "usr/bin/tool").st_ino == os.stat(path / "usr/bin/tool-again").st_ino
    assert stat.S_IMODE(os.stat(path / "usr/bin/tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(path / "etc/secret").st_mode) == 0o400
    for point in ("cvmfs", "srv", "dev", "proc", "sys", ".singularity.d/actions"):
        assert (path / point).is_dir(), point
    link = cvmfs / "kern" / "tiny:1"
    assert os.readlink(link) == "../.images/" + "a" * 64
    assert link.resolve() == path.resolve()
    assert [p.name for p in (cvmfs / ".images").iterdir()] == ["a" * 64]

    assert export_sandbox(rootfs, cvmfs, "kern/tiny:1", DIGEST_A) == (path, False)
    # the same tree under a second name is not copied again
    assert export_sandbox(rootfs, cvmfs, "kern/tiny:latest", "a" * 64) == (path, True)

    (rootfs / "etc/debian_version").write_text("13.1\n")
    new, changed = export_sandbox(rootfs, cvmfs, "kern/tiny:1", DIGEST_B)
    assert changed and new == cvmfs / ".images" / ("b" * 64)
    assert (link / "etc/debian_version").read_text() == "13.1\n"
    assert (path / "etc/debian_version").read_text() == "13.0\n"  # the old tree stays
    assert sorted(p.name for p in (cvmfs / "kern").iterdir()) == ["tiny:1", "tiny:latest"]


def test_export_sandbox_refuses_bad_names_and_digests(rootfs: Path, tmp_path: Path):
    for name in ("", "/abs", "../up", "kern/../x", ".images/x"):
        with pytest.raises(KernError):
            export_sandbox(rootfs, tmp_path / "cvmfs", name, DIGEST_A)
    with pytest.raises(KernError, match="not an image digest"):
        export_sandbox(rootfs, tmp_path / "cvmfs", "tiny", "sha256:1234")
    bare = make_rootfs(tmp_path / "bare")
    with pytest.raises(KernError, match="no /.singularity.d"):
        export_sandbox(bare, tmp_path / "cvmfs", "tiny", DIGEST_B)
    assert not (tmp_path / "cvmfs" / ".images" / ("b" * 64)).exists()


# --- export_rootfs, with a stand-in for the engine ------------------------------------------

class FakeContainer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.removed = False

    def export(self, chunk_size: int = 2 << 20):
        for start in range(0, len(self.data), 7000):  # chunks that split tar blocks
            yield self.data[start:start + 7000]

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeClient:
    """What export_rootfs uses of docker.DockerClient."""

    def __init__(self, data: bytes) -> None:
        self.container = FakeContainer(data)
        client = self

        class Containers:
            def create(self, image, command=None, labels=None):
                if image != "kern/tiny:1":
                    from docker.errors import ImageNotFound
                    raise ImageNotFound(f"No such image: {image}")
                return client.container

        self.containers = Containers()


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_export_rootfs_keeps_what_a_root_filesystem_needs(tmp_path: Path):
    client = FakeClient(archive(
        (entry(".dockerenv"), b""),
        (entry("etc", tarfile.DIRTYPE, 0o755), None),
        (entry("etc/hostname"), b"x\n"),
        (entry("etc/owned", uid=1234, gid=5678, uname="nobody-here", gname="nobody-here"), b"o\n"),
        (entry("usr", tarfile.DIRTYPE, 0o755), None),
        (entry("usr/bin", tarfile.DIRTYPE, 0o755), None),
        (entry("usr/bin/su", mode=0o4755), b"#!/bin/sh\n" + b"x" * 20000),
        (entry("usr/bin/su-again", tarfile.LNKTYPE, 0o4755, linkname="usr/bin/su"), None),
        (entry("bin", tarfile.SYMTYPE, 0o777, linkname="usr/bin"), None),
        (entry("etc/alternatives", tarfile.DIRTYPE, 0o755), None),
        (entry("etc/alternatives/su", tarfile.SYMTYPE, 0o777, linkname="/usr/bin/su"), None),
        (entry("tmp", tarfile.DIRTYPE, 0o1777), None),
        (entry("dev", tarfile.DIRTYPE, 0o755), None),
        (entry("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3), None),
        (entry("var/cache", tarfile.DIRTYPE, 0o555), None),
    ))
    dest = rootfs_.export_rootfs(client, "kern/tiny:1", tmp_path / "rootfs")
    assert dest == tmp_path / "rootfs" and client.container.removed
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert not (dest / ".dockerenv").exists()
    assert not os.path.lexists(dest / "dev/null") and (dest / "dev").is_dir()
    assert stat.S_IMODE((dest / "usr/bin/su").stat().st_mode) == 0o4755
    assert (dest / "usr/bin/su").stat().st_ino == (dest / "usr/bin/su-again").stat().st_ino
    assert os.readlink(dest / "bin") == "usr/bin"
    assert os.readlink(dest / "etc/alternatives/su") == "/usr/bin/su"
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "var/cache").stat().st_mode) == 0o555
    if ROOT_USER:  # numeric owners, not looked up by name on this machine
        assert ((dest / "etc/owned").stat().st_uid, (dest / "etc/owned").stat().st_gid) \
            == (1234, 5678)
    assert [p.name for p in tmp_path.iterdir()] == ["rootfs"]


@pytest.mark.parametrize("members, why", [
    ([(entry("/etc/passwd"), b"x")], "absolute path"),
    ([(entry("../outside"), b"x")], "parent"),
    ([(entry("etc", tarfile.SYMTYPE, 0o777, linkname="{outside}"), None),
      (entry("etc/passwd"), b"x")], "through a symlink"),
    ([(entry("x", tarfile.LNKTYPE, linkname="../outside/file"), None)], "hardlink out"),
])
def test_export_rootfs_refuses_an_archive_that_escapes(tmp_path: Path, members, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("keep\n")
    for info, _ in members:
        info.linkname = info.linkname.replace("{outside}", str(outside))
    client = FakeClient(archive(*members))
    with pytest.raises(KernError, match="refusing to unpack"):
        rootfs_.export_rootfs(client, "kern/tiny:1", tmp_path / "rootfs")
    assert client.container.removed
    assert sorted(p.name for p in outside.iterdir()) == ["file"]
    assert (outside / "file").read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]


def test_export_rootfs_of_a_missing_image(tmp_path: Path):
    with pytest.raises(KernError, match="no image kern/absent:1"):
        rootfs_.export_rootfs(FakeClient(b""), "kern/absent:1", tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()
