"""The runtime layer: every command kernbuild runs in an image or a root filesystem.

A :class:`Runner` runs one command at a time in one form of an image (a Docker
image, a SIF, a root filesystem, a list of packages) and answers with a
:class:`~kernbuild.results.StepResult`; the smoke tests of ``kernbuild image``,
the GPU check and every matrix cell go through one. Programs on the host are
found and run by :mod:`kernbuild.runtime.tools`.

Where things go: a new runtime (a container engine, a workflow runner) is one
module here with one :class:`Runner` subclass, named in :data:`RUNNERS`; the
matrix offers it as a target by that name, ``doctor`` reports its tool.

=============  =======  ==========================================================
runner         form     what it runs
=============  =======  ==========================================================
docker         docker   a fresh container of the image per step (Docker engine)
udocker        docker   the image without a daemon: udocker in mode R1 (runc)
apptainer      sif      ``apptainer exec`` of the SIF
sif-bwrap      sif      the SIF's root filesystem under bubblewrap, as apptainer would
native         packages the image's packages installed by mmdebstrap into a chroot
cwltool, toil  docker   a CWL pipeline's workflow, by the CWL runner, in Docker
...-apptainer  sif      ... with apptainer and the SIF (:mod:`kernbuild.runtime.cwl`)
cwltool-native packages ... with no container, in the native target's chroot
=============  =======  ==========================================================

The first five run a pipeline's own steps one by one (``workflows = "steps"``); the
CWL runners run a CWL pipeline's whole workflow (``workflows = "cwl"``).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

from kernbuild.results import StepResult

if TYPE_CHECKING:
    from kernbuild.recipe.settings import SuiteSettings

__all__ = ["RUNNERS", "ImageRef", "Runner", "RuntimeContext", "StepResult",
           "engine_and_runner", "make_runner", "runner_class"]

#: Where each runner lives ("module:class"), in the order the matrix grid shows them.
#: Imported only when made, so a command that runs nothing loads none of them.
RUNNERS: dict[str, str] = {
    "docker": "kernbuild.runtime.docker:DockerRunner",
    "udocker": "kernbuild.runtime.udocker:UdockerRunner",
    "apptainer": "kernbuild.runtime.apptainer:ApptainerRunner",
    "sif-bwrap": "kernbuild.runtime.bwrap:SifBwrapRunner",
    "native": "kernbuild.runtime.native:NativeRunner",
    "cwltool": "kernbuild.runtime.cwl:CwltoolRunner",
    "cwltool-apptainer": "kernbuild.runtime.cwl:CwltoolApptainerRunner",
    "toil": "kernbuild.runtime.cwl:ToilRunner",
    "toil-apptainer": "kernbuild.runtime.cwl:ToilApptainerRunner",
    "cwltool-native": "kernbuild.runtime.cwl:CwltoolNativeRunner",
}

#: A step with no timeout of its own (a recipe's smoke step) is killed after this long.
DEFAULT_TIMEOUT = 1800


@dataclass(frozen=True)
class ImageRef:
    """What a runner runs: ``ref`` (a Docker image id or tag, a SIF path, a root
    filesystem, or ``"name=version ..."`` packages) and ``digest``, the identity of its
    content (image id, SIF sha256), under which a runner caches what it prepares."""

    ref: str
    digest: str = ""
    tag: str = ""  # the image's name, such as kern/losoto:1 (what a CWL dockerPull says)
    #: Debian's archive areas beyond main that its packages need (pulsar-presto's PGPLOT
    #: is in non-free): what a runner installing the packages itself (native) adds.
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeContext:
    """What runners may need of the suite and its state directory; one per command."""

    connect: Callable  # () -> a Docker client (engine.connect)
    state: Path  # the state directory: runners keep their caches under state/matrix
    repo_root: Path  # the signed repository (native)
    settings: "SuiteSettings"  # the suite's Debian release, mirror, base image
    #: (SIF sha256, key fingerprint) pairs whose signature apptainer verified in this
    #: command: every target that runs SIFs (apptainer, sif-bwrap, cwltool's and Toil's)
    #: checks each SIF, and the second one to ask need not start apptainer again.
    verified: set[tuple[str, str]] = field(default_factory=set, compare=False)

    @classmethod
    def for_workspace(cls, workspace, settings: "SuiteSettings") -> "RuntimeContext":
        """The context of a suite's state directory, talking to the Docker engine."""
        from kernbuild import engine

        return cls(engine.connect, workspace.state, workspace.repo, settings)

    def cache(self, runner: str) -> Path:
        """The directory where ``runner`` keeps what it prepares between runs."""
        return self.state / "matrix" / runner


