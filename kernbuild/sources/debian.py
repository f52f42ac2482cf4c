"""``debian``: a Debian source package, of which kernbuild uses the upstream tarballs.

The ``.dsc`` of ``source.version`` is verified against the recipe's ``sha256``;
every file it lists is then verified against the ``.dsc``'s own
Checksums-Sha256. The tree is the upstream (orig) tarball; kernbuild renders
its own ``debian/``. Where the mirror lacks the ``.dsc``, the suite's Sources
index, vouched for by its signed InRelease, lists the same files and sums.
"""

from __future__ import annotations

import lzma
import os
import re
import subprocess
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.recipe.schema import SHA256
from kernbuild.sources.extract import extract_archive
from kernbuild.sources.http import NotFound, Unreachable
from kernbuild.sources.kind import Fetched, SourceKind, pinned_sha256, recipe_mismatch_hint

DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What vouches for Debian's indexes, as for apt (Debian's debian-archive-keyring).
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_MAX_INDEX = 16 << 20  # bytes of an InRelease file: Debian's are about 150 kB

# Archive areas of a Debian mirror, in the order they are tried: almost every
# source is in main, and a 404 there is cheap; nvidia-cuda-toolkit is in non-free.
_DEBIAN_AREAS = ("main", "contrib", "non-free", "non-free-firmware")
# A name in a Checksums-Sha256 list: it becomes part of a pool URL, so a plain file name.
_DSC_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~_-]*$")


