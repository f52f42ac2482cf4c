"""``kernbuild doctor``: is this host ready for kernbuild, and (``--gpu``) for GPU images?

Every finding is a :class:`Check` with a status: ``ok``; ``warn``, something optional is
missing (one test target, one image format); ``skip``, nothing to check here; ``fail``,
something kernbuild needs is missing or broken. The command exits 1 when a check failed;
with ``--gpu``, no usable GPU is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from kernbuild import engine, gpu
from kernbuild.errors import KernError

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "fail"

# Root's tools (runc, dockerd) live in sbin directories that a user's PATH often lacks.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Check:
    """One finding, in one section of the report."""

    section: str
    name: str
    status: str  # OK, WARN, SKIP or FAIL
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class Tool:
    """A program kernbuild runs: any of ``programs`` (or the Python module ``module``)."""

    programs: tuple[str, ...]
    install: str  # how to get it
    needed_for: str
    required: bool  # False: only one target or image format needs it
    module: str = ""


TOOLS = (
    Tool(("mmdebstrap",), "apt-get install mmdebstrap", "base images made from scratch", True),
    Tool(("apt-ftparchive",), "apt-get install apt-utils", "the apt repository's indices", True),
    Tool(("gpg",), "apt-get install gpg", "signing the apt repository", True),
    Tool(("dpkg-deb",), "apt-get install dpkg", "reading the built packages", True),
    Tool(("mksquashfs",), "apt-get install squashfs-tools",
         "SIF images where apptainer is not installed", False),
    Tool(("siftool",), "apt-get install siftool", "SIF images where apptainer is not installed",
         False),
    Tool(("bwrap",), "apt-get install bubblewrap", "the sif-bwrap and native test targets",
         False),
    Tool(("apptainer", "singularity"), "install apptainer",
         "the apptainer test target (sif-bwrap stands in without it)", False),
    Tool(("udocker",), "pip install udocker", "the udocker test target", False, "udocker"),
    Tool(("runc",), "apt-get install runc", "the udocker test target (mode R1)", False),
    Tool(("sbatch",), "apt-get install slurm-wlm", "the slurm executor (kernbuild test "
                                                   "--executor slurm)", False),
)


def locate(tool: Tool) -> str | None:
    """Where ``tool`` is: a program on PATH or in an sbin directory, or its Python module."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    for program in tool.programs:
        if found := shutil.which(program, path=search):
            return found
    if tool.module and importlib.util.find_spec(tool.module) is not None:
        return f"python module {tool.module}"
    return None


@dataclass(frozen=True)
class Report:
    """The checks, and with ``--gpu`` the GPU facts they were made from."""

    checks: tuple[Check, ...]
    host: gpu.HostGpu | None = None
    images: tuple[gpu.ImageFit, ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def as_dict(self) -> dict:
        """The report as one JSON object: ``ok``, ``checks``, and ``gpu`` (null without --gpu)."""
        data: dict = {"ok": self.ok, "checks": [asdict(check) for check in self.checks],
                      "gpu": None}
        if self.host is not None:
            host = self.host
            data["gpu"] = {
                "root": str(host.root),
                "driver": {r.source: asdict(r) for r in host.readings},
                "versions_agree": not host.disagreement(),
                "usable": not host.problem(),
                "problem": host.problem(),
                "gpus": [asdict(g) for g in host.gpus],
                "runtimes": [asdict(r) for r in host.runtimes],
                "images": [asdict(fit) for fit in self.images],
            }
        return data


def diagnose(lockfile: Path, *, with_gpu: bool = False, root: Path | None = None) -> Report:
    """Check the Docker engine and the tools; with ``with_gpu`` also the driver (read under
    ``root``, default ``$KERN_GPU_ROOT`` or /), the runtimes' GPU support, the GPUs, and
    which GPU images in ``lockfile`` can run here. Never raises for what it finds."""
    from docker.errors import DockerException
    from requests import RequestException

    info, why_not = None, ""
    try:
        info = engine.connect().info()
    except KernError as exc:
        why_not = exc.message
        checks = [Check("host", "docker engine", FAIL, exc.message, exc.hint)]
    except (DockerException, RequestException) as exc:  # answered the ping, not info()
        why_not = f"the Docker engine did not answer: {exc}"
        checks = [Check("host", "docker engine", FAIL, why_not)]
    else:
        checks = [Check("host", "docker engine", OK,
                        f"Docker {info.get('ServerVersion', '?')}, storage driver "
                        f"{info.get('Driver', '?')}")]
    for tool in TOOLS:
        name = "/".join(tool.programs)
        if where := locate(tool):
            checks.append(Check("tools", name, OK, where))
        else:
            checks.append(Check("tools", name, FAIL if tool.required else WARN,
                                f"not found; needed for {tool.needed_for}", tool.install))
    if not with_gpu:
        return Report(tuple(checks))
    host = gpu.inspect_host(root or gpu.gpu_root(), info, why_not)
    checks += _driver_checks(host)
    checks += [Check("runtimes", r.name, OK if r.gpu else WARN if r.installed else SKIP,
                     r.detail) for r in host.runtimes]
    try:
        fits = gpu.image_fits(gpu.gpu_images(lockfile), host)
    except KernError as exc:
        checks.append(Check("images", lockfile.name, FAIL, exc.message, exc.hint))
        return Report(tuple(checks), host)
    checks += [Check("images", fit.tag, OK if fit.runnable else FAIL, fit.reason)
               for fit in fits] or [Check("images", lockfile.name, SKIP,
                                          f"no GPU images in {lockfile}")]
    return Report(tuple(checks), host, tuple(fits))


def _driver_checks(host: gpu.HostGpu) -> list[Check]:
    """The driver as each source reads it, whether they agree, and the GPUs it lists."""
    checks = []
    for reading in host.readings:
        library = reading.libraries.get(gpu.NVML_LIB)
        if reading.version and not reading.error:
            checks.append(Check("driver", reading.source, OK,
                                reading.version + (f" ({library})" if library else "")))
        else:
            # nvidia-smi only reports what NVML knows: alone, its absence is no failure.
            status = WARN if reading.source == gpu.SMI and not reading.mismatch else FAIL
            checks.append(Check("driver", reading.source, status, reading.error + (
                f" (library version {reading.version})" if reading.version else "")))
    named = [r for r in host.readings if r.version]
    if disagreement := host.disagreement():
        checks.append(Check("driver", "versions agree", FAIL, disagreement, gpu.RELOAD_HINT))
    elif named:
        checks.append(Check("driver", "versions agree", OK, f"{named[0].version} ("
                            + ", ".join(r.source for r in named) + ")"))
    else:
        checks.append(Check("driver", "versions agree", SKIP, "no source names a version"))
    checks += [Check("gpus", f"GPU {g.index}", OK, g.name + (
        f", {g.memory_mib} MiB" if g.memory_mib is not None else "")) for g in host.gpus]
    if problem := host.problem():
        checks.append(Check("gpus", "usable", FAIL, f"no usable GPU: {problem}"))
    else:
        checks.append(Check("gpus", "usable", OK, f"{len(host.gpus)} GPU(s) usable by CUDA "
                                                  f"programs"))
    return checks