class Runner:
    """Runs commands in one form of an image.

    Subclasses set ``name`` and ``form``, implement :meth:`run`, and say in
    :meth:`unavailable` why they cannot run here. :meth:`prepare` does the slow,
    once-per-image work (unpacking a SIF, loading an image into udocker, making a
    chroot) before the steps, so that parallel steps never wait on each other for it.
    """

    name: ClassVar[str]
    form: ClassVar[str]  # docker, sif, rootfs or packages
    workflows: ClassVar[str] = "steps"  # what it runs: a pipeline's steps, or "cwl"
    #: A matrix cell's target and runner, as a release manager names them: the container
    #: runtime (docker, apptainer, ...; "" means the runner's name) and the program that
    #: runs the workflow (kernbuild's own step runner, cwltool, toil).
    engine: ClassVar[str] = ""
    runs_with: ClassVar[str] = "kernbuild"
    gpu: bool = False  # hand the steps the host's GPUs, as the runtime's GPU option does
    #: True for a runner that submits its own jobs to Slurm (Toil's --batchSystem slurm):
    #: the Slurm executor runs its cells here, not each as one job.
    schedules_on_slurm: bool = False

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "Runner":
        return cls()

    def with_gpu(self) -> "Runner":
        """This runner for GPU images: the same one, giving steps the host's GPUs."""
        clone = copy.copy(self)
        clone.gpu = True
        return clone

    def on_slurm(self, sbatch_args: list[str]) -> "Runner | None":
        """This runner submitting its own jobs to Slurm, with these extra sbatch
        arguments, or None if it cannot (the Slurm executor then makes each of its
        cells one Slurm job)."""
        return None

    def unavailable(self) -> str:
        """Why this runner cannot run here, or "" if it can."""
        return ""

    def prepare(self, image: ImageRef) -> None:
        """Make ``image`` ready to run steps in (a KernError if it cannot be)."""

    def trust(self, key) -> None:
        """Run only SIFs that ``key`` (the suite's signing key) signed: a runner of SIFs
        that can check signatures verifies each in :meth:`prepare`."""

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        """Run ``sh -c command`` in ``image``; ``cwd``, a directory of this machine, is
        bound in and is where the command starts (None: a scratch /tmp). Killed after
        ``timeout`` seconds (exit 124, ``timed_out``)."""
        raise NotImplementedError


def runner_class(name: str) -> type[Runner]:
    """The class of runner ``name`` of :data:`RUNNERS` (a KernError if there is none)."""
    from kernbuild.errors import KernError

    if name not in RUNNERS:
        raise KernError(f"unknown target {name!r}", f"use one of {', '.join(RUNNERS)}")
    module, cls = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def engine_and_runner(name: str) -> tuple[str, str]:
    """(container runtime, workflow runner) of target ``name``: ("apptainer", "toil") for
    toil-apptainer, ("docker", "kernbuild") for docker; a name no longer known, as an
    old results database may hold, is its own runtime."""
    try:
        cls = runner_class(name)
    except Exception:  # noqa: BLE001 - an unknown name or a runner that no longer imports
        return name, "?"
    return cls.engine or cls.name, cls.runs_with


def make_runner(name: str, context: RuntimeContext) -> Runner:
    """The runner ``name`` of :data:`RUNNERS`, made for ``context``."""
    return runner_class(name).from_context(context)
