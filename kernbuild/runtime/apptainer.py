"""The apptainer runner: ``apptainer exec`` of a SIF, as HPC users run it.

Which apptainer: the host's ``apptainer`` (or ``singularity``) where one is on PATH,
as on any HPC site; otherwise Debian's own, pinned below, run in a Debian trixie
container, because it needs glibc >= 2.38 and a Debian 12 host has 2.36. That image,
``kern/apptainer:<version>``, is made once on the suite's base from the .deb,
fetched from Debian's archive and checked against its pinned sha256.

The containerised apptainer is reached through two small wrapper scripts,
``apptainer`` and ``singularity`` (:func:`write_wrappers`): each runs this module's
:func:`shim`, which starts ``docker run`` of the image with what apptainer needs
there (CAP_SYS_ADMIN, no seccomp or AppArmor profile, /dev/fuse; ``--privileged``
is refused on these machines) and the host paths the command names bound at the
same place, and adds ``--userns`` to the action commands (without it apptainer
wants loop devices, which a container lacks). So everything that calls apptainer
by name, spython and cwltool ``--singularity`` included, runs the real thing.

Each step runs as ``apptainer exec --cleanenv`` (nothing of kernbuild's own
environment leaks in, as cwltool runs it too), with apptainer's default binds
(home, /tmp, the current directory), the step's directory bound and entered with
``--pwd``, and ``--nv`` for GPU images, which binds the host's driver libraries.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.fsutil import atomic_write, disk_space
from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext
from kernbuild.runtime.docker import INHERITED_LABELS
from kernbuild.runtime.tools import locate, run_step
from kernbuild.sources import file_sha256


@dataclass(frozen=True)
class DebianBinary:
    """One binary package of Debian's archive, pinned by its Packages entry."""

    name: str
    version: str
    filename: str  # in the archive's pool
    sha256: str
    suite: str  # where it comes from

    @property
    def basename(self) -> str:
        return Path(self.filename).name


#: Debian unstable's apptainer (sid Packages, 2026-12): its Depends come from trixie.
APPTAINER = DebianBinary(
    "apptainer", "1.4.5-2", "pool/main/a/apptainer/apptainer_1.4.5-2_amd64.deb",
    "26cf96e08fccb0e50ea0f285a5a19f940ee873d167a0680584fe6eba7d197d65", "sid")
#: Beyond its Depends: what mounts a SIF without setuid or loop devices (squashfuse,
#: fuse2fs), and the tools apptainer looks for at every start (it says so otherwise).
APPTAINER_EXTRAS = ("squashfuse", "fuse2fs", "e2fsprogs", "fuse3", "gocryptfs")
IMAGE = f"kern/apptainer:{APPTAINER.version}"
#: What apptainer needs of Docker to run in a container here.
DOCKER_OPTIONS = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                  "--security-opt", "apparmor=unconfined", "--device", "/dev/fuse")
#: apptainer's commands that start a container, to which the shim adds --userns.
ACTIONS = ("exec", "run", "shell", "test", "instance")
#: The environment variable naming the shim's container, so a timed-out step's
#: container can be removed (killing the docker client leaves it running).
CONTAINER_VARIABLE = "KERN_APPTAINER_CONTAINER"


