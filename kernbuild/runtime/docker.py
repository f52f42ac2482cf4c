"""Docker engine runners: a fresh container per step, or one container for several.

:class:`DockerRunner` is the ``docker`` target and runs an image's smoke steps
and checks: each command in a new container that is removed afterwards, as
``docker run --rm`` would. :class:`DockerSession` keeps one container for a
sequence of commands (install the packages, then run the steps; or a package
build's apt-get, dpkg-buildpackage and lintian), each a ``docker exec``.

Every container either starts is labelled as this process's own
(:func:`container_labels`: the state directory it works for, the pid, the host,
the start time) and tracked by :data:`GUARD`, which removes it when the process
ends: on leaving the ``with`` block, at exit, on SIGTERM, SIGINT or SIGHUP. A
SIGKILL leaves no time for that, so the next command on the same state reaps
what a dead process left (:func:`reap`), never what a live one still uses.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import signal
import socket
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable

from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.locks import process_alive
from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext

if TYPE_CHECKING:
    import docker

SCRATCH = "/scratch"  # where a step's working directory is bound in the container

OWNER = "org.kernbuild.owner"  # a hash of the state directory's real path
PID = "org.kernbuild.pid"  # the kernbuild process that started the container
HOST = "org.kernbuild.host"  # where that process runs: a pid means nothing elsewhere
STARTED = "org.kernbuild.started"  # when it started the container (Unix time)
#: The labels above, as JSON, for the programs kernbuild runs that start containers of
#: their own (the apptainer wrapper, under cwltool and Toil too): theirs are then reaped
#: with kernbuild's when it was killed.
INHERITED_LABELS = "KERNBUILD_CONTAINER_LABELS"


def owner_id(state: Path) -> str:
    """The owner label of the containers started for the state directory ``state``."""
    return hashlib.sha256(os.path.realpath(state).encode()).hexdigest()[:16]


def container_labels(labels: dict[str, str] | None = None,
                     state: Path | None = None) -> dict[str, str]:
    """``labels`` plus the ones that make a container this process's own, for ``state``
    (default: the state :data:`GUARD` was given by the command)."""
    owner = owner_id(state) if state is not None else GUARD.owner
    GUARD.used = True  # a container is about to start: look for it when stopping
    return {**(labels or {}), PID: str(os.getpid()), HOST: socket.gethostname(),
            STARTED: f"{time.time():.3f}", **({OWNER: owner} if owner else {})}


class ContainerGuard:
    """The containers this process has running, removed when it ends however it ends
    (short of SIGKILL). One per process, :data:`GUARD`: signals and exit are a
    process's, and so is the list of what it started."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, "docker.models.containers.Container"] = {}
        self.owner: str | None = None
        self.stopping = False  # after a signal: no new container may start
        self.used = False  # whether this process ever labelled a container
        self._installed = False
        # Other things this process started (a Slurm job, a server): how to stop each.
        self._cleanups: dict[object, Callable[[], None]] = {}

    def install(self, state: Path) -> None:
        """Label this command's containers as ``state``'s, and remove them at exit and on
        SIGTERM, SIGINT or SIGHUP. Call it from the main thread (signals go there)."""
        self.owner = owner_id(state)
        os.environ[INHERITED_LABELS] = json.dumps(container_labels(state=state))
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = True
        atexit.register(self.stop_all)
        for number in self.SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                signal.signal(number, self._on_signal)

    def started(self, container) -> None:
        """Track ``container``; if this process is already stopping, remove it at once."""
        with self._lock:
            stopping = self.stopping
            if not stopping:
                self._live[container.id] = container
        if stopping:
            _remove(container)
            raise KernError("kernbuild is stopping: no new container is started")

    def finished(self, container) -> None:
        with self._lock:
            self._live.pop(container.id, None)

    def on_stop(self, stop: Callable[[], None]) -> object:
        """Run ``stop`` when this process ends (as its containers are removed), unless
        :meth:`forget` is given the handle this returns first: for what is not a
        container, such as a Slurm job (``scancel``) or a server process."""
        handle = object()
        with self._lock:
            self._cleanups[handle] = stop
        return handle

    def forget(self, handle: object) -> None:
        with self._lock:
            self._cleanups.pop(handle, None)

    def check(self) -> None:
        """A KernError once a signal has asked this process to stop."""
        if self.stopping:
            raise KernError("kernbuild is stopping")

    def stop_all(self) -> list[str]:
        """Remove every container this process started and has not removed; their ids.

        Besides the tracked ones, any that carries this process's pid and host labels: one
        whose start was answered just as the signal came was never tracked."""
        with self._lock:
            tracked, self._live = dict(self._live), {}
            cleanups, self._cleanups = list(self._cleanups.values()), {}
        for stop in cleanups:
            try:
                stop()
            except Exception:  # noqa: BLE001 - one failed cleanup must not stop the others
                pass
        removed = [cid for cid, container in tracked.items() if _remove(container)]
        if not self.used:
            return removed
        try:
            import docker

            client = docker.from_env(timeout=30)  # its own: the main one may be mid-request
            mine = client.containers.list(all=True, filters={"label": [
                f"{PID}={os.getpid()}", f"{HOST}={socket.gethostname()}"]})
        except Exception:  # noqa: BLE001 - no engine left to ask: nothing more to do
            return removed
        removed += [c.id for c in mine if c.id not in tracked and _remove(c)]
        return removed

    def _on_signal(self, number: int, _frame) -> None:
        if self.stopping:
            return  # cleaning up already; a second Ctrl-C must not cut that short
        self.stopping = True
        removed = self.stop_all()
        if removed:
            print(f"kernbuild: {signal.Signals(number).name}: removed {len(removed)} "
                  f"container{'s' if len(removed) > 1 else ''} it had started", file=sys.stderr,
                  flush=True)
        if number == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + number)