class Debian(SourceKind):
    """A source package from the Debian mirror ``cache.mirror``."""

    def key(self, recipe: Recipe) -> str:
        return pinned_sha256(recipe)

    def probe(self, recipe: Recipe) -> str:
        name = _dsc_name(recipe)
        try:
            return self._pool_url(recipe, name)
        except NotFound as missing:  # as fetch does: the signed index, then the tarball
            listed = self._signed_index_files(recipe, name, pinned_sha256(recipe), missing)
            upstream, _ = _upstream_tarballs(recipe.source.ref, list(listed), name)
            return self._pool_url(recipe, upstream)

    def fetch(self, recipe: Recipe) -> Fetched:
        cache, src = self.cache, recipe.source.ref
        if not recipe.source.version:
            raise KernError(f"{recipe.path}: a debian source needs 'version'",
                            "the Debian source version, such as version: 8.4+ds-1")
        sha = pinned_sha256(recipe)
        if cache._cached_blob(sha) is None and (tree := cache._cached_tree(sha)):
            return sha, tree, ()  # fetched through the signed index before
        dsc_name = _dsc_name(recipe)
        try:
            dsc = cache._cached_blob(sha) or self._download_pool(
                recipe, dsc_name, sha, expected_from=str(recipe.path),
                hint=recipe_mismatch_hint(recipe))
            listed, verified_by = _dsc_files(dsc, dsc_name, recipe), dsc_name
            files: tuple[Path, ...] = (dsc,)
        except NotFound as missing:
            # Some mirrors and proxies serve the tarballs but not the .dsc: the archive's
            # signed index lists the same files with their sums, as apt trusts it.
            listed = self._signed_index_files(recipe, dsc_name, sha, missing)
            verified_by, files = f"the signed Sources index of {self._suite(recipe)}", ()
        upstream, components = _upstream_tarballs(src, list(listed), dsc_name)
        # Only the upstream tarballs: kernbuild renders its own debian/.
        blobs = {name: cache._cached_blob(listed[name]) or self._download_pool(
            recipe, name, listed[name],
            expected_from=f"{verified_by}, which matches the sha256 in {recipe.path}",
            hint=(f"{verified_by} is genuine, so the mirror served a corrupt or tampered "
                  f"{name}; try again or use another mirror"))
            for name in [upstream, *(n for _, n in components)]}

        def unpack(tmp: Path) -> Path:
            tree = extract_archive(blobs[upstream], tmp / "orig", label=upstream)
            for component, name in components:  # dpkg-source puts orig-<c> into <c>/
                part = extract_archive(blobs[name], tmp / f"component-{component}", label=name)
                target = tree / component
                if target.is_symlink() or (target.exists() and any(target.iterdir())):
                    raise KernError(f"{name} would replace {component}/ of {upstream}",
                                    "this is not a well-formed Debian source package")
                if target.exists():
                    target.rmdir()  # an empty placeholder, as upstreams leave for submodules
                os.rename(part, target)
            return tree

        tree = cache._tree(sha, unpack)
        return sha, tree, (*files, *blobs.values())

    def _suite(self, recipe: Recipe) -> str:
        return recipe.source.suite or self.cache.distribution

    def _signed_index_files(self, recipe: Recipe, dsc_name: str, sha: str,
                            missing: KernError) -> dict[str, str]:
        """The files of the recipe's source package, {name: sha256}, from the Sources
        index of its suite, which InRelease (checked with gpgv against Debian's archive
        keyring, as apt does) vouches for. The recipe's pin must be the .dsc's sum there.
        """
        from debian.deb822 import Release, Sources

        cache = self.cache
        suite, src, version = self._suite(recipe), recipe.source.ref, recipe.source.version
        url = f"{cache.mirror}/dists/{suite}/InRelease"
        try:
            signed = cache._read(url, recipe, _MAX_INDEX)
        except Unreachable as exc:
            raise KernError(f"{missing.message}; nor can its suite's signed index be read: "
                            f"{exc.message}", missing.hint) from None
        release = Release(self._gpgv(signed, url))
        hashes = {entry["name"]: entry["sha256"] for entry in release.get("SHA256") or ()}
        for area in _DEBIAN_AREAS:
            name = f"{area}/source/Sources.xz"
            if name not in hashes:
                continue
            index = cache._cached_blob(hashes[name]) or cache._download(
                f"{cache.mirror}/dists/{suite}/{name}", hashes[name], recipe,
                label=f"{suite} {name}", expected_from=f"{url} (signed)",
                hint="the mirror served a Sources index that its signed InRelease does "
                     "not list; try again or use another mirror")
            with lzma.open(index, "rt", encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            # Find the package's paragraphs with one search over the text: parsing all
            # 40,000 paragraphs of main with python-debian takes seconds.
            for match in re.finditer(rf"^Package: {re.escape(src)}\n", text, re.M):
                end = text.find("\n\n", match.start())
                for entry in Sources.iter_paragraphs(
                        text[match.start():end if end >= 0 else len(text)], use_apt_pkg=False):
                    if entry.get("Package") == src and entry.get("Version") == version:
                        files = _checked_file_list(entry.get("Checksums-Sha256"),
                                                   f"{suite}'s Sources entry of {src}")
                        if files.get(dsc_name) != sha:
                            raise KernError(
                                f"sha256 mismatch for {dsc_name}\n"
                                f"  expected: {sha} (from {recipe.path})\n"
                                f"  signed:   {files.get(dsc_name)} (from {url})",
                                recipe_mismatch_hint(recipe))
                        return files
        raise KernError(f"{src} {version} is not in {suite}'s signed source index ({url})",
                        f"check 'debian', 'version' and 'suite' in {recipe.path} "
                        f"(https://tracker.debian.org/pkg/{src})")

    def _gpgv(self, signed: bytes, url: str) -> str:
        """The text ``signed`` vouches for, if Debian's archive key signed it."""
        keyring = self.cache.keyring
        try:
            result = subprocess.run(["gpgv", "--keyring", str(keyring), "--output", "-",
                                     "-"], input=signed, capture_output=True, check=False,
                                    timeout=60)
        except FileNotFoundError:
            raise KernError("verifying Debian's signed index needs gpgv",
                            "apt-get install gpgv debian-archive-keyring") from None
        if result.returncode != 0:
            detail = (result.stderr.decode(errors="replace").strip().splitlines()
                      or ["gpgv failed"])[-1]
            raise KernError(f"{url} is not signed by a key in {keyring}: {detail}",
                            "the mirror is not Debian's, or the keyring is out of date "
                            "(apt-get install debian-archive-keyring)")
        return result.stdout.decode("utf-8", errors="replace")

    def _pool_urls(self, recipe: Recipe, name: str) -> list[str]:
        """Where the mirror's pool may have ``name`` of the recipe's source package."""
        src = recipe.source.ref
        prefix = src[:4] if src.startswith("lib") else src[0]
        return [f"{self.cache.mirror}/pool/{area}/{prefix}/{src}/{name}"
                for area in _DEBIAN_AREAS]

    def _pool_url(self, recipe: Recipe, name: str) -> str:
        """The URL the mirror's pool has ``name`` of the recipe's source package at."""
        for url in self._pool_urls(recipe, name):
            try:
                self.cache._head(url, recipe)
                return url
            except NotFound:
                continue
        raise NotFound(f"{name} is not on the mirror {self.cache.mirror}")

    def _download_pool(self, recipe: Recipe, name: str, sha: str, *,
                       expected_from: str, hint: str) -> Path:
        """Download ``name`` of the recipe's source package from the mirror's pool."""
        tried = []
        for url in self._pool_urls(recipe, name):
            tried.append(url)
            try:
                return self.cache._download(url, sha, recipe, label=name,
                                            expected_from=expected_from, hint=hint)
            except NotFound:
                continue
        raise NotFound(
            f"{name} is not on the mirror {self.cache.mirror} (tried {', '.join(tried)})",
            f"mirrors keep only current versions: check 'debian' and 'version' in "
            f"{recipe.path} (https://tracker.debian.org/pkg/{recipe.source.ref}), or use "
            f"https://snapshot.debian.org/archive/debian/<date>/ as the suite's mirror")


def _dsc_name(recipe: Recipe) -> str:
    """The ``.dsc``'s file name: the pool's names never carry the epoch (1:2.3-1 -> 2.3-1)."""
    return f"{recipe.source.ref}_{(recipe.source.version or '').split(':', 1)[-1]}.dsc"


def _dsc_files(dsc: Path, dsc_name: str, recipe: Recipe) -> dict[str, str]:
    """{name: sha256} of the files a verified .dsc lists."""
    from debian.deb822 import Dsc

    # python-debian parses leniently: junk gives None, a dict or short entries.
    entries = Dsc(dsc.read_text(encoding="utf-8", errors="replace")).get("Checksums-Sha256")
    if not isinstance(entries, list) or not entries:
        raise KernError(f"{dsc_name} lists no files in Checksums-Sha256",
                        f"check 'debian' and 'version' in {recipe.path}")
    return _checked_file_list(entries, dsc_name)


def _checked_file_list(entries: object, where: str) -> dict[str, str]:
    """Checksums-Sha256 entries as {name: sha256}; verified, but their names still
    become URL paths, so they must be plain file names."""
    files: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else ():
        name, file_sha = entry.get("name") or "", (entry.get("sha256") or "").lower()
        if not _DSC_FILE_NAME.match(name) or ".." in name or not SHA256.match(file_sha):
            raise KernError(f"{where} has a malformed Checksums-Sha256 entry "
                            f"{' '.join(entry.values())!r}",
                            "this is not a well-formed Debian source package")
        files[name] = file_sha
    if not files:
        raise KernError(f"{where} lists no files in Checksums-Sha256",
                        "this is not a well-formed Debian source package")
    return files


def _upstream_tarballs(src: str, names: list[str], dsc_name: str
                       ) -> tuple[str, list[tuple[str, str]]]:
    """The upstream tarball of a .dsc's files, and its (component, name) tarballs."""
    prefix = re.escape(src) + r"_[^_/]+"
    orig = [n for n in names if re.fullmatch(prefix + r"\.orig\.tar\.[A-Za-z0-9]+", n)]
    components = [(m.group(1), n) for n in names if (m := re.fullmatch(
        prefix + r"\.orig-([A-Za-z0-9][A-Za-z0-9-]*)\.tar\.[A-Za-z0-9]+", n))]
    # A native package ("3.0 (native)") has one tarball and no orig.
    native = [n for n in names if re.fullmatch(prefix + r"\.tar\.[A-Za-z0-9]+", n)
              and ".debian.tar." not in n]
    upstream = orig or native
    if not upstream:
        raise KernError(f"{dsc_name} lists no upstream tarball",
                        "expected <source>_<version>.orig.tar.* among its files")
    return upstream[0], sorted(components)
