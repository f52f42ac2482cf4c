"""The udocker runner: a Docker image run without a daemon, by udocker in mode R1 (runc).

The Docker engine is used only to export an image once (``docker save``); every
step then runs through ``udocker run``, the way a user without a daemon (an HPC
login node) would run the image. udocker's own tools tarball cannot be downloaded
here, and mode R1 does not need it: it drives the host's runc
(``UDOCKER_USE_RUNC_EXECUTABLE``), with the download switched off by an empty
``UDOCKER_TARBALL``.

Each image is loaded into udocker once, as ``kernbuild/<short id>:latest``, and
run in a small pool of udocker containers made from it (``kb-<short id>-<n>``):
a container serves one step at a time, because udocker rewrites the container's
runc spec (binds, working directory) on every run. Unlike the docker target, a
container is reused by later steps and cells, so what a step writes outside
/scratch is still there for the next one.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pty
import signal
import subprocess
import sys
import tarfile
import termios
import threading
import time
from pathlib import Path

from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext
from kernbuild.runtime.docker import SCRATCH, stream
from kernbuild.runtime.tools import locate

REPO = "kernbuild"  # udocker repository the images are loaded under


def runc_program() -> str | None:
    """The runc udocker drives: on PATH, or root's /usr/sbin/runc (not on a user's PATH)."""
    return locate("runc")


def _retag(source: io.BufferedIOBase, dest: Path, ref: str) -> None:
    """Copy a ``docker save`` stream to ``dest``, naming its image ``ref``.

    ``docker save`` of an image id (no tag) writes ``"RepoTags": null``, which
    udocker's load cannot handle (it crashes), and without a ``repositories`` file
    udocker files the image under a random name and drops its config (ENV,
    WORKDIR). For the OCI layout newer engines write, the name goes in the
    index's ``org.opencontainers.image.ref.name`` annotation instead.
    """
    repo, tag = ref.rsplit(":", 1)
    top = ""
    with tarfile.open(fileobj=source, mode="r|") as src, tarfile.open(dest, "w") as out:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name in ("manifest.json", "index.json") and data is not None:
                doc = json.load(data)
                if member.name == "manifest.json":
                    doc[0]["RepoTags"] = [ref]
                    top = doc[0]["Layers"][-1].split("/")[0]
                else:
                    for entry in doc.get("manifests", []):
                        entry.setdefault("annotations", {})[
                            "org.opencontainers.image.ref.name"] = ref
                raw = json.dumps(doc).encode()
                member.size, data = len(raw), io.BytesIO(raw)
            if member.name == "repositories":
                continue  # replaced below: it names the image
            out.addfile(member, data)
        raw = json.dumps({repo: {tag: top}}).encode()
        info = tarfile.TarInfo("repositories")
        info.size, info.mtime, info.mode = len(raw), int(time.time()), 0o644
        out.addfile(info, io.BytesIO(raw))


class UdockerRunner(Runner):
    """udocker in mode R1 (runc): the Docker image, without a daemon at run time."""

    name, form = "udocker", "docker"

    def __init__(self, connect, home: Path) -> None:
        """``connect()`` gives a docker client (used only to export images); ``home``
        is udocker's directory (UDOCKER_DIR): its images, containers and temporary
        files, so nothing goes to ~/.udocker."""
        self.connect = connect
        self.home = Path(home)
        self._lock = threading.Lock()
        # one load at a time: images share layers, and concurrent loads would write
        # the same files of udocker's layer store
        self._load_lock = threading.Lock()
        self._free: dict[str, list[tuple[str, Path]]] = {}  # image id -> idle containers
        self._made: dict[str, int] = {}  # image id -> containers made from it

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "UdockerRunner":
        return cls(context.connect, context.cache("udocker"))

    def unavailable(self) -> str:
        if importlib.util.find_spec("udocker") is None:
            return "udocker is not installed (pip install udocker)"
        if runc_program() is None:
            return "runc is not installed (apt-get install runc; docker.io brings it)"
        return ""

    def env(self) -> dict[str, str]:
        """The environment udocker runs in."""
        return {**os.environ,
                "UDOCKER_DIR": str(self.home),
                "UDOCKER_TMP": str(self.home / "tmp"),
                # absolute: with its default (relative) keystore udocker makes ~/.udocker
                "UDOCKER_KEYSTORE": str(self.home / "keystore"),
                # empty: skip the tools tarball download (unreachable here, unneeded by R1)
                "UDOCKER_TARBALL": "",
                "UDOCKER_USE_RUNC_EXECUTABLE": runc_program() or "runc",
                "UDOCKER_DEFAULT_EXECUTION_MODE": "R1"}

    def command(self, *args: str) -> list[str]:
        """A udocker command line (``--allow-root`` where we are root: udocker refuses
        root otherwise)."""
        root = ["--allow-root"] if os.geteuid() == 0 else []
        return [sys.executable, "-m", "udocker.maincmd", *root, "--quiet", *args]

    def udocker(self, *args: str, timeout: int = 600) -> str:
        """Run a udocker command to completion; its output, or a RuntimeError."""
        done = subprocess.run(self.command(*args), capture_output=True, text=True,
                              env=self.env(), timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"udocker {' '.join(args)} exited {done.returncode}: "
                               f"{done.stdout}{done.stderr}".strip())
        return done.stdout

    @staticmethod
    def short(image: str) -> str:
        return image.removeprefix("sha256:")[:12]

    def ensure_image(self, image: str) -> str:
        """Load the Docker image ``image`` (an id) into udocker unless it is there;
        its udocker reference."""
        ref = f"{REPO}/{self.short(image)}:latest"
        with self._load_lock:
            if (self.home / "repos" / REPO / self.short(image) / "latest").is_dir():
                return ref
            (self.home / "tmp").mkdir(parents=True, exist_ok=True)
            saved = self.home / "tmp" / f"{self.short(image)}.tar"
            try:
                chunks = self.connect().images.get(image).save(named=False)
                _retag(stream(chunks), saved, ref)
                self.udocker("load", "-i", str(saved))
            except BaseException:
                # a half-done load would pass for a loaded image next time
                subprocess.run(self.command("rmi", ref), capture_output=True, env=self.env(),
                               check=False)
                raise
            finally:
                saved.unlink(missing_ok=True)
        return ref

    def acquire(self, image: str) -> tuple[str, Path]:
        """An idle udocker container of ``image``, made and set to R1 if none is:
        its name and runc state directory."""
        ref = self.ensure_image(image)
        with self._lock:
            if self._free.get(image):
                return self._free[image].pop()
            self._made[image] = self._made.get(image, 0) + 1
            name = f"kb-{self.short(image)}-{self._made[image]}"
        try:  # made by an earlier run of kernbuild: reuse it
            root = self.udocker("inspect", "-p", name).strip()
        except RuntimeError:
            self.udocker("create", f"--name={name}", ref)
            root = self.udocker("inspect", "-p", name).strip()
        # --nvidia copies the host's driver libraries into the container, as the
        # NVIDIA runtime would bind them (it fails, and the cell says why, without any).
        self.udocker("setup", "--execmode=R1", *(["--nvidia"] if self.gpu else []), name)
        return name, Path(root).parent

    def release(self, image: str, container: tuple[str, Path]) -> None:
        """Give a container from ``acquire`` back to the pool."""
        with self._lock:
            self._free.setdefault(image, []).append(container)

    def prepare(self, image: ImageRef) -> None:
        """Load the image into udocker before any step needs it."""
        from kernbuild.errors import KernError

        try:
            self.ensure_image(image.ref)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise KernError(f"udocker could not load {image.ref}: {exc}") from None

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        """Run ``sh -c command`` in the Docker image ``image`` (an id), ``cwd`` bound
        at /scratch and the working directory; killed after ``timeout`` seconds (exit
        124, ``timed_out``). Output is stdout and stderr together."""
        from docker.errors import DockerException

        started = time.monotonic()
        try:
            container = self.acquire(image.ref)
        except (RuntimeError, OSError, subprocess.SubprocessError, DockerException) as exc:
            # the image could not be made ready: the step fails with why, as a
            # container that cannot start does under docker run (exit 125)
            return StepResult(command, 125, f"udocker could not prepare {image.ref}: {exc}\n",
                              time.monotonic() - started)
        try:
            code, output, timed_out = self._run_in(container, command, cwd, timeout)
        finally:
            self.release(image.ref, container)
        return StepResult(command, code, output, time.monotonic() - started, timed_out)

    def _run_in(self, container: tuple[str, Path], command: str, cwd: Path | None,
                timeout: float) -> tuple[int, str, bool]:
        name, specdir = container
        where = ["-v", f"{cwd}:{SCRATCH}", "-w", SCRATCH] if cwd else ["-w", "/tmp"]
        argv = self.command("run", "--nobanner", *where, name,
                            # stdin from /dev/null, as under the docker target: a
                            # step reading the terminal below would wait forever
                            "sh", "-c", 'exec sh -c "$1" </dev/null', "sh", command)
        # udocker only returns runc's exit status when its stdout is a terminal
        # (without one it exits 1 whatever the step did, and may drop the end of
        # the output), so the step gets a pseudo-terminal, without CR/LF
        # translation or echo so the output reads as a pipe's would.
        master, slave = pty.openpty()
        modes = termios.tcgetattr(slave)
        modes[1] &= ~termios.ONLCR
        modes[3] &= ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(slave, termios.TCSANOW, modes)
        try:
            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                    env=self.env(), start_new_session=True)
        finally:
            os.close(slave)
        chunks: list[bytes] = []
        reader = threading.Thread(target=self._drain, args=(master, chunks), daemon=True)
        reader.start()
        timed_out = False
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out, code = True, 124
            self._kill(proc, specdir)
        reader.join(timeout=10)
        os.close(master)
        return code, b"".join(chunks).decode("utf-8", "replace"), timed_out

    @staticmethod
    def _drain(master: int, chunks: list[bytes]) -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    def _kill(self, proc: subprocess.Popen, specdir: Path) -> None:
        """End a step past its timeout: its runc container first (killing udocker
        and runc alone leaves the container's processes running and its runc state
        behind), then udocker."""
        runc = runc_program() or "runc"
        listed = subprocess.run([runc, "--root", str(specdir), "list", "-q"],
                                capture_output=True, text=True, timeout=30, check=False)
        for container_id in listed.stdout.split():
            # only a directory runc keeps state in: `delete --force` of an id it
            # cannot load removes <root>/<id>, and the udocker container's ROOT
            # sits beside runc's state in this directory
            if not (specdir / container_id / "state.json").is_file():
                continue
            subprocess.run([runc, "--root", str(specdir), "delete", "--force", container_id],
                           capture_output=True, timeout=30, check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
