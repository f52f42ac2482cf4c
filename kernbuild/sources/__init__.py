"""Fetch, verify and cache the upstream source of a recipe.

A recipe names its source in one of five ways (``recipe.source.kind``), each a
module here: :mod:`.pypi`, :mod:`.debian`, :mod:`.url`, :mod:`.git` and
:mod:`.path` (plus :mod:`.none`, a metapackage's empty tree). The cache
(:mod:`.cache`) does what all kinds share: the content-addressed store, source
mirrors, downloads and the dispatch to the kinds; :mod:`.extract` unpacks
archives safely and within :class:`~.extract.ArchiveLimits`, :mod:`.http` opens
URLs and retries their faults within :class:`~.http.NetLimits`, and
:mod:`.treehash` hashes trees.

A new kind goes in a module of its own: a :class:`~.kind.SourceKind` subclass,
registered by one line in :data:`.cache.KINDS`; the recipe schema
(``SOURCE_KINDS`` and ``SOURCE`` in :mod:`kernbuild.recipe.schema`) must accept it.
"""

from kernbuild.sources.cache import FetchedSource, SourceCache
from kernbuild.sources.debian import DEFAULT_MIRROR
from kernbuild.sources.extract import ArchiveLimits, extract_archive
from kernbuild.sources.http import DEFAULT_TIMEOUT, USER_AGENT, NetLimits
from kernbuild.sources.kind import SourceLocation
from kernbuild.sources.pypi import DEFAULT_PYPI
from kernbuild.sources.treehash import file_sha256, tree_hash

__all__ = ["SourceCache", "FetchedSource", "SourceLocation", "extract_archive", "tree_hash",
           "file_sha256", "DEFAULT_PYPI", "DEFAULT_TIMEOUT", "DEFAULT_MIRROR", "USER_AGENT",
           "NetLimits", "ArchiveLimits"]
