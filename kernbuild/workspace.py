"""Where kernbuild keeps its state: source cache, build results, the apt repository, keys.

One directory (``.kernbuild`` beside the recipes by default, ``--state`` or
``KERNBUILD_STATE`` to move it) holds everything kernbuild writes, so that
deleting it is a clean slate and CI can cache it whole. Nothing is global.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    """The state directory and the recipes directory of one suite."""

    recipes: Path
    state: Path
    # Source mirrors named by --source-mirror or KERNBUILD_SOURCE_MIRROR, searched first.
    source_mirrors: tuple[Path, ...] = ()

    @property
    def sources(self) -> Path:
        """Content-addressed downloads and their unpacked trees."""
        return self.state / "sources"

    @property
    def builds(self) -> Path:
        """One directory per build key, holding the .debs and a manifest."""
        return self.state / "builds"

    @property
    def repo(self) -> Path:
        """The signed apt repository; ``repo/current`` is what apt reads."""
        return self.state / "repo"

    @property
    def gnupg(self) -> Path:
        """The GPG home holding the repository's signing key."""
        return self.state / "gnupg"

    @property
    def images(self) -> Path:
        """Base image tarballs and image build contexts."""
        return self.state / "images"
