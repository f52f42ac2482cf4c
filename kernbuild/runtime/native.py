"""The ``native`` runner: an image's packages installed from the signed repository into a
fresh mmdebstrap chroot, run with no container runtime.

It checks what the other targets cannot: that the suite's packages, exactly as pinned in
``kern.lock``, install on a plain Debian system from the published, signed repository
(with apt verifying the repository's signature), and that the workflow runs there. The
chroot is made once per distinct package list and reused by every cell and step that
asks for the same list.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext
from kernbuild.runtime.bwrap import run_in_rootfs
from kernbuild.runtime.tools import locate

# Debian package names (policy 5.6.1), optionally pinned to a Debian version (5.6.12).
# Checked so that nothing from the package list can reach mmdebstrap as an option.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9.+-]+(=[0-9A-Za-z.+~:-]+)?$")
# The images' dpkg excludes (documentation, manual pages, translations), shared so a
# native chroot holds what an image holds.
_NODOC = Path(__file__).resolve().parents[1] / "images" / "templates" / "dpkg-nodoc"
# As the images' kern-apt-install does it: the suite's builds win over Debian's packages
# of the same name. mmdebstrap runs apt from outside with the chroot's /etc/apt, so a
# preferences file written there before the install (a setup hook) is what apt reads.
_PIN_HOOK = ('mkdir -p "$1/etc/apt/preferences.d" && printf '
             "'Package: *\\nPin: release o=kern\\nPin-Priority: 900\\n' "
             '> "$1/etc/apt/preferences.d/kern"')
# What a failed chroot creation reports as the step's exit status: not the command's
# own status, as docker run reports its own failures as 125.
SETUP_FAILED = 125


def parse_packages(packages: str) -> list[str]:
    """The package list ``"name=version name=version ..."`` as a sorted list; a KernError
    names any entry that is not a Debian package name, optionally ``=version``."""
    entries = packages.split()
    if not entries:
        raise KernError("the native target got an empty package list",
                        "pass the image's pinned packages from kern.lock")
    bad = [entry for entry in entries if not _PACKAGE.match(entry)]
    if bad:
        raise KernError(f"not a Debian package (name=version): {', '.join(bad)}",
                        "check the image's package list in kern.lock")
    return sorted(set(entries))


def _mounted_under(path: Path) -> bool:
    """Whether anything is mounted at or below ``path``."""
    prefix = str(path.resolve()).rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            points = [line.split()[4] for line in mounts]
    except OSError:
        return True  # cannot tell: keep the directory rather than risk it
    return any((point.rstrip("/") + "/").startswith(prefix) for point in points)


class NativeRunner(Runner):
    """The image's packages, from the suite's signed repository and a Debian mirror,
    installed by ``mmdebstrap --variant=minbase`` into a chroot of their own, which each
    step then runs in under bubblewrap, as the sif-bwrap runner runs a SIF's root
    filesystem (the scratch directory bound at its own path and the working directory).

    ``image`` is the package list, ``"<name>=<version> ..."``. The chroot of a list is
    made once, under ``cache/<sha256>``, and kept for later runs.

    Args:
        repo_root: the repository root (``Workspace.repo``): ``current/`` and
            ``kern-archive-keyring.gpg``.
        distribution: the repository's distribution, such as ``kern-1``.
        suite: the Debian codename the chroot is made of, such as ``trixie``.
        mirror: the Debian mirror, such as ``http://deb.debian.org/debian``.
        cache: where chroots are kept.
        build_timeout: seconds one mmdebstrap run may take.
    """

    name, form = "native", "packages"

    def __init__(self, repo_root: Path, distribution: str, suite: str, mirror: str,
                 cache: Path, build_timeout: float = 1800) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.distribution = distribution
        self.suite = suite
        self.mirror = mirror
        self.cache = Path(cache)
        self.build_timeout = build_timeout
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "NativeRunner":
        settings = context.settings
        return cls(context.repo_root, settings.repo_distribution, settings.distribution,
                   settings.mirror, context.cache("native"))

    def unavailable(self) -> str:
        """Why this target cannot run here, or "" if it can."""
        if self.gpu:
            return "GPU images run in containers only: a chroot of packages has no GPU runtime"
        missing = [f"{tool} is not installed (apt-get install {package})"
                   for tool, package in (("mmdebstrap", "mmdebstrap"), ("bwrap", "bubblewrap"))
                   if locate(tool) is None]
        return "; ".join(missing)

    def key(self, packages: list[str], components: tuple[str, ...] = ()) -> str:
        """The cache key of a chroot: the package list, and what else decides its content
        (the Debian suite, mirror and areas, the repository's distribution)."""
        text = "\n".join([self.suite, self.mirror, self.distribution, *packages])
        if components:  # (a list of main alone keeps the key chroots were made under)
            text += "\ncomponents " + " ".join(components)
        return hashlib.sha256(text.encode()).hexdigest()

    def sources(self, components: tuple[str, ...] = ()) -> list[str]:
        """The two apt sources: Debian's (main, and the areas beyond it the packages
        need), and the suite's repository, verified with its own keyring. ``copy://``,
        not ``file://``: apt reads a ``file://`` repository's .debs in place, at host
        paths that dpkg, running chrooted, cannot see; ``copy://`` has apt copy them
        into the chroot's cache first."""
        keyring = self.repo_root / "kern-archive-keyring.gpg"
        return [f"deb {self.mirror} {self.suite} {' '.join(('main', *components))}",
                (f"deb [signed-by={keyring}] copy://{self.repo_root / 'current'} "
                 f"{self.distribution} main")]

    def rootfs(self, packages: str, components: tuple[str, ...] = ()) -> Path:
        """The chroot holding ``packages`` (from Debian's main and ``components``), made
        now if no run has made it yet."""
        listed = parse_packages(packages)
        key = self.key(listed, components)
        where = self.cache / key
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per list; other lists build meanwhile
            if not where.is_dir():
                self._make(listed, where, components)
        return where

    def _make(self, packages: list[str], where: Path, components: tuple[str, ...]) -> None:
        from kernbuild.images.singularity import write_singularity_dir

        keyring = self.repo_root / "kern-archive-keyring.gpg"
        if not keyring.is_file() or not (self.repo_root / "current").is_dir():
            raise KernError(f"{self.repo_root} is not a published repository",
                            "publish the packages first: kernbuild package <recipe>")
        self.cache.mkdir(parents=True, exist_ok=True)
        # Built beside its final place and renamed, so a killed build never leaves a
        # half-made chroot that a later run would take for a finished one.
        work = Path(tempfile.mkdtemp(prefix=f".{where.name[:12]}-", dir=self.cache))
        try:
            root = work / "root"
            command = ["mmdebstrap", "--variant=minbase", "--quiet",
                       f"--include={','.join(packages)}", f"--setup-hook={_PIN_HOOK}"]
            if _NODOC.is_file():
                command.append(f"--dpkgopt={_NODOC}")
            command += [self.suite, str(root), *self.sources(components)]
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
            try:
                output, _ = process.communicate(timeout=self.build_timeout)
            except subprocess.TimeoutExpired:
                # SIGTERM, not SIGKILL: mmdebstrap then unmounts what it mounted in the
                # chroot (in root mode /proc, /sys and device nodes) before it exits.
                process.terminate()
                try:
                    process.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
                raise KernError(f"mmdebstrap ran past {self.build_timeout:g} s",
                                f"is {self.mirror} reachable?") from None
            if process.returncode != 0:
                tail = "\n".join(output.splitlines()[-15:])
                raise KernError(f"mmdebstrap could not install {' '.join(packages)}:\n{tail}",
                                f"are these versions in {self.repo_root / 'current'} "
                                f"({self.distribution}), and is {self.mirror} reachable?")
            # run_in_rootfs starts every command through apptainer's action scripts.
            write_singularity_dir(root, definition="", labels={}, environment={})
            try:
                os.rename(root, where)
            except OSError:
                if not where.is_dir():  # another process finished first: keep its chroot
                    raise
        finally:
            # Never remove through a mount a killed mmdebstrap left behind (a bound /dev).
            if not _mounted_under(work):
                shutil.rmtree(work, ignore_errors=True)

    def prepare(self, image: ImageRef) -> None:
        self.rootfs(image.ref, image.components)

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        """Run ``sh -c command`` in the chroot of the package list ``image.ref``, in
        ``cwd``; the chroot's creation does not count against ``timeout``. A chroot
        that cannot be made is reported as exit status 125 with the reason as output."""
        started = time.monotonic()
        try:
            root = self.rootfs(image.ref, image.components)
        except KernError as exc:
            return StepResult(command, SETUP_FAILED, f"[kernbuild] no native chroot: {exc}\n",
                              time.monotonic() - started)
        return run_in_rootfs(root, command, cwd=str(Path(cwd).resolve()) if cwd else "/tmp",
                             timeout=timeout)
