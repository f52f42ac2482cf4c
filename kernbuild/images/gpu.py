"""GPU images: the NVIDIA driver's side stays on the host.

A GPU image carries the CUDA runtime (libcudart, from Debian's non-free archive
or NVIDIA's repository) and the tools built against it, never the driver's
user-space libraries (libcuda, libnvidia-ml and the rest): those must match the
host's kernel module, so the container runtime injects the host's own
(apptainer --nv, the NVIDIA container toolkit behind docker --gpus, udocker
--nvidia). This module knows those libraries by package and by file name, keeps
them out of packages' dependencies and out of images, and binds a host's copies
into a root filesystem the way apptainer --nv does.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


# Debian's packages of the NVIDIA driver's user-space libraries that a CUDA build's
# shared objects can link against (dpkg-shlibdeps would otherwise make them Depends).
DRIVER_PACKAGES = ("libcuda1", "libnvidia-ml1", "libnvidia-ptxjitcompiler1", "libcudadebugger1",
                   "libnvcuvid1", "libnvidia-encode1", "libnvidia-opticalflow1",
                   "libnvidia-cfg1", "libnvidia-allocator1", "libnvoptix1")
# Any package of the driver, by name, including the virtual libcuda.so.1 and the
# tesla and legacy driver flavours.
DRIVER_PACKAGE = re.compile(r"^(libcuda1|libcuda\.so\.1|libcudadebugger\d*|libnvcuvid\d*"
                            r"|libnvoptix\d*|libnvidia-(?!.*-dev$).+|libgl1-nvidia-.+"
                            r"|nvidia-.*driver.*)$")
# The driver's libraries by file name: the container runtime injects these from the
# host (apptainer --nv, the NVIDIA container toolkit, udocker --nvidia), matching the
# host's kernel module; a copy in an image would be the wrong version on every other host.
DRIVER_LIBRARY = re.compile(r"^(libcuda|libcudadebugger|libnvcuvid|libnvoptix|libnvidia-[a-z0-9-]+"
                            r"|lib(GLX|EGL|GLESv1_CM|GLESv2)_nvidia)\.so(\.[0-9.]+)?$")


def driver_dependencies(depends: str) -> list[str]:
    """The driver packages a Depends field names, alternatives included."""
    from kernbuild.recipe.schema import relation_names

    return sorted({name for name in relation_names(depends) if DRIVER_PACKAGE.match(name)}) \
        if depends.strip() else []


def baked_in(paths: list[str]) -> list[str]:
    """Those of ``paths`` (files in an image) that are driver libraries. Link-time stubs
    (``.../stubs/libcuda.so``, from CUDA's -dev packages) are not: nothing loads them."""
    return sorted(p for p in paths if DRIVER_LIBRARY.match(Path(p).name)
                  and "/stubs/" not in p)


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


# --- checks of a built Docker image ----------------------------------------------------

# Every file name a driver library can have; baked_in() has the last word.
FIND_DRIVER_FILES = (r"find / -xdev \( -type f -o -type l \) \( -name 'libcuda*.so*' "
                      r"-o -name 'libnv*.so*' -o -name 'lib*_nvidia.so*' \)")


def refuse_driver_libraries(client, tag: str, plan) -> str:
    """Check the built GPU image ``tag``: no driver library baked in, and the CUDA
    runtime of the release the plan promises. Returns the runtime package's version.

    A failing image is removed (nothing half-made stays tagged) and the error names
    each file with the package that brought it.
    """
    from kernbuild.errors import KernError

    runtime = plan.cuda.packages[0]
    # Every line ends in a newline: the engine may drop an unfinished last line of a log.
    script = (f"{FIND_DRIVER_FILES} -print; echo '--'; "
              f"dpkg-query -W -f '${{Version}}\\n' {runtime}")
    output = client.containers.run(tag, ["sh", "-c", script], remove=True).decode()
    listing, _, version = output.partition("--\n")
    found = baked_in(listing.split())
    problem = hint = ""
    if found:
        owners = client.containers.run(tag, ["sh", "-c", 'dpkg -S "$@" 2>&1 || true', "-",
                                             *found], remove=True).decode().strip()
        problem = (f"{tag} holds the NVIDIA driver's libraries, which the container runtime "
                   f"must inject from the host:\n{owners}")
        hint = ("a package of the image depends on the driver: drop that dependency, or "
                "build the tool's gpu variant, which leaves the driver to the host")
    elif not version.strip().startswith(plan.cuda.version + "."):
        problem = (f"{tag} got {runtime} {version.strip() or '(not installed)'}, not the "
                   f"CUDA {plan.cuda.version} runtime the suite promises")
        hint = "set gpu.cuda (and gpu.runtime) in recipes/suite.yaml to what the archive has"
    if problem:
        client.images.remove(tag, force=True)
        raise KernError(problem, hint)
    return version.strip()


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


def check_gpu(client, tag: str) -> dict:
    """``kern-gpu-check`` in a container of ``tag``, given the host's GPUs where the
    engine can: its exit status (0 OK, 2 no GPU, 3 mismatch, 4 driver too old) and line."""
    from kernbuild.images.docker import smoke_image
    from kernbuild.images.plan import GPU_CHECK

    options = docker_gpu_options(client)
    [result] = smoke_image(client, tag, (GPU_CHECK,), **options)
    how = ("the nvidia runtime" if "runtime" in options else
           "none: the engine has no NVIDIA runtime, toolkit or CDI spec" if not options else
           "CDI nvidia.com/gpu=all" if options["device_requests"][0].driver == "cdi" else
           "--gpus all")
    return {"exit_code": result.exit_code, "output": result.output.strip(), "gpus": how}
