"""Building packages: environments (base and build images) and the package builder.

:func:`open_builder` wires the parts together for one suite: the Docker engine,
the build environment, the source cache and the signed repository.
"""

from __future__ import annotations

from pathlib import Path

from kernbuild.build.environment import BuildEnvironment
from kernbuild.build.package import BuildResult, PackageBuilder, Report
from kernbuild.recipe.model import Suite
from kernbuild.workspace import Workspace


def open_repository(workspace: Workspace, suite: Suite):
    """The suite's signed apt repository, with its key made on first use."""
    from kernbuild.repo import AptRepository, SigningKey

    key = SigningKey.ensure(workspace.gnupg,
                            uid=f"{suite.settings.name} archive key <kernbuild@localhost>",
                            fingerprint=suite.settings.signing_key)
    return AptRepository(workspace.repo, suite.settings.repo_distribution, key,
                         origin=suite.settings.name, label=suite.settings.name)


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
    from kernbuild.sources import SourceCache

    client = engine.connect()
    env = environment.ensure(client, suite.settings, workspace.images, say)
    return PackageBuilder(
        suite=suite, workspace=workspace, environment=env,
        sources=SourceCache.for_workspace(workspace, suite.settings),
        repo=open_repository(workspace, suite), connect=engine.connect, jobs=jobs,
        report=report)


__all__ = ["BuildEnvironment", "BuildResult", "PackageBuilder", "debianize", "open_builder",
           "open_repository", "with_variant"]
