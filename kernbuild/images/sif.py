"""Singularity/Apptainer images without Apptainer: SIF files and unpacked trees for CVMFS.

No ``apptainer`` binary can be installed on the machines kernbuild runs on, so the
pieces apptainer's ``build`` would make are made here, from a Docker image:

1. :func:`export_rootfs` unpacks the image's root filesystem (``docker export``);
2. :func:`write_singularity_dir` adds ``/.singularity.d`` and the mount points, as
   apptainer's build writes them;
3. :func:`assemble_sif` packs it with ``mksquashfs`` and ``siftool`` (squashfs-tools,
   siftool) into a SIF that apptainer runs as it runs its own: a primary system
   partition, the definition file and the inspect metadata with the labels;
4. :func:`verify_sif` and :func:`unpack_sif` check and open a SIF again, and
   :func:`run_in_rootfs` runs commands in a root filesystem the way apptainer
   would (through bubblewrap), so every SIF is tried before it is handed out;
5. :func:`export_sandbox` publishes an unpacked tree for CVMFS, as OSG's
   singularity.opensciencegrid.org and CERN's unpacked.cern.ch do.

Every step writes into a temporary name beside its destination and renames it
into place: a failure never leaves a half-written image behind.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kernbuild.errors import KernError

if TYPE_CHECKING:
    import docker

__all__ = [
    "assemble_sif",
    "export_rootfs",
    "export_sandbox",
    "run_in_rootfs",
    "unpack_sif",
    "verify_sif",
    "write_singularity_dir",
]

# siftool's --partarch numbers (sif's arch table), keyed by Go's GOARCH names as apptainer uses.
SIF_ARCHES = {"386": 1, "amd64": 2, "arm": 3, "arm64": 4, "ppc64": 5, "ppc64le": 6, "mips": 7,
              "mipsle": 8, "mips64": 9, "mips64le": 10, "s390x": 11, "riscv64": 12}
# Where apptainer stores the labels in a SIF (pkg/image: SIFDescInspectMetadataJSON).
INSPECT_METADATA = "inspect-metadata.json"
# sif.CreateContainerAtPath(OptCreateWithLaunchScript(...)) in apptainer's SIF assembler:
# the first 32 bytes of the header, so `./image.sif` runs the image.
LAUNCH_SCRIPT = b"#!/usr/bin/env run-singularity\n"
# apptainer's default PATH in a container (the action scripts' fixpath).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What OSG's cvmfs-singularity-sync creates in every published image: the points its
# sites bind (/cvmfs, /srv) and those apptainer mounts (/dev, /proc, /sys).
CVMFS_MOUNT_POINTS = ("cvmfs", "srv", "dev", "proc", "sys")


# --- 1. docker image -> root filesystem -----------------------------------------------

def export_rootfs(client: docker.DockerClient, image: str, dest: Path) -> Path:
    """The root filesystem of ``image`` unpacked into ``dest`` (absent or empty); returns ``dest``.

    The image's container is exported (``docker export``) and streamed straight into
    the extraction; the container is removed whatever happens. Ownership (numeric,
    as in the image: run as root to keep it), permissions including setuid bits,
    symlinks and hardlinks are kept; device nodes are skipped (a container gets its
    /dev at run time). A member with an absolute path or ``..``, or one that would be
    written through a symlink or hardlinked to something outside ``dest``, makes the
    whole export fail: such an archive is not a root filesystem.
    """
    from docker.errors import DockerException, ImageNotFound

    dest = Path(dest)
    _check_empty_destination(dest)
    try:
        # Never started, so the command only has to satisfy images without a CMD.
        container = client.containers.create(image, command=["true"],
                                             labels={"kernbuild": "export"})
    except ImageNotFound as exc:
        raise KernError(f"no image {image} in the Docker engine",
                        "build it first ('kernbuild image ...'), or pull or import it") from exc
    except DockerException as exc:
        raise KernError(f"cannot create a container of {image}: {exc}") from exc
    try:
        with _space(dest.parent), _partial_dir(dest) as partial:
            stream = io.BufferedReader(_IterableReader(container.export(chunk_size=1 << 20)),
                                       buffer_size=1 << 20)
            try:
                with tarfile.open(fileobj=stream, mode="r|") as archive:
                    _extract_rootfs(archive, partial)
            except tarfile.TarError as exc:
                raise KernError(f"the export of {image} is not a readable archive: {exc}",
                                "try again; if it persists, rebuild the image") from exc
            # Docker's marker of "inside a Docker container": not true under apptainer.
            (partial / ".dockerenv").unlink(missing_ok=True)
            _replace_dir(partial, dest)
    except DockerException as exc:
        raise KernError(f"cannot export {image}: {exc}") from exc
    finally:
        container.remove(force=True)
    return dest


class _IterableReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (the engine's export stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def _extract_rootfs(archive: tarfile.TarFile, root: Path) -> None:
    """Extract a root filesystem archive into ``root`` (see :func:`export_rootfs`).

    tarfile's 'data' filter would refuse absolute symlinks (every Debian root
    filesystem has them; inside the container they resolve against its own root),
    drop ownership and clear setuid bits, so the checks that matter are made here and
    the archive is then extracted as trusted.
    """
    real_root = os.path.realpath(root)

    def safe(members: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in members:
            if member.ischr() or member.isblk():
                continue
            _check_member_path(member.name, member.name, root, real_root)
            if member.islnk():
                _check_member_path(member.linkname, member.name, root, real_root)
            yield member

    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    archive.extractall(root, members=safe(archive), numeric_owner=True, **trusted)
    os.chmod(root, 0o755)  # the temporary directory was made 0700; "/" is 0755


def _check_member_path(name: str, member: str, root: Path, real_root: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise KernError(f"refusing to unpack the image: {member!r} points at {name!r}",
                        "the archive is not a plain root filesystem; rebuild the image")
    # The parent must resolve inside the root: writing through a symlink to "/etc"
    # would otherwise write to this machine's /etc.
    parent = os.path.realpath(root.joinpath(*parts[:-1]) if len(parts) > 1 else root)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise KernError(f"refusing to unpack the image: {member!r} would be written "
                        f"outside it, through a symlink", "rebuild the image")


# --- 2. /.singularity.d ---------------------------------------------------------------

# The scripts below are small equivalents of those apptainer's build writes
# (internal/pkg/build/sources/base_environment.go and the *.sh files beside it).

_SOURCE_ENV = """\
for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"""

_ACTIONS = {
    "exec": f'#!/bin/sh\n\n{_SOURCE_ENV}\nexec "$@"\n',
    "run": f"""#!/bin/sh\n\n{_SOURCE_ENV}
