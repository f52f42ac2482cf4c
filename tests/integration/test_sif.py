"""A SIF of the real base image, made without apptainer, checked and run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import require_tools

from kernbuild.build.environment import ensure
from kernbuild.images import sif, singularity
from kernbuild.images import rootfs as rootfs_
from kernbuild.runtime import bwrap
from kernbuild.recipe.load import load_settings


def run_in_rootfs(*args, **kwargs) -> tuple[int, str]:
    """bwrap.run_in_rootfs's (exit status, output)."""
    result = bwrap.run_in_rootfs(*args, **kwargs)
    return result.exit_code, result.output


pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kern/base:trixie"
DEFINITION = f"""\
Bootstrap: docker
From: {IMAGE}

%environment
    export KERN_SIF=1

%runscript
    exec "$@"

%test
    sh -c 'test -s /etc/debian_version'
"""


@pytest.fixture(scope="module")
def tools():
    require_tools(("mksquashfs", "squashfs-tools"), ("siftool", "siftool"),
                  ("bwrap", "bubblewrap"))


def test_base_image_to_sif_and_back(docker_engine, tools, tmp_path: Path):
    settings = load_settings(ROOT / "recipes")
    assert settings.base_tag == IMAGE
    if not docker_engine.images.list(name=IMAGE):  # made once, as `kernbuild package` would
        ensure(docker_engine, settings, tmp_path / "work")

    def exporters() -> set[str]:
        return {c.id for c in docker_engine.containers.list(
            all=True, filters={"label": "kernbuild=export"})}

    before = exporters()
    rootfs = rootfs_.export_rootfs(docker_engine, IMAGE, tmp_path / "rootfs")
    assert exporters() <= before  # its container is gone
    assert (rootfs / "etc/debian_version").is_file()

    config = docker_engine.images.get(IMAGE).attrs["Config"]
    environment = dict(item.split("=", 1) for item in config.get("Env") or [])
    labels = {"org.kernsuite.release": "kern-test", **(config.get("Labels") or {})}
    singularity.write_singularity_dir(rootfs, DEFINITION, labels, environment)
    output = sif.assemble_sif(rootfs, DEFINITION, labels, tmp_path / "base.sif")

    listing = subprocess.run(["siftool", "list", str(output)], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r"\|Def\.FILE\s*$", listing, re.MULTILINE)
    assert re.search(r"\|FS \(Squashfs/\*System/amd64\)\s*$", listing, re.MULTILINE)
    info = sif.verify_sif(output)
    assert info["definition"] == DEFINITION and info["labels"] == labels
    assert info["arch"] == "amd64"

    unpacked = sif.unpack_sif(output, tmp_path / "unpacked")
    code, text = run_in_rootfs(unpacked, "cat /etc/debian_version && echo $LANG")
    assert code == 0, text
    version, lang = text.splitlines()
    assert version == (rootfs / "etc/debian_version").read_text().strip()
    assert re.fullmatch(r"\d+(\.\d+)*|trixie/sid", version)
    assert lang == environment.get("LANG", "") == "C.UTF-8"

    assert run_in_rootfs(unpacked, "echo $KERN_SIF; /.singularity.d/actions/test") == (0, "1\n")
    code, text = run_in_rootfs(unpacked, "ls /no/such/file")
    assert code != 0 and "No such file" in text
    assert run_in_rootfs(unpacked, "exit 7")[0] == 7
