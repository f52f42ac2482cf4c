"""This host's NVIDIA GPUs, as ``kernbuild doctor --gpu`` reports them.

Three sources name the driver that runs here, and on a healthy host they agree:

- the kernel module, in ``<root>/proc/driver/nvidia/version`` (:func:`module_version`);
- NVML, the user-space driver library ``libnvidia-ml.so.1`` (:func:`nvml_report`);
- ``nvidia-smi``, which reads NVML too but is what users paste into bug reports
  (:func:`nvidia_smi_report`).

After a driver upgrade without a reboot the module is the old release and the libraries
the new one: NVML then refuses to start ("Driver/library version mismatch", error 18) and
no CUDA program runs. :class:`HostGpu` puts the three together with the container runtimes'
GPU support (:func:`runtimes`), and :func:`image_fits` says which GPU images recorded in
kern.lock can run here.

The minimum driver of each CUDA release comes from :mod:`kernbuild.cuda`, whose table
kern-gpu-check compiles in. As in kern-gpu-check, ``$KERN_GPU_ROOT`` (default ``/``) is
the root that the /proc file and the CDI specs are read under, so tests use a fake root.

``python -m kernbuild.nvml`` is the NVML probe that :func:`nvml_report` runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kernbuild.cuda import DRIVER_LIBRARY, VERSION, minimum_driver, version_key
from kernbuild.nvml import CUDA_LIB, NVML_LIB
from kernbuild.runtime.tools import locate

MODULE, NVML, SMI = "kernel module", "NVML", "nvidia-smi"
SMI_QUERY = ("--query-gpu=driver_version,name,memory.total", "--format=csv,noheader,nounits")
CDI_DIRS = ("etc/cdi", "var/run/cdi")  # where CDI specs live, under the root
RELOAD_HINT = ("the loaded kernel module and the driver libraries come from different driver "
               "releases: reboot, or reload the nvidia module after a driver upgrade")


def gpu_root(env: Mapping[str, str] = os.environ) -> Path:
    """The root the driver's files are read under: ``$KERN_GPU_ROOT``, or ``/``."""
    return Path(env.get("KERN_GPU_ROOT") or "/")