GUARD = ContainerGuard()


def _remove(container) -> bool:
    """Kill and remove ``container``; False if it was gone already or cannot be removed
    (removal in progress elsewhere, the engine gone): never an exception, since this runs
    in cleanups that must go on, and whatever stays is the next run's to reap."""
    try:
        container.remove(force=True)
    except Exception:  # noqa: BLE001 - see above
        return False
    return True


def reap(client: "docker.DockerClient", state: Path,
         say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Remove the containers that kernbuild runs on ``state`` started and did not outlive
    (they were SIGKILLed); a live run's containers are left alone. Returns their ids."""
    mine = {"label": [f"{OWNER}={owner_id(state)}"]}
    dead = _left_by_dead(client.containers.list(all=True, filters=mine))
    reaped = [(container, pid, kind) for container, pid, kind in dead if _remove(container)]
    # Then the private networks of killed image builds, empty once their server is gone.
    for network, _, _ in _left_by_dead(client.networks.list(filters=mine)):
        try:
            network.remove()
        except Exception:  # noqa: BLE001 - still in use, or gone: the next run tries again
            pass
    if reaped:
        kinds = sorted({kind for _, _, kind in reaped})
        what = (f"{kinds[0]} container" if len(kinds) == 1 and kinds[0] else "container")
        pids = ", ".join(str(p) for p in sorted({pid for _, pid, _ in reaped}))
        say(f"reaped {len(reaped)} {what}{'s' if len(reaped) > 1 else ''} left by killed "
            f"kernbuild runs (pids {pids})")
    return [container.id for container, _, _ in reaped]


def _left_by_dead(found: list) -> list[tuple[object, int, str]]:
    """Those of ``found`` (containers or networks labelled by :func:`container_labels`)
    whose kernbuild process on this host has ended: (object, its pid, its kind)."""
    host, dead = socket.gethostname(), []
    for thing in found:
        labels = thing.attrs.get("Labels") or thing.attrs.get("Config", {}).get("Labels") or {}
        try:
            pid, started = int(labels[PID]), float(labels[STARTED])
        except (KeyError, ValueError):
            continue  # not one of ours after all
        if labels.get(HOST) == host and not process_alive(pid, started_before=started):
            dead.append((thing, pid, labels.get("kernbuild", "")))
    return dead


class DockerRunner(Runner):
    """The Docker engine: a fresh container per step, its working directory bound at
    /scratch (or /tmp of the image when none is given), removed whatever happens."""

    name, form = "docker", "docker"

    def __init__(self, connect, labels: dict[str, str] | None = None,
                 state: Path | None = None) -> None:
        self.connect = connect
        self.labels = labels or {"kernbuild": "matrix"}
        self.state = state  # whose containers these are (default: the command's state)
        self._gpu_options: dict | None = None

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "DockerRunner":
        return cls(context.connect, state=context.state)

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
        GUARD.check()
        container = client.containers.run(
            image.ref, ["sh", "-c", command], detach=True,
            labels=container_labels(self.labels, self.state), **where,
            **(self.gpu_options(client) if self.gpu else {}))
        GUARD.started(container)
        boundary("container:step")
        timed_out = False
        try:
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except (ReadTimeout, Unanswered):
                timed_out, code = True, 124
                container.kill()
            output = container.logs().decode("utf-8", "replace")
        finally:
            _remove(container)
            GUARD.finished(container)
        GUARD.check()  # a step cut short by a signal is no result
        return StepResult(command, code, output, time.monotonic() - started, timed_out)


class DockerSession:
    """One running container of ``image`` for a sequence of :meth:`exec` calls; removed
    on leaving the ``with`` block. ``options`` go to ``containers.run`` (volumes,
    environment); ``labels`` join this process's own (:func:`container_labels`) for
    ``state`` (default: the command's)."""

    def __init__(self, client: "docker.DockerClient", image: str, *,
                 labels: dict[str, str] | None = None, state: Path | None = None,
                 **options) -> None:
        self.client, self.image, self.options = client, image, options
        self.labels, self.state = labels, state
        self.container = None

    def __enter__(self) -> "DockerSession":
        from docker.errors import APIError

        GUARD.check()
        try:
            self.container = self.client.containers.run(
                self.image, ["sleep", "infinity"], detach=True,
                labels=container_labels(self.labels, self.state), **self.options)
        except APIError as exc:
            raise KernError(f"the Docker engine could not start a container of "
                            f"{self.image}: {exc.explanation or exc}",
                            "see 'docker info' and the engine's log "
                            "(journalctl -u docker)") from None
        GUARD.started(self.container)
        boundary(f"container:{(self.labels or {}).get('kernbuild', 'session')}")
        return self

    def __exit__(self, *_) -> None:
        _remove(self.container)
        GUARD.finished(self.container)

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
        GUARD.check()  # the container was removed under the command: not its exit status
        code = api.exec_inspect(exec_id)["ExitCode"]
        boundary(f"exec:{label or command[0]}")
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
