"""Docker engine runners: a fresh container per step, or one container for several.

:class:`DockerRunner` is the ``docker`` target and runs an image's smoke steps
and checks: each command in a new container that is removed afterwards, as
``docker run --rm`` would. :class:`DockerSession` keeps one container for a
sequence of commands (install the packages, then run the steps; or a package
build's apt-get, dpkg-buildpackage and lintian), each a ``docker exec``.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext

if TYPE_CHECKING:
    import docker

SCRATCH = "/scratch"  # where a step's working directory is bound in the container


class DockerRunner(Runner):
    """The Docker engine: a fresh container per step, its working directory bound at
    /scratch (or /tmp of the image when none is given), removed whatever happens."""

    name, form = "docker", "docker"

    def __init__(self, connect, labels: dict[str, str] | None = None) -> None:
        self.connect = connect
        self.labels = labels or {"kernbuild": "matrix"}
        self._gpu_options: dict | None = None

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "DockerRunner":
        return cls(context.connect)

    def gpu_options(self, client) -> dict:
        """The engine's way of handing over GPUs, asked once, not before every step."""
        if self._gpu_options is None:
            self._gpu_options = docker_gpu_options(client)
        return self._gpu_options

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        from requests.exceptions import ConnectionError as Unanswered, ReadTimeout

        client = self.connect()
        started = time.monotonic()
        where = {"working_dir": SCRATCH,
                 "volumes": {str(cwd): {"bind": SCRATCH, "mode": "rw"}}} if cwd else {
            "working_dir": "/tmp"}
        container = client.containers.run(
            image.ref, ["sh", "-c", command], detach=True, labels=self.labels, **where,
            **(self.gpu_options(client) if self.gpu else {}))
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
        return StepResult(command, code, output, time.monotonic() - started, timed_out)


class DockerSession:
    """One running container of ``image`` for a sequence of :meth:`exec` calls; removed
    on leaving the ``with`` block. ``options`` go to ``containers.run`` (volumes,
    environment, labels)."""

    def __init__(self, client: "docker.DockerClient", image: str, **options) -> None:
        self.client, self.image, self.options = client, image, options
        self.container = None

    def __enter__(self) -> "DockerSession":
        self.container = self.client.containers.run(self.image, ["sleep", "infinity"],
                                                    detach=True, **self.options)
        return self

    def __exit__(self, *_) -> None:
        self.container.remove(force=True)

    def put_files(self, files: dict[str, bytes]) -> None:
        """Write ``files`` (absolute path -> content, mode 0644) into the container."""
        self.container.put_archive("/", _tar(files))

    def exec(self, command: list[str], label: str = "", *, workdir: str | None = None,
             environment: dict[str, str] | None = None,
             log: IO[str] | None = None) -> StepResult:
        """Run ``command`` in the container; its output is streamed to ``log`` as it
        comes (a package build's log is readable while it runs)."""
        api = self.client.api
        started = time.monotonic()
        exec_id = api.exec_create(self.container.id, command, workdir=workdir,
                                  environment=environment or {})["Id"]
        chunks: list[str] = []
        for chunk in api.exec_start(exec_id, stream=True):
            text = chunk.decode("utf-8", "replace")
            chunks.append(text)
            if log is not None:
                log.write(text)
        if log is not None:
            log.flush()
        code = api.exec_inspect(exec_id)["ExitCode"]
        return StepResult(label or " ".join(command), code, "".join(chunks),
                          time.monotonic() - started)


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the engine's export and save
    streams), for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count], self._pending = self._pending[:count], self._pending[count:]
        return count


def stream(chunks: Iterator[bytes]) -> io.BufferedReader:
    """A buffered file over the engine's chunks, read 1 MiB at a time."""
    return io.BufferedReader(ChunkReader(chunks), buffer_size=1 << 20)


def docker_gpu_options(client) -> dict:
    """How this engine hands a container the host's GPUs, as ``containers.run`` keyword
    arguments, in the order ``kernbuild doctor --gpu`` lists the ways
    (:func:`kernbuild.gpu.docker_runtime`): the nvidia runtime, ``--gpus all`` through
    the NVIDIA container toolkit, or a CDI device; ``{}`` where it has none (the
    container then sees no GPU, and kern-gpu-check says so)."""
    import shutil

    from docker.types import DeviceRequest

    from kernbuild.gpu import cdi_specs, gpu_root

    if "nvidia" in (client.info().get("Runtimes") or {}):
        return {"runtime": "nvidia"}
    if shutil.which("nvidia-container-cli") or shutil.which("nvidia-ctk"):
        return {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]}
    if cdi_specs(gpu_root()):
        return {"device_requests": [DeviceRequest(driver="cdi",
                                                  device_ids=["nvidia.com/gpu=all"])]}
    return {}


def describe_gpu_options(options: dict) -> str:
    """How :func:`docker_gpu_options`' answer hands over the GPUs, in words."""
    if "runtime" in options:
        return "the nvidia runtime"
    if not options:
        return "none: the engine has no NVIDIA runtime, toolkit or CDI spec"
    return ("CDI nvidia.com/gpu=all" if options["device_requests"][0].driver == "cdi"
            else "--gpus all")


def _tar(files: dict[str, bytes]) -> bytes:
    """An in-memory tar of absolute paths for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
