"""Building packages: environments (base and build images) and the package builder.

:func:`open_builder` wires the parts together for one suite: the Docker engine,
the build environment, the source cache and the signed repository. It is
also where a command takes charge of its state directory's containers
(:func:`claim_containers`): those it starts are labelled and stopped with it,
those a killed command left are reaped.
"""

from __future__ import annotations

from pathlib import Path

from kernbuild.build.environment import BuildEnvironment
from kernbuild.build.package import BuildResult, PackageBuilder, Report
from kernbuild.locks import StateLocks
from kernbuild.recipe.model import Suite
from kernbuild.workspace import Workspace


def open_repository(workspace: Workspace, suite: Suite, locks: StateLocks | None = None):
    """The suite's signed apt repository, with its key made on first use."""
    from kernbuild.repo import AptRepository, SigningKey

    locks = locks or workspace.locks()
    uid = f"{suite.settings.name} archive key <kernbuild@localhost>"
    if suite.settings.signing_key or _has_secret_key(workspace.gnupg):
        key = SigningKey.ensure(workspace.gnupg, uid=uid, fingerprint=suite.settings.signing_key)
    else:
        with locks.hold("repo"):  # two first runs at once must not make two keys
            key = SigningKey.ensure(workspace.gnupg, uid=uid)
    return AptRepository(workspace.repo, suite.settings.repo_distribution, key,
                         origin=suite.settings.name, label=suite.settings.name, locks=locks,
                         rolling=suite.settings.rolling_distribution)


def _has_secret_key(gnupg: Path) -> bool:
    """Whether the GPG home holds a secret key already (GnuPG 2.1+ keeps one file each)."""
    return any((gnupg / "private-keys-v1.d").glob("*.key"))


def claim_containers(workspace: Workspace, client, say=lambda _: None) -> list[str]:
    """Make this command's containers ``workspace``'s own (labelled, stopped when it
    ends) and reap those that killed commands on it left; the reaped ids."""
    from kernbuild.runtime.docker import GUARD, reap

    GUARD.install(workspace.state)
    return reap(client, workspace.state, say)


def with_variant(suite: Suite, names: list[str], variant: str | None) -> tuple[Suite, list[str]]:
    """The suite and names to build: ``names`` as they are, or with ``variant`` each
    recipe's variant, added to the suite as a recipe of its own."""
    names = list(names)
    if variant:
        for index, name in enumerate(names):
            suite, derived = suite.with_variant(name, variant)
            names[index] = derived.name
    return suite, names


def debianize(workspace: Workspace, suite: Suite, name: str, output: Path,
              debian_only: bool = False) -> Path:
    """``kernbuild debianize``: the recipe's source tree (fetched and verified) with its
    rendered debian/ in ``output``, which must be new or empty; with ``debian_only``
    just debian/, without the source. Returns what was written."""
    import shutil

    from kernbuild import debian
    from kernbuild.errors import KernError
    from kernbuild.sources import SourceCache

    recipe = suite.get(name)
    if output.exists() and any(output.iterdir()):
        raise KernError(f"{output} exists and is not empty", "choose a new directory")
    tree = None
    if not debian_only:
        tree = SourceCache.for_workspace(workspace, suite.settings).fetch(recipe).tree
        shutil.copytree(tree, output, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(output / "debian", ignore_errors=True)
    debian.write(debian.render(recipe, suite.settings, tree), output)
    return output / "debian" if debian_only else output


def open_builder(workspace: Workspace, suite: Suite, jobs: int = 1,
                 report: Report = lambda *_: None,
                 say=lambda _: None) -> PackageBuilder:
    """A :class:`PackageBuilder` for ``suite``, making the build images if they are missing."""
    from kernbuild import engine
    from kernbuild.build import environment
    from kernbuild.build.downloads import download_cache
    from kernbuild.sources import SourceCache

    client = engine.connect()
    claim_containers(workspace, client, say)
    locks = workspace.locks(say)
    with locks.hold("environment"):  # a second command waits, then finds the images made
        env = environment.ensure(client, suite.settings, workspace.images, say,
                                 downloads=download_cache(workspace.state))
    return PackageBuilder(
        suite=suite, workspace=workspace, environment=env,
        sources=SourceCache.for_workspace(workspace, suite.settings),
        repo=open_repository(workspace, suite, locks), connect=engine.connect, jobs=jobs,
        report=report, locks=locks)


__all__ = ["BuildEnvironment", "BuildResult", "PackageBuilder", "claim_containers", "debianize",
           "open_builder", "open_repository", "with_variant"]
