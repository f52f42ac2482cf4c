"""Where kernbuild keeps its state: source cache, build results, the apt repository, keys.

One directory (``.kernbuild`` beside the recipes by default, ``--state`` or
``KERNBUILD_STATE`` to move it) holds everything kernbuild writes, so that
deleting it is a clean slate and CI can cache it whole. Nothing is global.
Commands that share it take the locks of :meth:`Workspace.locks` (under
``locks/``) on what they change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kernbuild.locks import wait_from_env

if TYPE_CHECKING:
    from kernbuild.locks import StateLocks


@dataclass(frozen=True)
class Workspace:
    """The state directory and the recipes directory of one suite."""

    recipes: Path
    state: Path
    # Source mirrors named by --source-mirror or KERNBUILD_SOURCE_MIRROR, searched first.
    source_mirrors: tuple[Path, ...] = ()
    # How long a command waits for a lock another one holds: None without limit, 0 not
    # at all (--no-wait); KERNBUILD_LOCK_WAIT's seconds unless a command option says.
    lock_wait: float | None = field(default_factory=wait_from_env)

    def locks(self, say: Callable[[str], None] | None = None) -> "StateLocks":
        """The state directory's locks, waiting as ``lock_wait`` says; ``say`` prints the
        line saying what a command waits for (default: standard error)."""
        from kernbuild.locks import StateLocks

        return StateLocks(self.state, wait=self.lock_wait, say=say)

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
