"""One distribution of a Debian mirror, as ``kernbuild new`` needs it.

The Packages indexes say which binary packages exist (and at which version), the
Sources indexes describe source packages, and the distribution's own dh-python
package holds the table of PyPI names dh_python3 uses
(``/usr/share/dh-python/dist/cpython3_fallback``). The indexes are cached under
``<state>/index`` for a day and written atomically: the archive changes daily, a
recipe is written once, and an interrupted run leaves no half-written cache file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import re
import tarfile
import time
import zlib
from pathlib import Path

from debian.deb822 import Deb822
from packaging.utils import canonicalize_name

from kernbuild.errors import KernError
from kernbuild.fsutil import atomic_write
from kernbuild.recipe.new.web import NotFound, Web, tar_read

_AREAS = ("main", "contrib", "non-free")
_ARCHITECTURE = "amd64"
_INDEX_MAX_AGE = 24 * 3600  # seconds: the archive changes daily, a recipe is written once


class Archive:
    """One distribution of a Debian mirror: its indexes, cached under
    ``<cache>/<mirror>/<distribution>/`` and fetched again when a day old."""

    def __init__(self, web: Web, mirror: str, distribution: str, cache: Path) -> None:
        self.web = web
        self.mirror = mirror
        self.distribution = distribution
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", mirror.split("://", 1)[-1]).strip("_")
        self.cache = cache / slug / distribution

    def _index(self, relative: str, required: bool) -> bytes | None:
        """The decompressed ``dists/<distribution>/<relative>`` (an .xz index); None
        when an optional one (contrib, non-free) is not on the mirror."""
        path = self.cache / relative
        if path.is_file() and time.time() - path.stat().st_mtime < _INDEX_MAX_AGE:
            return lzma.decompress(path.read_bytes())
        url = f"{self.mirror}/dists/{self.distribution}/{relative}"
        try:
            data = self.web.read(url)
        except NotFound:
            if required:
                raise KernError(f"{self.mirror} has no distribution {self.distribution!r} "
                                f"({url} not found)",
                                "name a Debian codename or suite: trixie, sid, unstable, "
                                "...") from None
            return None
        try:
            text = lzma.decompress(data)  # a damaged download is not kept for a day
        except lzma.LZMAError as exc:
            raise KernError(f"{url} is damaged: {exc}", "try again, or use another mirror") \
                from None
        atomic_write(path, data)
        return text

    def _areas(self, index: str) -> list[bytes]:
        found = [self._index(f"{area}/{index}", required=area == "main") for area in _AREAS]
        return [text for text in found if text is not None]

    @functools.cached_property
    def _binaries(self) -> tuple[dict[str, str | None], dict[str, str]]:
        """({package: version, or None for a name only provided}, dh-python's stanza)."""
        packages: dict[str, str | None] = {}
        dh_python: dict[str, str] = {}
        for text in self._areas(f"binary-{_ARCHITECTURE}/Packages.xz"):
            current = ""
            for match in re.finditer(rb"^(Package|Version|Provides|Filename|SHA256): (.*)$",
                                     text, re.MULTILINE):
                key, value = match.group(1).decode(), match.group(2).decode("utf-8", "replace")
                if key == "Package":
                    current = value
                    packages.setdefault(current, None)
                elif key == "Version":
                    packages[current] = value
                elif key == "Provides":
                    for provided in value.split(","):
                        if provided.split():
                            packages.setdefault(provided.split()[0], None)
                if current == "dh-python":
                    dh_python[key] = value
        return packages, dh_python

    @property
    def packages(self) -> dict[str, str | None]:
        """Every binary package name of the distribution (amd64 and all), provided ones too."""
        return self._binaries[0]

    @functools.cached_property
    def python_names(self) -> dict[str, str]:
        """dh-python's table of PyPI names (canonical) to Debian dependencies, from the
        distribution's own dh-python: the names dh_python3 itself would write."""
        stanza = self._binaries[1]
        if "Filename" not in stanza or "SHA256" not in stanza:
            raise KernError(f"{self.distribution} on {self.mirror} has no dh-python package",
                            "kernbuild reads dh-python's table of PyPI names from it; "
                            "check the suite's distribution and mirror")
        path = self.cache / f"cpython3_fallback-{stanza['SHA256'][:16]}"
        if not path.is_file():
            deb = self.web.read(f"{self.mirror}/{stanza['Filename']}")
            if hashlib.sha256(deb).hexdigest() != stanza["SHA256"]:
                raise KernError(f"{self.mirror}/{stanza['Filename']} does not match the "
                                "sha256 in the Packages index", "try again, or use another "
                                                                "mirror")
            atomic_write(path, _deb_file(deb, "usr/share/dh-python/dist/cpython3_fallback"))
        table: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, dependency = line.strip().partition(" ")
            if name and not name.startswith("#"):
                table.setdefault(canonicalize_name(name), dependency.strip())
        return table

    def sources(self, name: str) -> list[Deb822]:
        """Every entry of source package ``name`` in the distribution's Sources indexes."""
        pattern = rb"^Package: " + re.escape(name.encode()) + rb"\n.*?(?=\n\n|\Z)"
        for text in self._areas("source/Sources.xz"):
            found = [Deb822(m.group(0).decode("utf-8", "replace"))
                     for m in re.finditer(pattern, text, re.MULTILINE | re.DOTALL)]
            if found:
                return found
        return []

    def pool_file(self, directory: str, name: str, sha256: str) -> bytes:
        """A file of the pool, checked against the sha256 its index gives.

        Raises:
            NotFound: the mirror does not serve it (a mirror being updated, or one
                that keeps only some files).
        """
        url = f"{self.mirror}/{directory}/{name}"
        data = self.web.read(url)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise KernError(f"sha256 mismatch for {url}\n  the index says: {sha256}\n"
                            f"  downloaded:     {hashlib.sha256(data).hexdigest()}",
                            "try again, or use another mirror")
        return data


def _deb_file(deb: bytes, path: str) -> bytes:
    """One file of a .deb's data tarball. A .deb is an ar archive: "!<arch>\\n", then
    members, each a 60-byte header (name, ..., size at 48:58) and data padded to even."""
    offset = 8 if deb.startswith(b"!<arch>\n") else len(deb)
    while offset + 60 <= len(deb):
        name = deb[offset:offset + 16].decode("ascii", "replace").strip().rstrip("/")
        size = int(deb[offset + 48:offset + 58].decode("ascii", "replace").strip() or 0)
        body = deb[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    for member in tar.getmembers():
                        if member.isfile() and member.name.removeprefix("./") == path:
                            return tar_read(tar, member)
            except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
                raise KernError(f"cannot read dh-python's package: {exc}",
                                "try again, or use another mirror") from None
            break
        offset += 60 + size + size % 2
    raise KernError(f"dh-python's package has no /{path}",
                    "kernbuild reads dh-python's table of PyPI names from it")
