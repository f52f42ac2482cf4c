"""Targets: where a matrix cell's workflow steps run.

Each target takes one image form (a Docker image or a SIF) and runs one step at
a time, with the cell's scratch directory as the working directory, killing a
step that outlives its timeout. A target that cannot run here says why, and its
cells are reported as skipped with that reason.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from kernbuild.matrix.state import StepRecord

SCRATCH = "/scratch"  # where a Docker target binds the cell's scratch directory


class Target:
    name: ClassVar[str]
    form: ClassVar[str]  # what it runs: docker (image id), sif (a SIF) or packages (pins)
    gpu: bool = False  # hand the steps the host's GPUs, as the runtime's GPU option does

    def with_gpu(self) -> "Target":
        """This target for GPU images' cells: the same one, giving steps the host's GPUs."""
        clone = copy.copy(self)
        clone.gpu = True
        return clone

    def unavailable(self) -> str:
        """Why this target cannot run here, or "" if it can."""
        return ""

    def run(self, image: str, command: str, scratch: Path, timeout: int) -> StepRecord:
        raise NotImplementedError


class DockerTarget(Target):
    """The Docker engine: a fresh container per step, the scratch directory bound in."""

    name, form = "docker", "docker"

    def __init__(self, connect) -> None:
        self.connect = connect
        self._gpu_options: dict | None = None

    def gpu_options(self, client) -> dict:
        """The engine's way of handing over GPUs, asked once, not before every step."""
        if self._gpu_options is None:
            from kernbuild.images.gpu import docker_gpu_options

            self._gpu_options = docker_gpu_options(client)
        return self._gpu_options

    def run(self, image: str, command: str, scratch: Path, timeout: int) -> StepRecord:
        from requests.exceptions import ConnectionError as Unanswered, ReadTimeout

        client = self.connect()
        started = time.monotonic()
        container = client.containers.run(
            image, ["sh", "-c", command], detach=True, working_dir=SCRATCH,
            volumes={str(scratch): {"bind": SCRATCH, "mode": "rw"}},
            labels={"kernbuild": "matrix"}, **(self.gpu_options(client) if self.gpu else {}))
        timed_out = False
        try:
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except (ReadTimeout, Unanswered):
                timed_out, code = True, 124
                container.kill()
            output = container.logs().decode("utf-8", "replace")
        finally:
            container.remove(force=True)
        return StepRecord("", "", code, time.monotonic() - started, output, timed_out)


def unpacked_sif(sif_path: str, digest: str, cache: Path) -> Path:
    """The SIF's root filesystem, unpacked once under ``cache/<digest>``.

    unpack_sif renames a finished tree into place, so a second process (another Slurm
    job) that loses the race fails its rename and finds the winner's tree: fine.
    """
    from kernbuild.errors import KernError
    from kernbuild.images.sif import unpack_sif

    where = cache / digest
    if not where.exists():
        try:
            unpack_sif(Path(sif_path), where)
        except (KernError, OSError):
            if not where.exists():
                raise
    return where


class SifBwrapTarget(Target):
    """A stand-in for apptainer where none is installed: the SIF's own root filesystem
    (unpacked from it) under bubblewrap, with the binds apptainer makes (home, the
    working directory, /tmp) and apptainer's own action scripts."""

    name, form = "sif-bwrap", "sif"

    def __init__(self, rootfs_of) -> None:
        self.rootfs_of = rootfs_of  # SIF path -> its unpacked root filesystem

    def unavailable(self) -> str:
        return "" if shutil.which("bwrap") else (
            "bubblewrap is not installed (apt-get install bubblewrap)")

    def run(self, image: str, command: str, scratch: Path, timeout: int) -> StepRecord:
        from kernbuild.images.sif import run_in_rootfs

        started = time.monotonic()
        from kernbuild.gpu import gpu_root  # $KERN_GPU_ROOT: a stand-in driver, for tests

        code, output = run_in_rootfs(self.rootfs_of(image), command, cwd=str(scratch),
                                     timeout=timeout, gpu_root=gpu_root() if self.gpu else None)
        return StepRecord("", "", code, time.monotonic() - started, output, code == 124)


class ApptainerTarget(Target):
    """apptainer (or singularity) exec of the SIF, where one is installed."""

    name, form = "apptainer", "sif"

    @staticmethod
    def program() -> str | None:
        return shutil.which("apptainer") or shutil.which("singularity")

    def unavailable(self) -> str:
        return "" if self.program() else (
            "neither apptainer nor singularity is installed; sif-bwrap runs the SIF's root "
            "filesystem instead")

    def run(self, image: str, command: str, scratch: Path, timeout: int) -> StepRecord:
        started = time.monotonic()
        try:
            done = subprocess.run([self.program(), "exec", *(["--nv"] if self.gpu else []),
                                   "--bind", str(scratch), "--pwd", str(scratch), image,
                                   "sh", "-c", command],
                                  capture_output=True, text=True, timeout=timeout)
            code, output, timed_out = done.returncode, done.stdout + done.stderr, False
        except subprocess.TimeoutExpired as exc:
            code, timed_out = 124, True
            output = (exc.stdout or b"").decode("utf-8", "replace") if isinstance(
                exc.stdout, bytes) else (exc.stdout or "")
        return StepRecord("", "", code, time.monotonic() - started, output, timed_out)


TARGET_NAMES = ("docker", "udocker", "apptainer", "sif-bwrap", "native")
