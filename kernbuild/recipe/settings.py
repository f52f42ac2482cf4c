"""The suite's settings (``recipes/suite.yaml``): what every recipe of the suite is built for.

They are read and checked as recipes are (:func:`kernbuild.recipe.load.load_settings`)
but kept out of the recipe model: one recipe file builds for any suite release, and
the settings come in only where a Debian version, a changelog date or a build key
needs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The rolling distribution's suffix: ``kern-dev`` lists every version ever published.
ROLLING = "dev"


@dataclass(frozen=True)
class GpuSettings:
    """Where GPU images' CUDA runtime comes from (``gpu:`` in ``recipes/suite.yaml``).

    By default Debian's own CUDA from its non-free archive; with ``repository`` and
    ``keyring``, NVIDIA's repository instead (whose package names differ: set
    ``runtime`` to them, such as ``cuda-cudart-12-4``).
    """

    cuda: str = "12.4"  # Debian trixie's nvidia-cuda-toolkit
    runtime: tuple[str, ...] = ("libcudart12",)
    components: tuple[str, ...] = ("contrib", "non-free")
    repository: str | None = None
    keyring: str | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "GpuSettings":
        data = dict(data or {})
        for key in ("runtime", "components"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Calendar:
    """The release cadence (``calendar:``): KERN-N is due ``first`` + (N-1) * ``months``.

    KERN released every six months; the dates are derived, never stored per release,
    so the scheduled CI pipeline and ``kernbuild release --dry-run`` agree on them.
    """

    first: str = "2026-11-01"
    months: int = 6


@dataclass(frozen=True)
class SuiteSettings:
    """Settings shared by every recipe of a suite (``recipes/suite.yaml``)."""

    name: str = "kern"
    release: int = 1
    date: str = "2026-11-01"
    maintainer: str = "KERN packaging team <kern@kernsuite.invalid>"
    distribution: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    base: str = "trixie"
    signing_key: str | None = None
    gpu: GpuSettings = field(default_factory=GpuSettings)
    # Where sources unreachable from here are found; not a build input (see build_inputs).
    source_mirrors: tuple[str, ...] = ()
    # The release's policy; none of it is a build input (see build_inputs).
    calendar: Calendar = field(default_factory=Calendar)
    dropped: dict[str, str] = field(default_factory=dict)  # recipe -> why it left
    accepted_failures: dict[str, str] = field(default_factory=dict)  # cell -> why shipped

    @classmethod
    def from_dict(cls, data: dict | None) -> "SuiteSettings":
        data = dict(data or {})
        data["gpu"] = GpuSettings.from_dict(data.get("gpu"))
        data["calendar"] = Calendar(**(data.get("calendar") or {}))
        if "source_mirrors" in data:
            data["source_mirrors"] = tuple(data["source_mirrors"])
        return cls(**data)

    def build_inputs(self) -> dict[str, Any]:
        """The settings that decide what a build produces, for build keys.

        Source mirrors only say where verified sources are found, so moving one
        rebuilds nothing.
        """
        inputs = asdict(self)
        for policy in ("source_mirrors", "calendar", "dropped", "accepted_failures"):
            del inputs[policy]
        return inputs

    @property
    def repo_distribution(self) -> str:
        """The distribution of the release in progress, such as ``kern-1``: rolling (every
        publish indexes the newest builds into it) until ``kernbuild release`` freezes it."""
        return f"{self.name}-{self.release}"

    @property
    def rolling_distribution(self) -> str:
        """``kern-dev``: every version ever published, across releases, for development."""
        return f"{self.name}-{ROLLING}"

    @property
    def base_is_registry_image(self) -> bool:
        """``ubuntu:24.04`` is pulled from a registry; ``trixie`` is made with mmdebstrap."""
        return ":" in self.base or "/" in self.base

    @property
    def base_tag(self) -> str:
        """The base image every build and image starts from: ``kern/base:trixie`` (made
        with mmdebstrap), or the registry image itself."""
        return self.base if self.base_is_registry_image else f"kern/base:{self.base}"