if test -n "${{APPTAINER_APPNAME:-}}"; then
    if test -x "/scif/apps/${{APPTAINER_APPNAME}}/scif/runscript"; then
        exec "/scif/apps/${{APPTAINER_APPNAME}}/scif/runscript" "$@"
    fi
    echo "No Apptainer runscript for contained app: ${{APPTAINER_APPNAME}}"
    exit 1
elif test -x "/.singularity.d/runscript"; then
    exec "/.singularity.d/runscript" "$@"
else
    echo "No Apptainer runscript found, executing /bin/sh"
    exec /bin/sh "$@"
fi
""",
    "shell": f"""#!/bin/sh\n\n{_SOURCE_ENV}
if test -n "${{APPTAINER_SHELL:-}}" -a -x "${{APPTAINER_SHELL:-}}"; then
    exec $APPTAINER_SHELL "$@"
elif test -x /bin/bash; then
    SHELL=/bin/bash
    PS1="Apptainer $APPTAINER_NAME:\\\\w> "
    export SHELL PS1
    exec /bin/bash --norc "$@"
elif test -x /bin/sh; then
    SHELL=/bin/sh
    export SHELL
    exec /bin/sh "$@"
fi
echo "ERROR: /bin/sh does not exist in container" 1>&2
exit 1
""",
    # `instance start`: tell the paused PID 1 to go on, then run the startscript.
    "start": f"""#!/bin/sh\n\nkill -CONT 1\n\n{_SOURCE_ENV}
if test -x "/.singularity.d/startscript"; then
    exec "/.singularity.d/startscript"
fi
""",
    "test": f"""#!/bin/sh\n\n{_SOURCE_ENV}
if test -n "${{APPTAINER_APPNAME:-}}"; then
    if test -x "/scif/apps/${{APPTAINER_APPNAME}}/scif/test"; then
        exec "/scif/apps/${{APPTAINER_APPNAME}}/scif/test" "$@"
    fi
    echo "No tests for contained app: ${{APPTAINER_APPNAME}}"
    exit 1
elif test -x "/.singularity.d/test"; then
    exec "/.singularity.d/test" "$@"
else
    echo "No test found in container, executing /bin/sh -c true"
    exec /bin/sh -c true
fi
""",
}

_ENV_SCRIPTS = {
    "01-base.sh": "#!/bin/sh\n",
    # SCIF apps: kernbuild's images have none, so nothing to export (apps.go writes
    # one block per app here).
    "94-appsbase.sh": "#!/bin/sh\n",
    "95-apps.sh": """#!/bin/sh
