"""The checks of a built GPU image: no driver inside, and whether this host can run it.

A GPU image carries the CUDA runtime (libcudart, from Debian's non-free archive
or NVIDIA's repository) and the tools built against it, never the driver's
user-space libraries (:mod:`kernbuild.cuda` knows them): those must match the
host's kernel module, so the container runtime injects the host's own.
"""

from __future__ import annotations

import shlex

from kernbuild.cuda import FIND_DRIVER_FILES, baked_in
from kernbuild.errors import KernError
from kernbuild.images.plan import GPU_CHECK, ImagePlan
from kernbuild.results import GpuCheck
from kernbuild.runtime import ImageRef
from kernbuild.runtime.docker import DockerRunner, describe_gpu_options

CHECK_TIMEOUT = 300  # seconds: a find over the image, and dpkg -S of what it found


def refuse_driver_libraries(client, tag: str, plan: ImagePlan) -> str:
    """Check the built GPU image ``tag``: no driver library baked in, and the CUDA
    runtime of the release the plan promises. Returns the runtime package's version.

    A failing image is removed (nothing half-made stays tagged) and the error names
    each file with the package that brought it.
    """
    runner = DockerRunner(lambda: client, labels={"kernbuild": "check"})
    runtime = plan.cuda.packages[0]
    # Every line ends in a newline: the engine may drop an unfinished last line of a log.
    script = (f"{FIND_DRIVER_FILES} -print; echo '--'; "
              f"dpkg-query -W -f '${{Version}}\\n' {runtime}")
    result = runner.run(ImageRef(tag), script, timeout=CHECK_TIMEOUT)
    listing, _, version = result.output.partition("--\n")
    found = baked_in(listing.split())
    problem = hint = ""
    if found:
        owners = runner.run(ImageRef(tag), "dpkg -S " + " ".join(map(shlex.quote, found))
                            + " 2>&1 || true", timeout=CHECK_TIMEOUT)
        problem = (f"{tag} holds the NVIDIA driver's libraries, which the container runtime "
                   f"must inject from the host:\n{owners.output.strip()}")
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


def check_gpu(client, tag: str) -> GpuCheck:
    """``kern-gpu-check`` in a container of ``tag``, given the host's GPUs where the
    engine can: its exit status (0 OK, 2 no GPU, 3 mismatch, 4 driver too old) and line."""
    runner = DockerRunner(lambda: client, labels={"kernbuild": "check"}).with_gpu()
    result = runner.run(ImageRef(tag), GPU_CHECK, timeout=CHECK_TIMEOUT)
    return GpuCheck(result.exit_code, result.output.strip(),
                    describe_gpu_options(runner.gpu_options(client)))
