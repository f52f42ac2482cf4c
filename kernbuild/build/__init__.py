"""Building packages: environments (base and build images) and the package builder.

:func:`open_builder` wires the parts together for one suite: the Docker engine,
the build environment, the source cache and the signed repository.
"""

from __future__ import annotations

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


__all__ = ["BuildEnvironment", "BuildResult", "PackageBuilder", "open_builder",
           "open_repository"]