if test -n "${APPTAINER_APPNAME:-}"; then
    export APPTAINER_APPNAME
    if ! test -d "/scif/apps/${APPTAINER_APPNAME}"; then
        echo "Could not locate the container application: ${APPTAINER_APPNAME}"
        exit 1
    fi
    SCIF_APPS=/scif/apps
    SCIF_APPROOT="/scif/apps/${APPTAINER_APPNAME}"
    PATH="$SCIF_APPROOT/bin:$SCIF_APPROOT:$PATH"
    LD_LIBRARY_PATH="$SCIF_APPROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for script in "$SCIF_APPROOT/scif/env/01-base.sh" "$SCIF_APPROOT/scif/env/90-environment.sh"; do
        if [ -f "$script" ]; then . "$script"; fi
    done
    export SCIF_APPS SCIF_APPROOT PATH LD_LIBRARY_PATH
fi
""",
    # /.singularity.d/libs is where `--nv` and friends bind the host's libraries.
    "99-base.sh": """#!/bin/sh
if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
""",
    # --env PATH=..., --env PREPEND_PATH=... and APPEND_PATH reach the container this way.
    "99-runtimevars.sh": """#!/bin/sh
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi
if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
    PATH="${PATH}:${SING_USER_DEFINED_APPEND_PATH}"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PATH}"
fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
""",
}

# base_environment.go makeDirs and makeSymlinks: what every built image holds.
_MOUNT_DIRS = ("dev", "proc", "root", "var/tmp", "tmp", "etc", "sys", "home")
_SYMLINKS = {"singularity": ".singularity.d/runscript", ".run": ".singularity.d/actions/run",
             ".exec": ".singularity.d/actions/exec", ".test": ".singularity.d/actions/test",
             ".shell": ".singularity.d/actions/shell",
             "environment": ".singularity.d/env/90-environment.sh"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def write_singularity_dir(rootfs: Path, definition: str, labels: dict[str, str],
                          environment: dict[str, str], runscript: str = 'exec "$@"') -> None:
    """Make ``rootfs`` an apptainer root filesystem: ``/.singularity.d`` as apptainer's
    ``build`` writes it, and the mount points apptainer expects.

    - ``actions/{exec,run,shell,start,test}``: source ``env/*.sh`` in order, then act;
    - ``env/10-docker2singularity.sh``: ``environment`` (the image's ``ENV``, from
      ``docker inspect``), exported as apptainer does: PATH as is, every other
      variable only where the caller has not set it;
    - ``env/90-environment.sh``: the definition's ``%environment``; the other
      ``env/`` files as apptainer writes them;
    - ``runscript`` (``runscript``, with ``#!/bin/sh`` unless it has its own ``#!``),
      ``test`` (the definition's ``%test``: the smoke commands), ``startscript``
      and ``runscript.help`` (``%startscript``, ``%help``), ``labels.json``
      (``labels``), ``Singularity`` (``definition``), an empty ``libs/``;
    - /dev, /proc, /sys, /tmp, /var/tmp, /home, /root and empty /etc/hosts and
      /etc/resolv.conf files to bind the host's onto; the legacy ``/singularity``,
      ``/.exec``, ``/.run``, ``/.shell``, ``/.test`` and ``/environment`` symlinks.
      (/etc/localtime is not made: apptainer binds the host's only where the image
      has one.)
    """
    rootfs = Path(rootfs)
    bad = [name for name in environment if not _ENV_NAME.match(name)]
    if bad:
        raise KernError(f"the image's environment has names a shell cannot export: {bad}",
                        "fix the ENV lines of the image")
    sections = _definition_sections(definition)
    with _space(rootfs):
        # A Dockerfile can make the root read-only; apptainer adds owner write too.
        os.chmod(rootfs, os.stat(rootfs).st_mode | stat.S_IWUSR)
        for directory in (*_MOUNT_DIRS, ".singularity.d/libs", ".singularity.d/actions",
                          ".singularity.d/env"):
            _inside(rootfs, directory).mkdir(mode=0o755, parents=True, exist_ok=True)
        for name, target in _SYMLINKS.items():
            if not os.path.lexists(rootfs / name):
                os.symlink(target, rootfs / name)
        _write(rootfs, "etc/hosts", "", 0o644)
        _write(rootfs, "etc/resolv.conf", "", 0o644)
        for name, text in _ACTIONS.items():
            _write(rootfs, f".singularity.d/actions/{name}", text, 0o755)
        env_scripts = {
            **_ENV_SCRIPTS,
            "10-docker2singularity.sh": "#!/bin/sh\n" + "".join(
                _export_line(name, value) for name, value in environment.items()),
            "90-environment.sh": "#!/bin/sh\n# Custom environment shell code should follow\n\n"
                                 + _section_text(sections.get("environment", "")),
        }
        for name, text in sorted(env_scripts.items()):
            _write(rootfs, f".singularity.d/env/{name}", text, 0o755)
        _write(rootfs, ".singularity.d/runscript", _script(runscript), 0o755)
        _write(rootfs, ".singularity.d/startscript",
               _script(sections.get("startscript", ""), empty="#!/bin/sh\n"), 0o755)
        if sections.get("test", "").strip():
            _write(rootfs, ".singularity.d/test", _script(sections["test"]), 0o755)
        if sections.get("help", "").strip():
            _write(rootfs, ".singularity.d/runscript.help", _section_text(sections["help"]), 0o644)
        _write(rootfs, ".singularity.d/labels.json",
               json.dumps(labels, indent="\t", sort_keys=True), 0o644)
        _write(rootfs, ".singularity.d/Singularity", definition, 0o644)


# The sections apptainer's parser knows; any other "%word" line is text of a section.
_SECTIONS = ("help", "setup", "files", "labels", "environment", "post", "runscript", "test",
             "startscript", "arguments")


def _definition_sections(definition: str) -> dict[str, str]:
    """{section name: its raw text} of a definition file (``%name`` at a line's start)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in definition.splitlines():
        match = re.match(r"%(\w+)\b", line)
        if match and match.group(1).lower() in _SECTIONS:
            current = sections.setdefault(match.group(1).lower(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _section_text(text: str) -> str:
    import textwrap

    text = textwrap.dedent(text).strip("\n")
    return text + "\n" if text else ""


def _script(text: str, empty: str = "") -> str:
    """A section as an executable script: ``#!/bin/sh`` unless it brings its own (as
    apptainer's handleShebangScript)."""
    body = _section_text(text)
    if not body:
        return empty
    if body.startswith("#!"):
        return body
    return "#!/bin/sh\n\n" + body


def _export_line(name: str, value: str) -> str:
    # As apptainer's OCI conveyor: the image's PATH wins; any other variable keeps the
    # value a user gives it (apptainer --env, or the host's environment).
    quoted = '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'
    if name == "PATH":
        return f"export PATH={quoted}\n"
    return f'export {name}="${{{name}:-{quoted}}}"\n'


def _inside(rootfs: Path, relative: str) -> Path:
    """``rootfs/relative``, refused where its parent resolves outside ``rootfs`` (an image
    whose /etc is a symlink to / would otherwise have us write this machine's files)."""
    path = rootfs / relative
    real_root = os.path.realpath(rootfs)
    parent = os.path.realpath(path.parent)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise KernError(f"/{relative} in {rootfs} leads outside the image (a symlink)",
                        "fix the image: its directories must not link outside it")
    return path


def _write(rootfs: Path, relative: str, text: str, mode: int) -> None:
    path = _inside(rootfs, relative)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_symlink():  # replaced, never written through
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


# --- 3. root filesystem -> SIF --------------------------------------------------------

def assemble_sif(rootfs: Path, definition: str, labels: dict[str, str], output: Path,
                 arch: str = "amd64") -> Path:
    """A SIF file at ``output`` holding ``rootfs``; returns ``output``.

    As apptainer's SIF assembler makes it: ``rootfs`` as a gzip squashfs (ownership
    kept when run as root; ``-all-root`` otherwise, as apptainer does for users;
    reproducible: ``SOURCE_DATE_EPOCH``, where set, is its timestamp) in a primary
    system partition for ``arch``, the definition file, and the inspect metadata
    (``inspect-metadata.json``, generic JSON, holding the labels and the scripts),
    all in object group 1, with apptainer's launch script so the file can be run.
    ``rootfs`` must hold ``/.singularity.d`` (:func:`write_singularity_dir`).

    Everything is written under a temporary name beside ``output``, checked with
    :func:`verify_sif`, then renamed: a failure leaves ``output`` as it was.
    """
    rootfs, output = Path(rootfs), Path(output)
    mksquashfs = _tool("mksquashfs", "squashfs-tools")
    siftool = _tool("siftool", "siftool")
    if arch not in SIF_ARCHES:
        raise KernError(f"unknown architecture {arch!r}",
                        f"one of: {', '.join(sorted(SIF_ARCHES))} (Go's names, as apptainer's)")
    if not (rootfs / ".singularity.d/actions/exec").is_file():
        raise KernError(f"{rootfs} has no /.singularity.d: apptainer could not run it",
                        "write it first (write_singularity_dir)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with _space(output.parent), _partial_dir(output) as work:
        squashfs, sif = work / "rootfs.squashfs", work / "image.sif"
        flags = ["-noappend", "-comp", "gzip", "-no-progress", "-quiet"]
        if os.geteuid() != 0:
            flags.append("-all-root")
        _run([mksquashfs, str(rootfs), str(squashfs), *flags], output.parent)
        (work / "definition").write_text(definition)
        (work / INSPECT_METADATA).write_text(json.dumps(_inspect_metadata(rootfs, definition,
                                                                          labels)))
        _run([siftool, "new", str(sif)], output.parent)
        with open(sif, "r+b") as header:
            header.write(LAUNCH_SCRIPT)
        group = ["--groupid", "1"]
        _run([siftool, "add", str(sif), str(work / "definition"), "--datatype", "1", *group],
             output.parent)
        _run([siftool, "add", str(sif), str(work / INSPECT_METADATA), "--datatype", "6",
              "--filename", INSPECT_METADATA, *group], output.parent)
        _run([siftool, "add", str(sif), str(squashfs), "--datatype", "4", "--parttype", "2",
              "--partfs", "1", "--partarch", str(SIF_ARCHES[arch]), *group], output.parent)
        verify_sif(sif)
        os.replace(sif, output)
    return output


def _inspect_metadata(rootfs: Path, definition: str, labels: dict[str, str]) -> dict:
    """What ``apptainer inspect --all --json`` says of the image (pkg/inspect Metadata)."""
    meta = rootfs / ".singularity.d"

    def text(path: Path) -> str:
        return path.read_text(errors="replace") if path.is_file() else ""

    attributes = {
        "labels": labels,
        "deffile": definition,
        "environment": {f"/.singularity.d/env/{p.name}": text(p)
                        for p in sorted((meta / "env").glob("*.sh"))},
        "runscript": text(meta / "runscript"),
        "startscript": text(meta / "startscript"),
        "test": text(meta / "test"),
        "helpfile": text(meta / "runscript.help"),
    }
    return {"data": {"attributes": {k: v for k, v in attributes.items() if v}},
            "type": "container"}


# --- 4. checking and opening a SIF ----------------------------------------------------

_ROW = re.compile(r"^\s*(\d+)\s*\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*(\d+)-(\d+)\s*\|\s*(.+?)\s*$")
_PARTITION = re.compile(r"^FS \((.+)/(\*?)(\w+)/(\w+)\)$")


def verify_sif(path: Path) -> dict:
    """Check a SIF file and say what it holds.

    It must hold exactly one primary system partition, a squashfs for an
    architecture, wholly inside the file, and a definition file. Returns
    ``{"partitions": [{"id", "group", "start", "end", "fs", "type", "arch"}, ...],
    "definition": str, "labels": dict, "arch": str}``; the labels are the inspect
    metadata's (empty where there is none). A KernError names what is wrong.
    """
    path = Path(path)
    siftool = _tool("siftool", "siftool")
    if not path.is_file():
        raise KernError(f"no SIF file at {path}")
    listing = subprocess.run([siftool, "list", str(path)], check=False,
                             capture_output=True, text=True)
    if listing.returncode != 0:
        raise KernError(f"{path} is not a readable SIF file: {_first_error(listing.stderr)}",
                        "it is damaged or incomplete: build it again")
    objects = [{"id": int(m[1]), "group": m[2], "link": m[3], "start": int(m[4]),
                "end": int(m[5]), "type": m[6]}
               for m in map(_ROW.match, listing.stdout.splitlines()) if m]
    size = path.stat().st_size
    partitions = []
    for obj in objects:
        if obj["end"] > size:
            raise KernError(f"{path} is truncated: object {obj['id']} ({obj['type']}) ends at "
                            f"byte {obj['end']}, the file at {size}", "build it again")
        match = _PARTITION.match(obj["type"])
        if match:
            fs, primary, kind, arch = match.groups()
            partitions.append({"id": obj["id"], "group": obj["group"], "start": obj["start"],
                               "end": obj["end"], "fs": fs,
                               "type": "PrimSys" if primary else kind, "arch": arch})
    primary = [p for p in partitions if p["type"] == "PrimSys"]
    if len(primary) != 1:
        raise KernError(f"{path} has {len(primary)} primary system partitions, not one",
                        "apptainer runs the one primary system partition of a SIF")
    partition = primary[0]
    if partition["fs"] != "Squashfs":
        raise KernError(f"{path}: the primary partition is {partition['fs']}, not squashfs")
    _check_squashfs(path, partition)
    definitions = [o for o in objects if o["type"] == "Def.FILE"]
    if not definitions:
        raise KernError(f"{path} has no definition file", "build it again")
    labels: dict = {}
    for obj in objects:
        named = obj["type"] == "JSON.Generic" and _object_name(siftool, path, obj["id"])
        if named == INSPECT_METADATA:
            metadata = _json_object(path, _dump(siftool, path, obj["id"]))
            labels = metadata.get("data", {}).get("attributes", {}).get("labels", {}) or {}
        elif obj["type"] == "JSON.Labels":  # where older Singularity kept them
            labels = _json_object(path, _dump(siftool, path, obj["id"]))
    return {"partitions": partitions,
            "definition": _dump(siftool, path, definitions[0]["id"]).decode(errors="replace"),
            "labels": labels, "arch": partition["arch"]}


def _check_squashfs(path: Path, partition: dict) -> None:
    """The partition starts with a squashfs 4 superblock whose filesystem fits in it."""
    with open(path, "rb") as image:
        image.seek(partition["start"])
        superblock = image.read(96)
    bytes_used = int.from_bytes(superblock[40:48], "little") if len(superblock) == 96 else -1
    if superblock[:4] != b"hsqs" or superblock[28:30] != b"\x04\x00" \
            or not 0 < bytes_used <= partition["end"] - partition["start"]:
        raise KernError(f"{path}: partition {partition['id']} holds no intact squashfs",
                        "the file is damaged: build it again")


def _json_object(path: Path, data: bytes) -> dict:
    try:
        value = json.loads(data or b"{}")
    except ValueError as exc:
        raise KernError(f"{path}: its metadata is not JSON ({exc})", "build it again") from exc
    if not isinstance(value, dict):
        raise KernError(f"{path}: its metadata is not a JSON object", "build it again")
    return value


def _object_name(siftool: str, path: Path, object_id: int) -> str:
    info = subprocess.run([siftool, "info", str(object_id), str(path)], check=False,
                          capture_output=True, text=True)
    match = re.search(r"^\s*Name:\s*(.+?)\s*$", info.stdout, re.MULTILINE)
    return match.group(1) if match else ""


def _dump(siftool: str, path: Path, object_id: int) -> bytes:
    result = subprocess.run([siftool, "dump", str(object_id), str(path)], check=False,
                            capture_output=True)
    if result.returncode != 0:
        raise KernError(f"{path}: cannot read object {object_id}: "
                        f"{_first_error(result.stderr.decode(errors='replace'))}",
                        "the file is damaged: build it again")
    return result.stdout


def unpack_sif(path: Path, dest: Path) -> Path:
    """The root filesystem of the SIF at ``path`` unpacked into ``dest`` (absent or empty);
    returns ``dest``.

    The file is checked with :func:`verify_sif`, then its primary partition is
    unsquashed in place (``unsquashfs -o <its offset>``: no copy of it is made, unlike
    ``siftool dump``), into a temporary directory beside ``dest`` renamed at the end.
    """
    path, dest = Path(path), Path(dest)
    unsquashfs = _tool("unsquashfs", "squashfs-tools")
    info = verify_sif(path)
    partition = next(p for p in info["partitions"] if p["type"] == "PrimSys")
    _check_empty_destination(dest)
    with _space(dest.parent), _partial_dir(dest) as work:
        root = work / "rootfs"
        _run([unsquashfs, "-no-progress", "-quiet", "-o", str(partition["start"]),
              "-d", str(root), str(path)], dest.parent)
        _replace_dir(root, dest)
    return dest


# --- running commands in a root filesystem --------------------------------------------

def run_in_rootfs(rootfs: Path, command: str, cwd: str = "/tmp",
                  timeout: float = 300, gpu_root: Path | None = None) -> tuple[int, str]:
    """Run ``sh -c command`` with ``rootfs`` as ``/``, as ``apptainer exec --cleanenv``
    would run it; returns (exit status, stdout and stderr together).

    It runs through bubblewrap (``bwrap``): it works here (as root, and as a user
    where user namespaces are allowed), needs no daemon and, like apptainer, leaves
    nothing mounted behind, where chroot would need every mount set up and torn
    down by hand. As apptainer does it:

    - the image is read-only, laid out on a tmpfs (apptainer's "underlay"), so a
      bind whose target the image lacks still finds a place;
    - a fresh /proc and /dev, the host's /sys, /etc/hosts and /etc/resolv.conf;
    - /tmp and /var/tmp: a fresh scratch directory, removed afterwards;
    - $HOME bound at the same path; ``cwd`` is where the command starts: a
      directory of the image, a directory of this machine (bound at the same
      path, as apptainer binds the current directory), or under /tmp (made in the
      scratch directory);
    - the command is run by ``/.singularity.d/actions/exec``, which sources
      ``/.singularity.d/env/*.sh``; the environment is apptainer's clean one, with
      PATH, HOME and the APPTAINER_* variables only.

    With ``gpu_root``, the host's NVIDIA driver comes in as ``apptainer --nv`` brings
    it: the driver's libraries (:func:`kernbuild.images.gpu.host_driver_libraries`)
    bound into /.singularity.d/libs, which the image's environment puts on
    LD_LIBRARY_PATH, and the /dev/nvidia* devices. A ``gpu_root`` other than ``/`` is a
    stand-in driver root (tests): its libraries come from there, and it is bound at its
    own path and named by KERN_GPU_ROOT, where kern-gpu-check reads /proc from.

    A command still running after ``timeout`` seconds is killed with everything it
    started (it has its own PID namespace) and reported as exit status 124, as
    timeout(1) does.
    """
    rootfs = Path(rootfs).resolve()
    bwrap = _tool("bwrap", "bubblewrap")
    if not (rootfs / ".singularity.d/actions/exec").is_file():
        raise KernError(f"{rootfs} has no /.singularity.d/actions/exec",
                        "write it first (write_singularity_dir)")
    home = os.environ.get("HOME") or str(Path.home())
    binds = [home] if home != "/" and Path(home).is_dir() else []
    driver: list[tuple[str, str]] = []  # (host path, path in the container)
    if gpu_root is not None:
        from kernbuild.images.gpu import host_driver_libraries

        driver = [(str(lib), f"/.singularity.d/libs/{lib.name}")
                  for lib in host_driver_libraries(gpu_root)]
    # Where the command starts: the scratch /tmp, a directory of the image, one of this
    # machine (bound), or a new one in the scratch /tmp.
    scratch_cwd = cwd in ("/tmp", "/var/tmp")
    if not scratch_cwd and not (not _under(cwd, "/tmp") and (rootfs / cwd.lstrip("/")).is_dir()):
        if Path(cwd).is_dir():
            if cwd not in binds:
                binds.append(cwd)
        elif _under(cwd, "/tmp"):
            scratch_cwd = True
        else:
            raise KernError(f"{cwd} is a directory neither of {rootfs} nor of this machine")
    with tempfile.TemporaryDirectory(prefix="kernbuild-scratch-") as scratch:
        for name in ("tmp", "var_tmp"):
            os.mkdir(os.path.join(scratch, name))
            os.chmod(os.path.join(scratch, name), 0o1777)
        if scratch_cwd and _under(cwd, "/tmp"):
            os.makedirs(os.path.join(scratch, cwd.lstrip("/")), exist_ok=True)
        args = [bwrap, "--die-with-parent", "--unshare-pid",
                *_underlay(rootfs, PurePosixPath("/"),
                           [PurePosixPath(b) for b in binds + [inner for _, inner in driver]]),
                "--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys",
                "--bind", f"{scratch}/tmp", "/tmp"]
        if (rootfs / "var/tmp").is_dir():
            args += ["--bind", f"{scratch}/var_tmp", "/var/tmp"]
        for host_file in ("/etc/hosts", "/etc/resolv.conf"):
            if (rootfs / host_file.lstrip("/")).is_file():
                args += ["--ro-bind-try", host_file, host_file]
        for path in binds:
            args += ["--bind", path, path]
        for host, inner in driver:
            args += ["--ro-bind", host, inner]
        env = {"PATH": DEFAULT_PATH, "HOME": home, "APPTAINER_CONTAINER": str(rootfs),
               "APPTAINER_NAME": rootfs.name, "APPTAINER_COMMAND": "exec"}
        if gpu_root is not None and Path(gpu_root).resolve() != Path("/"):
            args += ["--ro-bind", str(gpu_root), str(gpu_root)]
            env["KERN_GPU_ROOT"] = str(gpu_root)
        elif gpu_root is not None:
            for device in sorted(Path("/dev").glob("nvidia*")):
                args += ["--dev-bind", str(device), str(device)]
        args += ["--chdir", cwd, "/.singularity.d/actions/exec", "/bin/sh", "-c", command]
        try:
            result = subprocess.run(args, check=False, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            output = (exc.output or b"").decode(errors="replace")
            return 124, output + f"\n[kernbuild] killed after {timeout:g} s\n"
    return result.returncode, result.stdout.decode(errors="replace")


# Mounted fresh by run_in_rootfs, never taken from the image.
_RUNTIME_MOUNTS = ("/proc", "/dev", "/sys", "/tmp")


def _underlay(rootfs: Path, directory: PurePosixPath, binds: list[PurePosixPath]) -> list[str]:
    """bwrap arguments laying ``rootfs/directory`` read-only onto bwrap's tmpfs root.

    Each entry is bound (or, for a symlink, recreated) one by one, so the tmpfs
    holds every mount point; a directory of the image that lacks a bind's target
    is itself laid out entry by entry, so the target can be made in the tmpfs.
    """
    args: list[str] = []
    for entry in sorted((rootfs / str(directory).lstrip("/")).iterdir()):
        inner = directory / entry.name
        if str(inner) in _RUNTIME_MOUNTS:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(inner)]
        elif entry.is_dir() and any(inner in bind.parents
                                    and not (rootfs / str(bind).lstrip("/")).exists()
                                    for bind in binds):
            args += ["--dir", str(inner), *_underlay(rootfs, inner, binds)]
        else:
            args += ["--ro-bind", str(entry), str(inner)]
    return args


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# --- 5. unpacked trees for CVMFS ------------------------------------------------------

def export_sandbox(rootfs: Path, cvmfs: Path, name: str, digest: str) -> tuple[Path, bool]:
    """Publish ``rootfs`` in the CVMFS repository tree ``cvmfs`` as ``name``; returns
    (the tree, whether anything changed).

    As OSG's cvmfs-singularity-sync and unpacked.cern.ch lay it out: the tree is
    stored once per image digest, at ``cvmfs/.images/<digest hex>`` (copied, with
    ownership, links and modes, into a temporary directory beside it and renamed
    into place), with the mount points sites bind (/cvmfs, /srv) or apptainer
    mounts (/dev, /proc, /sys), and with every file readable and every directory
    searchable and writable by its owner, so the publisher can read and later
    remove it. ``cvmfs/<name>`` (``name`` may have ``/``: ``kern/losoto:1``) is a
    relative symlink to it, switched atomically. Publishing a digest already there
    copies nothing; publishing a name that already points at it changes nothing
    and returns False.
    """
    rootfs, cvmfs = Path(rootfs), Path(cvmfs)
    match = re.fullmatch(r"(?:sha256:)?([0-9a-f]{64})", digest)
    if not match:
        raise KernError(f"{digest!r} is not an image digest", "sha256:<64 hex digits>")
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(p in ("..", ".") for p in parts) \
            or parts[0] == ".images":
        raise KernError(f"{name!r} cannot name an image in {cvmfs}",
                        "a relative path without '.' or '..', e.g. kern/losoto:1")
    images = cvmfs / ".images"
    tree = images / match.group(1)
    changed = False
    with _space(cvmfs):
        if not tree.is_dir():
            if not (rootfs / ".singularity.d/actions/exec").is_file():
                raise KernError(f"{rootfs} has no /.singularity.d: apptainer could not run it",
                                "write it first (write_singularity_dir)")
            images.mkdir(parents=True, exist_ok=True)
            with _partial_dir(tree) as work:
                copy = work / "rootfs"
                copy.mkdir()
                _run(["cp", "-a", f"{rootfs}/.", str(copy)], cvmfs)
                for point in CVMFS_MOUNT_POINTS:
                    _inside(copy, point).mkdir(mode=0o755, exist_ok=True)
                _make_publishable(copy)
                try:
                    os.rename(copy, tree)
                    changed = True
                except OSError as exc:  # published meanwhile by another run: keep theirs
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
        link = cvmfs / name
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(tree, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            if link.exists() and not link.is_symlink():
                raise KernError(f"{link} exists and is not a symlink", "move it away first")
            temporary = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
            os.symlink(target, temporary)
            os.replace(temporary, link)
            changed = True
    return tree, changed


def _make_publishable(root: Path) -> None:
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) and (mode & 0o111 == 0 or mode & 0o222 == 0):
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IXUSR | stat.S_IWUSR)
        for name in filenames:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & 0o444 == 0:
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IRUSR)


# --- shared helpers -------------------------------------------------------------------

def _tool(program: str, package: str) -> str:
    found = shutil.which(program)
    if not found:
        raise KernError(f"{program} is not installed",
                        f"install {package} (apt-get install {package})")
    return found


def _run(args: list[str], where: Path) -> None:
    """Run a tool; its failure is a KernError with what it said (ENOSPC named as such)."""
    result = subprocess.run(args, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        if "no space left on device" in said.lower():
            raise _no_space(where)
        raise KernError(f"{Path(args[0]).name} failed (exit status {result.returncode}): "
                        f"{_first_error(said)}")


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "fatal"))]
    return (errors or lines or ["no message"])[0]


def _no_space(where: Path) -> KernError:
    return KernError(f"no space left on {where}",
                     "free some space there, or write the image to another directory")


@contextmanager
def _space(where: Path) -> Iterator[None]:
    """Turn ENOSPC into a KernError naming the directory."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _no_space(where) from exc
        raise


@contextmanager
def _partial_dir(final: Path) -> Iterator[Path]:
    """A temporary directory beside ``final`` (same filesystem: renames are atomic),
    removed at the end whatever happens."""
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_empty_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise KernError(f"{dest} already exists and is not an empty directory",
                        "remove it, or choose another destination")


def _replace_dir(source: Path, dest: Path) -> None:
    """Move a finished tree to ``dest`` (absent or an empty directory) in one rename."""
    os.replace(source, dest)
