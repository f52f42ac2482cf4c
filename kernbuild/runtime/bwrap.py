"""Root filesystems run as apptainer runs them, through bubblewrap.

:func:`run_in_rootfs` is the runtime of three runners: :class:`SifBwrapRunner`
(the ``sif-bwrap`` target: a SIF's own root filesystem, unpacked once per
digest), :class:`RootfsRunner` (a root filesystem as it is: the smoke tests of an
unpacked SIF or a CVMFS sandbox) and the ``native`` target's chroots.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

from kernbuild.errors import KernError
from kernbuild.gpu import host_driver_libraries
from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext
from kernbuild.runtime.tools import locate, require, run_step

# apptainer's default PATH in a container (the action scripts' fixpath).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootfsRunner(Runner):
    """A root filesystem holding /.singularity.d (``ref`` is its path), run in place."""

    name, form = "rootfs", "rootfs"

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        from kernbuild.gpu import gpu_root  # $KERN_GPU_ROOT: a stand-in driver, for tests

        return run_in_rootfs(Path(image.ref), command, cwd=str(cwd or "/tmp"), timeout=timeout,
                             gpu_root=gpu_root() if self.gpu else None)


class SifBwrapRunner(RootfsRunner):
    """A stand-in for apptainer: the SIF's own root filesystem (unpacked from it once per
    digest, under ``cache``) under bubblewrap, with the binds apptainer makes (home, the
    working directory, /tmp) and the image's own action scripts."""

    name, form = "sif-bwrap", "sif"

    def __init__(self, cache: Path, context: RuntimeContext | None = None) -> None:
        self.cache = Path(cache)
        self.context = context
        self.checker = None  # an apptainer that verifies each SIF's signature first

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "SifBwrapRunner":
        return cls(context.cache("rootfs"), context)

    def trust(self, key) -> None:
        """Verify each SIF's signature with apptainer first, where one can run: the
        stand-in runs no SIF the real apptainer would refuse."""
        from kernbuild.runtime.apptainer import ApptainerRunner

        if self.context is None:
            return
        checker = ApptainerRunner.from_context(self.context)
        if checker.unavailable():
            return
        checker.prepare(ImageRef(""))
        checker.use_key(key)
        self.checker = checker

    def unavailable(self) -> str:
        return "" if locate("bwrap") else (
            "bubblewrap is not installed (apt-get install bubblewrap)")

    def rootfs(self, image: ImageRef) -> Path:
        """The SIF's root filesystem, unpacked under ``cache/<digest>`` if not yet.

        unpack_sif renames a finished tree into place, so a second process (another
        Slurm job) that loses the race fails its rename and finds the winner's tree."""
        from kernbuild.images.sif import unpack_sif

        where = self.cache / image.digest
        if not where.exists():
            try:
                unpack_sif(Path(image.ref), where)
            except (KernError, OSError):
                if not where.exists():
                    raise
        return where

    def prepare(self, image: ImageRef) -> None:
        if self.checker is not None:
            self.checker.prepare(image)
        self.rootfs(image)

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        return super().run(ImageRef(str(self.rootfs(image)), image.digest), command, cwd,
                           timeout)


def run_in_rootfs(rootfs: Path, command: str, cwd: str = "/tmp",
                  timeout: float = 300, gpu_root: Path | None = None) -> StepResult:
    """Run ``sh -c command`` with ``rootfs`` as ``/``, as ``apptainer exec --cleanenv``
    would run it (stdout and stderr together in the result's output).

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
    timeout(1) does (:func:`~kernbuild.runtime.tools.run_step`).
    """
    rootfs = Path(rootfs).resolve()
    bwrap = require("bwrap")
    if not (rootfs / ".singularity.d/actions/exec").is_file():
        raise KernError(f"{rootfs} has no /.singularity.d/actions/exec",
                        "write it first (write_singularity_dir)")
    home = os.environ.get("HOME") or str(Path.home())
    binds = [home] if home != "/" and Path(home).is_dir() else []
    driver: list[tuple[str, str]] = []  # (host path, path in the container)
    if gpu_root is not None:
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
        return run_step(args, label=command, timeout=timeout, env=env)


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


