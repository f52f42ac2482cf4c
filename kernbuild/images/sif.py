"""SIF files without apptainer: assembled from a root filesystem, verified, opened.

Where no ``apptainer build`` can run, the SIF is made as apptainer's assembler
makes it: :func:`assemble_sif` packs a root filesystem that holds
``/.singularity.d`` (:mod:`kernbuild.images.singularity`) with ``mksquashfs``
and ``siftool`` into a primary system partition, the definition file and the
inspect metadata with the labels. :func:`verify_sif` checks a SIF from its
object table and its squashfs superblock, and :func:`unpack_sif` opens one again,
so every SIF is tried before it is handed out. Each writes into a temporary
name beside its destination and renames it into place.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.fsutil import check_empty_destination, disk_space, partial_dir, replace_dir
from kernbuild.runtime.tools import first_error, require, run_tool

__all__ = ["assemble_sif", "squashfs_payload", "unpack_sif", "verify_sif"]

# siftool's --partarch numbers (sif's arch table), keyed by Go's GOARCH names as apptainer uses.
SIF_ARCHES = {"386": 1, "amd64": 2, "arm": 3, "arm64": 4, "ppc64": 5, "ppc64le": 6, "mips": 7,
              "mipsle": 8, "mips64": 9, "mips64le": 10, "s390x": 11, "riscv64": 12}
# Where apptainer stores the labels in a SIF (pkg/image: SIFDescInspectMetadataJSON).
INSPECT_METADATA = "inspect-metadata.json"
# sif.CreateContainerAtPath(OptCreateWithLaunchScript(...)) in apptainer's SIF assembler:
# the first 32 bytes of the header, so `./image.sif` runs the image.
LAUNCH_SCRIPT = b"#!/usr/bin/env run-singularity\n"


def assemble_sif(rootfs: Path, definition: str, labels: dict[str, str], output: Path,
                 arch: str = "amd64", epoch: int | None = None) -> Path:
    """A SIF file at ``output`` holding ``rootfs``; returns ``output``.

    As apptainer's SIF assembler makes it: ``rootfs`` as a gzip squashfs (ownership
    kept when run as root; ``-all-root`` otherwise, as apptainer does for users;
    reproducible: ``epoch``, or else ``SOURCE_DATE_EPOCH`` where set, is its creation
    time, and every file time after it is clamped to it) in a primary
    system partition for ``arch``, the definition file, and the inspect metadata
    (``inspect-metadata.json``, generic JSON, holding the labels and the scripts),
    all in object group 1, with apptainer's launch script so the file can be run.
    ``rootfs`` must hold ``/.singularity.d`` (:func:`write_singularity_dir`).

    Everything is written under a temporary name beside ``output``, checked with
    :func:`verify_sif`, then renamed: a failure leaves ``output`` as it was.
    """
    rootfs, output = Path(rootfs), Path(output)
    mksquashfs = require("mksquashfs")
    siftool = require("siftool")
    if arch not in SIF_ARCHES:
        raise KernError(f"unknown architecture {arch!r}",
                        f"one of: {', '.join(sorted(SIF_ARCHES))} (Go's names, as apptainer's)")
    if not (rootfs / ".singularity.d/actions/exec").is_file():
        raise KernError(f"{rootfs} has no /.singularity.d: apptainer could not run it",
                        "write it first (write_singularity_dir)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with disk_space(output.parent), partial_dir(output) as work:
        squashfs, sif = work / "rootfs.squashfs", work / "image.sif"
        flags = ["-noappend", "-comp", "gzip", "-no-progress", "-quiet"]
        if os.geteuid() != 0:
            flags.append("-all-root")
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else None
        run_tool([mksquashfs, str(rootfs), str(squashfs), *flags], where=output.parent, env=env)
        (work / "definition").write_text(definition)
        (work / INSPECT_METADATA).write_text(json.dumps(_inspect_metadata(rootfs, definition,
                                                                          labels)))
        run_tool([siftool, "new", str(sif)], where=output.parent)
        with open(sif, "r+b") as header:
            header.write(LAUNCH_SCRIPT)
        group = ["--groupid", "1"]
        run_tool([siftool, "add", str(sif), str(work / "definition"), "--datatype", "1", *group],
                 where=output.parent)
        run_tool([siftool, "add", str(sif), str(work / INSPECT_METADATA), "--datatype", "6",
              "--filename", INSPECT_METADATA, *group], where=output.parent)
        run_tool([siftool, "add", str(sif), str(squashfs), "--datatype", "4", "--parttype", "2",
              "--partfs", "1", "--partarch", str(SIF_ARCHES[arch]), *group], where=output.parent)
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


# --- checking and opening a SIF -----------------------------------------------------

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
    siftool = require("siftool")
    if not path.is_file():
        raise KernError(f"no SIF file at {path}")
    listing = subprocess.run([siftool, "list", str(path)], check=False,
                             capture_output=True, text=True)
    if listing.returncode != 0:
        raise KernError(f"{path} is not a readable SIF file: {first_error(listing.stderr)}",
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
                        f"{first_error(result.stderr.decode(errors='replace'))}",
                        "the file is damaged: build it again")
    return result.stdout


def squashfs_payload(path: Path) -> bytes:
    """The bytes of the SIF's primary system partition, its squashfs root filesystem:
    what must be the same for two SIFs of one image (the header's UUID and times, the
    signature and the definition object are not)."""
    partition = next(p for p in verify_sif(path)["partitions"] if p["type"] == "PrimSys")
    with open(path, "rb") as image:
        image.seek(partition["start"])
        return image.read(partition["end"] - partition["start"])


def unpack_sif(path: Path, dest: Path) -> Path:
    """The root filesystem of the SIF at ``path`` unpacked into ``dest`` (absent or empty);
    returns ``dest``.

    The file is checked with :func:`verify_sif`, then its primary partition is
    unsquashed in place (``unsquashfs -o <its offset>``: no copy of it is made, unlike
    ``siftool dump``), into a temporary directory beside ``dest`` renamed at the end.
    """
    path, dest = Path(path), Path(dest)
    unsquashfs = require("unsquashfs")
    info = verify_sif(path)
    partition = next(p for p in info["partitions"] if p["type"] == "PrimSys")
    check_empty_destination(dest)
    with disk_space(dest.parent), partial_dir(dest) as work:
        root = work / "rootfs"
        run_tool([unsquashfs, "-no-progress", "-quiet", "-o", str(partition["start"]),
              "-d", str(root), str(path)], where=dest.parent)
        replace_dir(root, dest)
    return dest
