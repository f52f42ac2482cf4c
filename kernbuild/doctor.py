"""``kernbuild doctor``: is this host ready for kernbuild, and (``--gpu``) for GPU images?

Every finding is a :class:`Check` with a status: ``ok``; ``warn``, something optional is
missing (one test target, one image format); ``skip``, nothing to check here; ``fail``,
something kernbuild needs is missing or broken. The command exits 1 when a check failed;
with ``--gpu``, no usable GPU is a failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from kernbuild import engine, gpu, lockfile
from kernbuild.errors import KernError
from kernbuild.runtime.tools import TOOLS, locate

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "fail"

@dataclass(frozen=True)
class Check:
    """One finding, in one section of the report."""

    section: str
    name: str
    status: str  # OK, WARN, SKIP or FAIL
    detail: str
    hint: str = ""


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


def diagnose(lockfile_path: Path, *, with_gpu: bool = False, root: Path | None = None) -> Report:
    """Check the Docker engine and the tools; with ``with_gpu`` also the driver (read under
    ``root``, default ``$KERN_GPU_ROOT`` or /), the runtimes' GPU support, the GPUs, and
    which GPU images in ``lockfile_path`` can run here. Never raises for what it finds."""
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
    for tool in TOOLS.values():
        name = "/".join(tool.programs)
        if tool.name == "apptainer":
            checks.append(_apptainer_check(name, info is not None))
        elif where := locate(tool):
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
        fits = gpu.image_fits(lockfile.gpu_images(lockfile_path), host)
    except KernError as exc:
        checks.append(Check("images", lockfile_path.name, FAIL, exc.message, exc.hint))
        return Report(tuple(checks), host)
    checks += [Check("images", fit.tag, OK if fit.runnable else FAIL, fit.reason)
               for fit in fits] or [Check("images", lockfile_path.name, SKIP,
                                          f"no GPU images in {lockfile_path}")]
    return Report(tuple(checks), host, tuple(fits))


def _apptainer_check(name: str, engine_running: bool) -> Check:
    """Which apptainer the apptainer target runs, and its version: the host's, or
    Debian's in a container (made on first use where the host has none)."""
    from kernbuild.runtime import apptainer

    if where := locate("apptainer"):
        return Check("tools", name, OK, f"{where}: {apptainer.version(where)}")
    made = engine_running and engine.image_id(engine.connect(), apptainer.IMAGE) is not None
    if made:
        return Check("tools", name, OK, f"Debian's apptainer {apptainer.APPTAINER.version} in "
                                        f"the Docker image {apptainer.IMAGE} (none on this host)")
    return Check("tools", name, WARN,
                 f"none on this host; the apptainer target runs Debian's "
                 f"{apptainer.APPTAINER.version} in a trixie container, made on first use"
                 + ("" if engine_running else ", which needs the Docker engine"),
                 "install apptainer, or start the Docker engine")


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
