"""CWL runners: a pipeline's CWL workflow run by cwltool or Toil, in Docker or Apptainer.

A CWL pipeline (``pipeline: cwl:`` in its recipe) names its image in each tool's
``DockerRequirement`` (``dockerPull: kern/pipeline-imaging:1``), and its asserts are
steps of the workflow, so a workflow that completes has checked its science. Four
runners, as the EOSC LOFAR pilot ran its pipelines:

===================  =======  =====================================================
runner               form     how
===================  =======  =====================================================
cwltool              docker   the reference runner, with the Docker engine
cwltool-apptainer    sif      ``cwltool --singularity`` with kernbuild's signed SIF
toil                 docker   ``toil-cwl-runner``, Toil's local batch system
toil-apptainer       sif      ``toil-cwl-runner --singularity``
cwltool-native       packages ``cwltool --no-container``, Debian's, in a chroot of the
                              image's packages (the native target's)
===================  =======  =====================================================

Neither may pull (no registry is reachable, and a pipeline runs what the suite
built): cwltool gets ``--disable-pull``, Toil ``--no-prepull`` and an image that is
already there. For Apptainer, the SIF is linked into ``CWL_SINGULARITY_CACHE`` under
the names cwltool looks for (``kern_s_<name>:<tag>.sif``, and the older
``kern_<name>:<tag>.sif``), and apptainer is the host's or kernbuild's wrapper of
Debian's in a container, first on PATH as ``singularity``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import ClassVar

from kernbuild.errors import KernError
from kernbuild.results import StepResult
from kernbuild.runtime import DEFAULT_TIMEOUT, ImageRef, Runner, RuntimeContext
from kernbuild.runtime.tools import locate, run_step


#: What a CWL cell keeps of its scratch directory: the workflow's outputs (its images,
#: reports, solutions) and the runner's own job logs (Toil's, one file per job).
KEPT_OUTPUTS, KEPT_LOGS = "out", "joblogs"


def sif_names(tag: str) -> list[str]:
    """The file names cwltool (and Toil, which asks cwltool) looks for a dockerPull's SIF
    under: cwl-utils' current one (``_`` -> ``___``, ``/`` -> ``_s_``) and cwltool 3.1's."""
    return [tag.replace("_", "___").replace("/", "_s_") + ".sif",
            tag.replace("/", "_") + ".sif"]


class CwlRunner(Runner):
    """Runs a pipeline's CWL workflow: a subclass says with which program and engine."""

    workflows: ClassVar[str] = "cwl"
    program_name: ClassVar[str]
    apptainer: ClassVar[bool] = False

    def __init__(self, context: RuntimeContext | None = None) -> None:
        self.context = context
        self._apptainer = None

    @classmethod
    def from_context(cls, context: RuntimeContext) -> "CwlRunner":
        return cls(context)

    def program(self) -> str | None:
        """The runner's program: on PATH or beside this Python (``pip install '.[cwl]'``)."""
        return locate(self.program_name)

    def apptainer_runner(self):
        from kernbuild.runtime.apptainer import ApptainerRunner

        if self._apptainer is None:
            self._apptainer = ApptainerRunner.from_context(self.context)
        return self._apptainer

    def unavailable(self) -> str:
        if self.program() is None:
            return (f"{self.program_name} is not installed (pip install '.[cwl]', or "
                    "bash ci/setup-python.sh)")
        if self.apptainer:
            return self.apptainer_runner().unavailable()
        return ""

    def prepare(self, image: ImageRef) -> None:
        """For Apptainer: the apptainer made ready and the SIF's signature checked, then
        the SIF linked into the cache under the names cwltool looks for."""
        if not self.apptainer:
            return
        self.apptainer_runner().prepare(image)
        cache = self.sif_cache()
        cache.mkdir(parents=True, exist_ok=True)
        for name in sif_names(image.tag):
            link = cache / name
            if link.exists() and os.path.samefile(link, image.ref):
                continue
            # Staged, then renamed over the old name: cwltool's and Toil's targets share
            # this cache and may prepare the same SIF at once.
            staged = cache / f".{name}.{os.getpid()}-{threading.get_ident()}"
            staged.unlink(missing_ok=True)
            try:
                os.link(image.ref, staged)  # cwltool hard-links found SIFs: one filesystem
            except OSError:
                shutil.copyfile(image.ref, staged)
            os.replace(staged, link)
            # rename(2) leaves both names when they are links of one file already
            staged.unlink(missing_ok=True)

    def trust(self, key) -> None:
        if self.apptainer:
            self.apptainer_runner().use_key(key)

    def sif_cache(self) -> Path:
        return self.context.cache("cwl") / "sif"

    def run(self, image: ImageRef, command: str, cwd: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        raise KernError(f"the {self.name} target runs CWL workflows, not steps")

    def command(self, workflow: Path, job: Path, cwd: Path) -> list[str]:
        raise NotImplementedError

    def run_workflow(self, image: ImageRef, workflow: Path, job: Path, cwd: Path,
                     timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        """Run ``workflow`` with ``job`` in ``cwd`` (its outputs in ``cwd/out``)."""
        if self.apptainer:
            self.prepare(image)
        for directory in ("out", "tmp", "home"):
            (cwd / directory).mkdir(exist_ok=True)
        return run_step(self.command(workflow, job, cwd), label=f"{self.name} {workflow.name}",
                        timeout=timeout, env=self.environment(cwd), cwd=str(cwd))

    def environment(self, cwd: Path) -> dict[str, str]:
        """The runner's environment: its own HOME and TMPDIR in the cell's directory."""
        env = {**os.environ, "HOME": str(cwd / "home"), "TMPDIR": str(cwd / "tmp"),
               "TOIL_HISTORY": "False",
               # Toil's workers start as bare programs: this venv's first on PATH.
               "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                        os.environ.get("PATH", os.defpath)])}
        if self.apptainer:
            wrapper = Path(self.apptainer_runner().program()).parent
            env["PATH"] = f"{wrapper}{os.pathsep}{env['PATH']}"
            env["CWL_SINGULARITY_CACHE"] = str(self.sif_cache())
        return env


class CwltoolRunner(CwlRunner):
    """cwltool, the CWL reference runner, with the Docker engine."""

    name, form, program_name = "cwltool", "docker", "cwltool"
    engine, runs_with = "docker", "cwltool"

    def command(self, workflow: Path, job: Path, cwd: Path) -> list[str]:
        return [self.program(), "--disable-pull", *(["--singularity"] if self.apptainer else []),
                "--outdir", str(cwd / "out"), "--tmpdir-prefix", f"{cwd / 'tmp'}/",
                str(workflow), str(job)]


class CwltoolApptainerRunner(CwltoolRunner):
    """cwltool --singularity: the workflow's tools run from kernbuild's SIF."""

    name, form, apptainer, engine = "cwltool-apptainer", "sif", True, "apptainer"


class ToilRunner(CwlRunner):
    """Toil's CWL runner on its local batch system, with the Docker engine."""

    name, form, program_name = "toil", "docker", "toil-cwl-runner"
    engine, runs_with = "docker", "toil"
    sbatch_args: tuple[str, ...] = ()

    def on_slurm(self, sbatch_args: list[str]) -> "ToilRunner":
        """Toil with ``--batchSystem slurm``: each CWL step one Slurm job, as the LOFAR
        pilot ran its pipelines on clusters ("Toil + Singularity + Slurm")."""
        clone = copy.copy(self)
        clone.schedules_on_slurm, clone.sbatch_args = True, tuple(sbatch_args)
        return clone

    def environment(self, cwd: Path) -> dict[str, str]:
        env = super().environment(cwd)
        if self.sbatch_args:
            env["TOIL_SLURM_ARGS"] = " ".join(shlex.quote(a) for a in self.sbatch_args)
        return env

    def command(self, workflow: Path, job: Path, cwd: Path) -> list[str]:
        # A job store must not exist yet; --retryCount 0: a failing assert fails once;
        # --writeLogs: every job's own log, kept with the cell's outputs.
        return [self.program(), "--no-prepull", "--retryCount", "0",
                *(["--singularity"] if self.apptainer else []),
                "--jobStore", str(cwd / "jobstore"), "--workDir", str(cwd / "tmp"),
                "--writeLogs", str(cwd / KEPT_LOGS), "--outdir", str(cwd / "out"),
                # On Slurm, jobs' states are polled: every 2 s, not Toil's default 1 min.
                *(["--batchSystem", "slurm", "--statePollingWait", "2"]
                  if self.schedules_on_slurm else []),
                str(workflow), str(job)]


class ToilApptainerRunner(ToilRunner):
    """Toil with Singularity: its tools run from kernbuild's SIF (Toil asks cwltool where)."""

    name, form, apptainer, engine = "toil-apptainer", "sif", True, "apptainer"


#: The CWL runner a native chroot gets beside the image's packages: Debian's own.
DEBIAN_CWLTOOL = "cwltool"


class CwltoolNativeRunner(CwlRunner):
    """``cwltool --no-container`` in a chroot of the image's packages, as a site without
    any container runtime runs a workflow: the tools as the packages installed them.

    cwltool is Debian's, installed into the chroot with the packages (so it runs with
    the chroot's Python); the chroot is the native target's (:mod:`kernbuild.runtime.
    native`), made from the signed repository. It sees only the cell's directory, so the
    recipes directory (the workflow, its tools, the scripts they share) is copied in."""

    name, form, engine, runs_with = "cwltool-native", "packages", "native", "cwltool"
    program_name = "cwltool"

    def __init__(self, context: RuntimeContext | None = None) -> None:
        super().__init__(context)
        self._native = None

    def native(self):
        from kernbuild.runtime.native import NativeRunner

        if self._native is None:
            self._native = NativeRunner.from_context(self.context)
        return self._native

    def unavailable(self) -> str:
        return self.native().unavailable()

    @staticmethod
    def _with_cwltool(image: ImageRef) -> ImageRef:
        return dataclasses.replace(image, ref=f"{image.ref} {DEBIAN_CWLTOOL}")

    def prepare(self, image: ImageRef) -> None:
        self.native().prepare(self._with_cwltool(image))

    def run_workflow(self, image: ImageRef, workflow: Path, job: Path, cwd: Path,
                     timeout: float = DEFAULT_TIMEOUT) -> StepResult:
        recipes = workflow.parent.parent
        shutil.copytree(recipes, cwd / "recipes", symlinks=True)
        for directory in ("out", "tmp", "home"):
            (cwd / directory).mkdir(exist_ok=True)
        inside = cwd / "recipes"
        command = " ".join(shlex.quote(part) for part in [
            "env", f"HOME={cwd / 'home'}", f"TMPDIR={cwd / 'tmp'}", DEBIAN_CWLTOOL,
            "--no-container", "--outdir", str(cwd / "out"),
            "--tmpdir-prefix", f"{cwd / 'tmp'}/",
            str(inside / workflow.relative_to(recipes)), str(inside / job.relative_to(recipes))])
        return self.native().run(self._with_cwltool(image), command, cwd, timeout)
