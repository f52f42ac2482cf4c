"""What the stages produce, as frozen dataclasses, and their JSON form in one place.

A step run by any runner is a :class:`StepResult`; an image build is an
:class:`ImageBuild` holding its :class:`LockEntry` (what ``kern.lock`` records of
the image: its packages, sources, base and, as made, its SIF and sandbox) and
the smoke results of each form. The CLI, the matrix and ``doctor --gpu`` read
these by attribute; :func:`to_json` and :func:`from_json` are the only code that
turns them into JSON and back, so a field added here reaches every output.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StepResult:
    """One command run by a runner (:mod:`kernbuild.runtime`): a smoke step, an image
    check, a workflow step of a matrix cell. ``exit_code`` 124 with ``timed_out``: killed
    at its timeout, as timeout(1) reports it; 125: the runtime could not start it."""

    command: str
    exit_code: int
    output: str
    seconds: float
    timed_out: bool = False
    phase: str = ""  # in a matrix cell: gpu, data, step or assert
    name: str = ""  # in a matrix cell: the step's name

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def named(self, phase: str, name: str) -> "StepResult":
        """This result as the step ``name`` of ``phase`` of a workflow."""
        return dataclasses.replace(self, phase=phase, name=name)


@dataclass(frozen=True)
class GpuCheck:
    """kern-gpu-check's verdict in a GPU image: its exit status (0 usable, 2 no GPU,
    3 driver mismatch, 4 driver too old), its line, and how the engine gave the GPUs."""

    exit_code: int
    output: str
    gpus: str


@dataclass(frozen=True)
class SifRecord:
    """A SIF made of an image: where, its sha256 and size, its architecture, how it was
    made (apptainer, mksquashfs+siftool, or cache) and what ran its smoke steps (the
    real apptainer, or sif-bwrap where none can run)."""

    path: str
    sha256: str
    size: int
    arch: str
    built_with: str
    tested_with: str = ""


@dataclass(frozen=True)
class SandboxRecord:
    """An unpacked tree published for CVMFS: the tree (stored by digest), the name that
    links to it, and whether this publication changed anything."""

    path: str
    name: str
    published: bool


@dataclass(frozen=True)
class LockEntry:
    """What ``kern.lock`` records of one image: exactly what went into it. (Every field
    but the tag has a default only so that an entry of an older kernbuild still reads.)"""

    tag: str
    recipe: str = ""
    recipe_hash: str = ""
    base: str = ""
    base_digest: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # package -> exact version
    sources: dict[str, str] = field(default_factory=dict)  # recipe -> source key
    image: str = ""  # the Docker image id, once built
    size: int = 0
    gpu: bool = False
    cuda: str | None = None  # the CUDA release of a GPU image
    cuda_runtime: str | None = None  # the CUDA runtime package's version in it
    sif: SifRecord | None = None
    sandbox: SandboxRecord | None = None

    @property
    def short_id(self) -> str:
        """The image id as ``docker images`` shows it: 12 hex digits."""
        return self.image.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class ImageBuild:
    """One image made by ``kernbuild image``: its lock entry, and the smoke steps as they
    ran in each form (the Docker image, the SIF's root filesystem, the sandbox), and the
    GPU check of a GPU image."""

    lock: LockEntry
    smoke: tuple[StepResult, ...] = ()
    sif_smoke: tuple[StepResult, ...] = ()
    sandbox_smoke: tuple[StepResult, ...] = ()
    gpu_check: GpuCheck | None = None

    def failures(self) -> list[tuple[str, StepResult]]:
        """(form, result) of every failed smoke step, in every form made."""
        forms = [("docker", self.smoke), ("sif", self.sif_smoke),
                 ("sandbox", self.sandbox_smoke)]
        return [(form, r) for form, results in forms for r in results if not r.ok]


# --- JSON ------------------------------------------------------------------------------

def to_json(value: Any) -> Any:
    """A result (or a list, tuple or dict of them) as JSON-ready data: dataclasses become
    objects of their fields, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value


def from_json(cls: type[T], data: Any) -> T:
    """The result of type ``cls`` that :func:`to_json` made ``data`` from.

    Unknown keys are ignored and missing ones take their defaults, so a file written
    by an older or newer kernbuild still reads; a missing field without a default is
    a TypeError, which the reader turns into its own message."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{name: _convert(hints[name], item) for name, item in data.items()
                  if name in known})


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        return tuple(_convert(typing.get_args(hint)[0], item) for item in value)
    if origin is list:
        return [_convert(typing.get_args(hint)[0], item) for item in value]
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    return value


__all__ = ["GpuCheck", "ImageBuild", "LockEntry", "SandboxRecord", "SifRecord", "StepResult",
           "from_json", "to_json"]
