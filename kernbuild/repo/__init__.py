"""The signed apt repository kernbuild publishes its .debs to (see :mod:`kernbuild.repo.apt`)."""

from kernbuild.repo.apt import AptRepository, PackageRef, SigningKey

__all__ = ["AptRepository", "PackageRef", "SigningKey"]