class ApptainerRunner(Runner):
    """apptainer exec of the SIF: the host's apptainer, or Debian's in a container."""

    name, form = "apptainer", "sif"

    def __init__(self, connect=None, cache: Path | None = None, settings=None,
                 images: Path | None = None,
                 verified: set[tuple[str, str]] | None = None) -> None:
        self.connect, self.cache, self.settings, self.images = connect, cache, settings, images
        self.keys: Path | None = None  # the keyring that signs and verifies (use_key)
        self._fingerprint = ""  # of the key in that keyring
        # (SIF digest, key fingerprint) verified: shared by the runners of one context
        self._verified = set() if verified is None else verified
        self._engine_error: str | None = None  # why no engine answers ("": it does)

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "ApptainerRunner":
        return cls(context.connect, context.cache("apptainer"), context.settings,
                   context.state / "images", context.verified)

    def program(self) -> str | None:
        """The apptainer to run: the host's, else the wrapper of the containerised one
        (None: neither is here yet)."""
        host = locate("apptainer")
        if host:
            return host
        wrapper = self.cache / "bin" / "apptainer" if self.cache else None
        return str(wrapper) if wrapper and wrapper.is_file() else None

    def unavailable(self) -> str:
        if locate("apptainer") or self.program():
            return ""
        if self.connect is None:
            return "neither apptainer nor singularity is installed"
        if self._engine_error is None:  # asked once: the matrix asks before every cell
            try:
                self.connect()
                self._engine_error = ""
            except KernError as exc:
                self._engine_error = exc.message
        return (f"no apptainer on this host, and no Docker engine to run Debian's in a "
                f"container: {self._engine_error}") if self._engine_error else ""

    def prepare(self, image: ImageRef) -> None:
        """Make the containerised apptainer if the host has none (once per machine), and,
        with the suite's key in use, refuse a SIF whose signature does not verify."""
        if not locate("apptainer"):
            self.containerised()
        if self.keys and image.ref and (image.digest, self._fingerprint) not in self._verified:
            self.verify(Path(image.ref))
            self._verified.add((image.digest, self._fingerprint))

    def containerised(self) -> Path:
        """The wrapper scripts of the containerised apptainer, its image made if missing."""
        client = self.connect()
        ensure_image(client, self.settings, self.images)
        return write_wrappers(self.cache / "bin")

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        program = self.program() or str(self.containerised() / "apptainer")
        where = ["--bind", str(cwd), "--pwd", str(cwd)] if cwd else []
        name = f"kernbuild-apptainer-{secrets.token_hex(6)}"
        result = run_step([program, "exec", "--cleanenv", *(["--nv"] if self.gpu else []),
                           *where, image.ref, "sh", "-c", command], label=command,
                          timeout=timeout, env={**os.environ, CONTAINER_VARIABLE: name})
        if result.timed_out and not locate("apptainer"):
            _remove_container(name)
        return result

    def test(self, sif: Path, timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        """``apptainer test SIF``: the image's own %test (its smoke steps), as a user runs it."""
        program = self.program() or str(self.containerised() / "apptainer")
        return run_step([program, "test", str(sif)], label="apptainer test", timeout=timeout)

    @contextmanager
    def _spython(self) -> Iterator:
        """spython's client, which runs ``singularity`` from PATH: with this runner's
        apptainer (the host's, or the wrapper) first on PATH while it is used. Image
        builds run one at a time, so changing this process's PATH is safe here."""
        from spython.main import Client

        program = Path(self.program() or self.containerised() / "apptainer")
        path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{program.parent}{os.pathsep}{path}"
        try:
            yield Client
        finally:
            os.environ["PATH"] = path

    def build(self, archive: Path, output: Path) -> None:
        """``apptainer build OUTPUT docker-archive:ARCHIVE`` (a ``docker save`` tarball),
        through spython's client."""
        with self._spython() as client:
            result = client.build(recipe=f"docker-archive:{archive}", image=str(output),
                                  sudo=False, force=True, quiet=True, return_result=True)
        if not output.is_file():
            said = result.get("message", result) if isinstance(result, dict) else result
            raise KernError(f"apptainer build of {output.name} failed: {said}",
                            "is there room in the state directory (df -h)?")

    def inspect_labels(self, sif: Path) -> dict[str, str]:
        """The labels apptainer reads from ``sif`` (``apptainer inspect``, through spython's
        client)."""
        with self._spython() as client:
            found = client.inspect(str(sif), quiet=True)
        if not isinstance(found, dict) or "attributes" not in found:
            raise KernError(f"apptainer cannot inspect {sif}: {found}",
                            "the SIF is damaged: build it again")
        return dict(found["attributes"].get("labels") or {})

    def trust(self, key) -> None:
        self.use_key(key)

    def use_key(self, key) -> None:
        """Sign and verify with ``key`` (the suite's :class:`~kernbuild.repo.SigningKey`):
        its secret and public parts imported into a keyring of kernbuild's own
        (APPTAINER_KEYSDIR under the cache), once."""
        keys = self.cache / "keys"
        marker = keys / f".imported-{key.fingerprint}"
        self.keys, self._fingerprint = keys, key.fingerprint
        if not marker.exists():
            keys.mkdir(parents=True, exist_ok=True)
            keys.chmod(0o700)
            for part, data in (("secret", key.export_secret()),
                               ("public", key.export_public(binary=False))):
                material = atomic_write(keys / f"suite-{part}.asc", data, mode=0o600)
                done = self._apptainer("key", "import", str(material))
                if done.exit_code != 0 and "already belongs" not in done.output:
                    raise KernError(f"apptainer cannot import the suite's {part} key: "
                                    f"{done.output.strip()}")
            atomic_write(marker, key.fingerprint + "\n")

    def sign(self, sif: Path) -> None:
        """``apptainer sign``: the suite's signature written into the SIF itself."""
        done = self._apptainer("sign", "--keyidx", "0", str(sif))
        if done.exit_code != 0:
            raise KernError(f"apptainer cannot sign {sif}: {done.output.strip()}")

    def verify(self, sif: Path) -> None:
        """``apptainer verify --local``: refuse a SIF the suite's key did not sign, or one
        changed since it was signed, naming it."""
        done = self._apptainer("verify", "--local", str(sif))
        if done.exit_code != 0:
            said = [line for line in done.output.splitlines() if "ERROR" in line or "FATAL"
                    in line] or done.output.strip().splitlines()[-1:]
            raise KernError(f"{sif}: its signature does not verify with the suite's key: "
                            f"{' '.join(said).strip()}",
                            "it was changed after signing, or signed by another key: "
                            "rebuild it (kernbuild image NAME --format sif)")

    def _apptainer(self, *args: str, timeout: float = 600) -> StepResult:
        program = self.program() or str(self.containerised() / "apptainer")
        env = {**os.environ, "APPTAINER_KEYSDIR": str(self.keys)} if self.keys else None
        return run_step([program, *args], label=" ".join(args), timeout=timeout, env=env)

    def describe(self) -> str:
        """Which apptainer this is, in words: ``apptainer version 1.4.5-2 (host)``."""
        host = locate("apptainer")
        return (f"{version(host)} ({host})" if host else
                f"Debian's apptainer {APPTAINER.version} in {IMAGE}")


def version(program: str) -> str:
    """What ``apptainer --version`` says, or why it cannot say."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run: {exc}"
    return (done.stdout.strip() or done.stderr.strip() or f"exit {done.returncode}")


# --- the containerised apptainer ---------------------------------------------------------

def fetch_deb(package: DebianBinary, directory: Path,
              mirror: str = "http://deb.debian.org/debian") -> Path:
    """``package``'s .deb in ``directory``, downloaded from ``mirror`` once and checked
    against its pinned sha256 (a mismatch keeps nothing)."""
    target = directory / package.basename
    if target.is_file() and file_sha256(target) == package.sha256:
        return target
    url = f"{mirror}/{package.filename}"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "kernbuild"})
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        raise KernError(f"cannot download {url}: {exc}",
                        "is Debian's archive reachable? (http_proxy is honoured)") from None
    got = hashlib.sha256(data).hexdigest()
    if got != package.sha256:
        raise KernError(f"{url} has sha256 {got}, not the pinned {package.sha256}",
                        "the mirror serves another file: use Debian's, or update the pin "
                        "in kernbuild/runtime/apptainer.py from its Packages index")
    with disk_space(directory):
        return atomic_write(target, data)


def ensure_image(client, settings, work: Path, say=lambda _: None) -> str:
    """``kern/apptainer:<version>``: Debian's apptainer on the suite's trixie base, made
    if missing. The suite's base must be Debian trixie or newer (glibc >= 2.38)."""
    from docker.errors import ImageNotFound

    from kernbuild.build.environment import build_image, ensure_base

    if settings.base_is_registry_image or settings.base in ("bookworm", "bullseye"):
        raise KernError(f"Debian's apptainer {APPTAINER.version} needs glibc >= 2.38, which "
                        f"the suite's base {settings.base} lacks",
                        "install apptainer on the host, or base the suite on trixie")
    base = settings.base_tag
    dockerfile = (f"FROM {base}\n"
                  f"COPY {APPTAINER.basename} /tmp/\n"
                  "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  f"--no-install-recommends /tmp/{APPTAINER.basename} "
                  f"{' '.join(APPTAINER_EXTRAS)} && rm -rf /tmp/{APPTAINER.basename} "
                  "/var/lib/apt/lists/* /var/cache/apt/*.bin\n"
                  f'LABEL org.kernsuite.apptainer="{APPTAINER.version}" '
                  f'org.kernsuite.apptainer.sha256="{APPTAINER.sha256}"\n')
    # Made again when what it is made of changes (the pin, the extras, the base).
    recipe = hashlib.sha256(dockerfile.encode()).hexdigest()
    try:
        if client.images.get(IMAGE).labels.get("org.kernsuite.recipe-hash") == recipe:
            return IMAGE
    except ImageNotFound:
        pass
    ensure_base(client, settings, work, say)
    deb = fetch_deb(APPTAINER, work / "apptainer", settings.mirror)
    say(f"making {IMAGE}: Debian's apptainer on {base}")
    build_image(client, dockerfile + f'LABEL org.kernsuite.recipe-hash="{recipe}"\n', IMAGE,
                work, {deb.name: deb.read_bytes()})
    return IMAGE


def write_wrappers(directory: Path) -> Path:
    """``apptainer`` and ``singularity`` in ``directory``: scripts that run :func:`shim`
    with this Python, so a caller that runs apptainer by name runs the container's."""
    script = (f"#!/bin/sh\n# Debian's apptainer {APPTAINER.version} in the Docker image "
              f"{IMAGE}, made by kernbuild\nexec {sys.executable} -m kernbuild.runtime.apptainer"
              ' "$@"\n')
    for name in ("apptainer", "singularity"):
        path = directory / name
        if not path.is_file() or path.read_text() != script:
            atomic_write(path, script, mode=0o755)
    return directory


def docker_command(args: list[str], cwd: str, env: dict[str, str]) -> list[str]:
    """The ``docker run`` that runs ``apptainer ARGS`` in the image, started in ``cwd``.

    Bound at the same path: /tmp, ``cwd``, $HOME, every existing host path the arguments
    name (``--bind SRC[:DST]`` sources included) and the directories apptainer's own
    variables name, so that the SIF, its binds, its keyring and the files a workflow
    stages are where apptainer is told they are. apptainer's
    own variables (APPTAINERENV_*, SINGULARITYENV_*, ...) are passed on.
    """
    args = list(args)
    # the command is the first word that is not a global option (--quiet, --debug)
    at = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    if at is not None and args[at] in ACTIONS and "--userns" not in args and "-u" not in args:
        args.insert(at + 1, "--userns")
    paths = {"/tmp", cwd, env.get("HOME", "")}
    paths |= {value for name, value in env.items() if name.startswith(("APPTAINER", "SINGULARITY"))
              and value.startswith("/") and os.path.isdir(value)}  # APPTAINER_KEYSDIR, say
    # a path, SRC:DST[:OPTS] binds, --mount type=bind,source=SRC,..., docker-archive:PATH
    for arg in args:
        for part in arg.split(","):
            for candidate in part.split("=", 1)[-1].split(":"):
                if not candidate.startswith("/"):
                    continue
                if os.path.isdir(candidate):
                    paths.add(candidate)
                elif os.path.isdir(os.path.dirname(candidate)):  # a file, or one to be made
                    paths.add(os.path.dirname(candidate))
    mounts = []
    for path in sorted(p for p in paths if p and p != "/"):
        if not any(path.startswith(other.rstrip("/") + "/") for other in paths
                   if other and other != "/" and other != path):
            mounts += ["-v", f"{path}:{path}"]
    passed = [item for name in sorted(env) if name.startswith(("APPTAINER", "SINGULARITY"))
              for item in ("-e", name)]
    name = env.get(CONTAINER_VARIABLE) or f"kernbuild-apptainer-{secrets.token_hex(6)}"
    try:  # the kernbuild run's own labels, so that its next run reaps what a kill left
        inherited = dict(json.loads(env.get(INHERITED_LABELS, "{}")))
    except ValueError:
        inherited = {}
    labels = [item for key, value in sorted({**inherited, "kernbuild": "apptainer"}.items())
              for item in ("--label", f"{key}={value}")]
    return ["docker", "run", "--rm", "-i", "--name", name, *labels, *DOCKER_OPTIONS,
            *mounts, *passed, "-w", cwd, IMAGE, "apptainer", *args]


def shim(argv: list[str]) -> int:
    """``apptainer ARGS`` through the container: the wrappers' entry point. SIGTERM (a
    Slurm time limit, a timeout) removes the container before exiting."""
    command = docker_command(argv, os.getcwd(), dict(os.environ))
    name = command[command.index("--name") + 1]
    process = subprocess.Popen(command)

    def stop(signum, _frame):
        _remove_container(name)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    return process.wait()


def _remove_container(name: str) -> None:
    """Remove the shim's container ``name``, whose step timed out. The docker client was
    killed, perhaps while the engine was still creating the container: ask until the
    engine has twice in a row known no such container (a few seconds at most)."""
    absent = 0
    for _ in range(20):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60,
                       check=False)
        listed = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{name}$"],
                                capture_output=True, text=True, timeout=60, check=False)
        absent = absent + 1 if listed.returncode == 0 and not listed.stdout.strip() else 0
        if absent == 2:
            return
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:]))