def host_driver_libraries(root: Path = Path("/")) -> list[Path]:
    """The host's driver libraries, as ``ldconfig -p`` knows them (what apptainer --nv
    binds into /.singularity.d/libs); under ``root`` when that is not ``/``, a fake root
    for tests, searched in the usual library directories."""
    if root != Path("/"):
        found = [p for directory in ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib")
                 for p in sorted((root / directory).glob("lib*.so*"))]
    else:
        try:
            listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                                     timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        found = [Path(line.rsplit("=>", 1)[1].strip()) for line in listing.splitlines()
                 if "=>" in line and "x86-64" in line]
    seen: dict[str, Path] = {}
    for path in found:
        if DRIVER_LIBRARY.match(path.name) and path.name not in seen:
            seen[path.name] = path
    return list(seen.values())


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver lists it."""

    index: int
    name: str
    memory_mib: int | None  # None where nvidia-smi says [N/A]


@dataclass(frozen=True)
class Reading:
    """What one source says of the driver: its version and GPUs, or why it cannot say."""

    source: str
    version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    error: str = ""
    # The source itself reported "Driver/library version mismatch": the module and the
    # libraries are of different releases even where no version could be read.
    mismatch: bool = False
    # NVML only: each driver library a container runtime binds in, and where it was found
    # (None: not loadable here).
    libraries: dict[str, str | None] = field(default_factory=dict)


def module_version(root: Path) -> Reading:
    """The version of the NVIDIA kernel module loaded, from ``<root>/proc/driver/nvidia/version``.

    Its first line is "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar ..."
    or, for the open module, "... Open Kernel Module for x86_64  550.54.15  Release Build ...":
    the version is the first dotted number after "NVRM version:".
    """
    path = root / "proc/driver/nvidia/version"
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return Reading(MODULE, error=f"no NVIDIA kernel module loaded ({path} not found)")
    except OSError as exc:
        return Reading(MODULE, error=f"{path} is unreadable: {exc.strerror}")
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            for token in line.removeprefix("NVRM version:").split():
                if "." in token and VERSION.fullmatch(token):
                    return Reading(MODULE, version=token)
    return Reading(MODULE, error=f"no kernel module version in {path}")


def nvml_report(env: Mapping[str, str] | None = None, timeout: float = 30) -> Reading:
    """NVML's driver version and GPUs, asked by ``python -m kernbuild.nvml``.

    A subprocess, because a driver library that is broken can crash the process that loads
    it, and because ``LD_LIBRARY_PATH`` (``env``, default this process's environment) only
    takes effect when a process starts: tests point it at stub libraries. Every failure,
    a crash or a hang included, is a Reading with an error.
    """
    try:
        done = subprocess.run([sys.executable, "-m", "kernbuild.nvml"], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Reading(NVML, error=f"NVML did not answer within {timeout:g} s")
    if done.returncode < 0:
        return Reading(NVML, error=f"loading {NVML_LIB} killed the process "
                                   f"({signal.Signals(-done.returncode).name})")
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])  # the last line: a library may print before it
    except (IndexError, ValueError):
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return Reading(NVML, error=f"the NVML probe failed: {why}")
    return Reading(NVML, version=data.get("version"), error=data.get("error", ""),
                   gpus=tuple(Gpu(**gpu) for gpu in data.get("gpus", ())),
                   mismatch=data.get("mismatch", False), libraries=data.get("libraries", {}))


def nvidia_smi_report(timeout: float = 20) -> Reading:
    """The driver version and GPUs ``nvidia-smi`` (on PATH) lists; its failure text if it fails,
    such as "Failed to initialize NVML: Driver/library version mismatch"."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return Reading(SMI, error="nvidia-smi is not on PATH")
    try:
        done = subprocess.run([program, *SMI_QUERY], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Reading(SMI, error=f"nvidia-smi did not answer within {timeout:g} s")
    except OSError as exc:
        return Reading(SMI, error=f"nvidia-smi cannot run: {exc.strerror}")
    if done.returncode != 0:
        text = done.stdout + done.stderr
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return Reading(SMI, error="; ".join(lines) or f"nvidia-smi failed (exit "
                                                     f"{done.returncode})",
                       mismatch="version mismatch" in text)
    gpus, versions = [], []
    for index, line in enumerate(line for line in done.stdout.splitlines() if line.strip()):
        version, *name, memory = [part.strip() for part in line.split(",")]
        if not name:
            return Reading(SMI, error=f"nvidia-smi printed {line.strip()!r}, not "
                                      "driver_version, name, memory.total")
        versions.append(version)
        gpus.append(Gpu(index, ",".join(name), int(memory) if memory.isdigit() else None))
    if not gpus:
        return Reading(SMI, error="nvidia-smi listed no GPUs")
    return Reading(SMI, version=versions[0], gpus=tuple(gpus))


@dataclass(frozen=True)
class Runtime:
    """A container runtime of this host: whether it is here, and whether it can give a
    container the GPU (``detail`` says how, or why not)."""

    name: str
    installed: bool
    gpu: bool
    detail: str


def cdi_specs(root: Path) -> list[Path]:
    """The CDI specs (in /etc/cdi and /var/run/cdi under ``root``) that define nvidia.com/gpu
    devices, as ``nvidia-ctk cdi generate`` writes them."""
    found = []
    for directory in CDI_DIRS:
        for spec in sorted((root / directory).glob("*")):
            if spec.suffix in (".json", ".yaml", ".yml"):
                try:
                    if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                        found.append(spec)
                except OSError:
                    continue  # unreadable: the engine cannot use it either
    return found


def _missing_libraries(nvml: Reading) -> list[str]:
    """The driver libraries that runtimes bind into containers but this host lacks."""
    return [name for name in (CUDA_LIB, NVML_LIB) if not nvml.libraries.get(name)]


def docker_runtime(info: Mapping | None, why_not: str, root: Path) -> Runtime:
    """Docker's GPU support, from the engine's ``info()`` (None: ``why_not`` it is not running):
    the nvidia runtime, ``--gpus`` (needs nvidia-container-cli or nvidia-ctk, of the NVIDIA
    container toolkit) or a CDI spec for ``--device nvidia.com/gpu=all``."""
    if info is None:
        return Runtime("docker", False, False, f"not running: {why_not}")
    ways = []
    if "nvidia" in (info.get("Runtimes") or {}):
        ways.append("the nvidia runtime (--runtime=nvidia)")
    toolkit = shutil.which("nvidia-container-cli") or shutil.which("nvidia-ctk")
    if toolkit:
        ways.append(f"--gpus ({Path(toolkit).name})")
    specs = cdi_specs(root)
    if specs:
        ways.append("--device nvidia.com/gpu=all (CDI: "
                    + ", ".join(str(spec) for spec in specs) + ")")
    if ways:
        return Runtime("docker", True, True, "; ".join(ways))
    return Runtime("docker", True, False, "no nvidia runtime, no nvidia-container-cli or "
                                          "nvidia-ctk, no CDI spec: install the NVIDIA "
                                          "container toolkit")


def runtimes(nvml: Reading, docker_info: Mapping | None, docker_error: str,
             root: Path) -> tuple[Runtime, ...]:
    """The GPU support of each runtime kernbuild runs images with.

    apptainer ``--nv``, udocker ``--nvidia`` and sif-bwrap bind or copy the host's driver
    libraries (libcuda.so.1, libnvidia-ml.so.1) into the container, so they need them here;
    apptainer ``--nvccli`` leaves that to nvidia-container-cli.
    """
    missing = _missing_libraries(nvml)
    no_libraries = " and ".join(missing) + " not found on this host"
    found = []

    apptainer = locate("apptainer")
    if apptainer is None:
        found.append(Runtime("apptainer", False, False,
                             "neither apptainer nor singularity is on PATH"))
    else:
        ways = [] if missing else ["--nv (binds the host's driver libraries)"]
        if shutil.which("nvidia-container-cli"):
            ways.append("--nvccli (nvidia-container-cli)")
        found.append(Runtime("apptainer", True, bool(ways),
                             "; ".join(ways) or f"--nv: {no_libraries}"))

    if locate("udocker") is None:
        found.append(Runtime("udocker", False, False, "not installed (pip install udocker)"))
    else:
        found.append(Runtime("udocker", True, not missing, f"--nvidia: {no_libraries}" if missing
                             else "--nvidia (copies the host's driver libraries)"))

    if locate("bwrap") is None:
        found.append(Runtime("sif-bwrap", False, False, "bwrap is not on PATH"))
    else:
        found.append(Runtime("sif-bwrap", True, not missing, no_libraries if missing else
                             "binds the host's driver libraries, as apptainer --nv does"))
    return (docker_runtime(docker_info, docker_error, root), *found)


@dataclass(frozen=True)
class HostGpu:
    """Everything known of this host's GPUs: the three driver readings and the runtimes."""

    root: Path
    module: Reading
    nvml: Reading
    smi: Reading
    runtimes: tuple[Runtime, ...]

    @property
    def readings(self) -> tuple[Reading, Reading, Reading]:
        return (self.module, self.nvml, self.smi)

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """The GPUs the driver lists (NVML's list; nvidia-smi's where NVML gave none)."""
        return self.nvml.gpus or self.smi.gpus

    def disagreement(self) -> str:
        """'' when every source that names a driver version names the same one and none
        reported a mismatch; else which versions differ, as "550.54.15 (kernel module) vs
        550.90.07 (NVML, nvidia-smi)", and which source reported a mismatch."""
        by_version: dict[tuple[int, ...], list[Reading]] = {}
        for reading in self.readings:
            if reading.version:
                by_version.setdefault(version_key(reading.version), []).append(reading)
        parts = []
        if len(by_version) > 1:
            parts.append(" vs ".join(
                f"{group[0].version} ({', '.join(r.source for r in group)})"
                for group in by_version.values()))
        parts += [f"{r.source}: {r.error}" for r in self.readings if r.mismatch]
        return "; ".join(parts)

    def problem(self) -> str:
        """'' when a CUDA program can use a GPU here; else the first reason it cannot."""
        if not self.module.version:
            return self.module.error
        if disagreement := self.disagreement():
            return f"driver versions disagree: {disagreement}"
        if self.nvml.error:
            return f"NVML: {self.nvml.error}"
        if not self.nvml.libraries.get(CUDA_LIB):  # every CUDA program needs it
            return f"{CUDA_LIB}, the driver's CUDA library, is not loadable"
        if not self.gpus:
            return "the driver lists no GPUs"
        return ""


def inspect_host(root: Path, docker_info: Mapping | None, docker_error: str = "") -> HostGpu:
    """Read the driver three ways and the runtimes' GPU support. ``docker_info`` is the
    engine's ``info()``, or None with ``docker_error`` saying why there is no engine."""
    nvml = nvml_report()
    return HostGpu(root, module_version(root), nvml, nvidia_smi_report(),
                   runtimes(nvml, docker_info, docker_error, root))


@dataclass(frozen=True)
class ImageFit:
    """Whether one GPU image can run on this host's GPU, and why (or why not)."""

    tag: str
    cuda: str | None
    minimum_driver: str | None
    runnable: bool
    reason: str


def image_fits(images: Mapping[str, str | None], host: HostGpu) -> list[ImageFit]:
    """For each GPU image (tag -> CUDA release): runnable here iff a GPU is usable (visible,
    driver versions agreeing) and the kernel module is at least the CUDA release's minimum
    driver, the test kern-gpu-check makes inside the image."""
    problem, driver = host.problem(), host.module.version
    fits = []
    for tag, cuda in images.items():
        needs = minimum_driver(cuda) if cuda else None
        if cuda is None:
            reason = "kern.lock records no CUDA release for it"
        elif needs is None:
            reason = f"no minimum driver is known for CUDA {cuda}"
        elif problem:
            reason = f"no usable GPU: {problem}"
        elif version_key(driver) < version_key(needs):
            reason = f"driver too old: {driver} < {needs} needed by CUDA {cuda}"
        else:
            fits.append(ImageFit(tag, cuda, needs, True,
                                 f"driver {driver} >= {needs} needed by CUDA {cuda}"))
            continue
        fits.append(ImageFit(tag, cuda, needs, False, reason))
    return fits
