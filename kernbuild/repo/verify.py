"""``kernbuild repo verify``: the served generation checked end to end, as apt checks it.

apt trusts a repository through one chain: the keyring it was given verifies the
signature of ``InRelease`` (or ``Release`` with ``Release.gpg``); Release lists the
SHA256 and size of every index; each index lists the SHA256 and size of every pool
file. A client refuses the first link that does not hold ("Hash Sum mismatch",
"File has unexpected size", "The following signatures were invalid"). This module
walks the same chain for the generation ``current`` points at and reports every
broken link by the name of the file, with what was expected and what was found,
so that a tampered or corrupted file is named before a client trips on it.

It reads one generation directory (resolved once, as build containers do), so a
publish switching ``current`` meanwhile cannot make it mix two generations. It
takes no lock and changes nothing.

Every distribution the generation serves is checked the same way (the rolling
``kern-dev`` and ``kern-N``, each frozen release); a frozen one must also be, byte
for byte, the tree signed at its release (``frozen/<release>``): a released
distribution that changed is named, even if someone re-signed it.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from debian.deb822 import Packages, Release

from kernbuild.errors import KernError
from kernbuild.fsutil import human_size
from kernbuild.runtime.tools import require

if TYPE_CHECKING:
    from kernbuild.repo.apt import AptRepository

#: The forms of an index that publish writes, and how to read each back, in apt's order
#: of preference: the first form Release vouches for is the one read.
_DECOMPRESS = {"Packages.xz": lzma.decompress, "Packages.gz": gzip.decompress,
               "Packages": lambda data: data}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One broken link of the chain: ``path`` (relative to the repository root) is wrong."""

    path: str
    message: str
    expected: str = ""
    actual: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        if self.expected or self.actual:
            text += f" (expected {self.expected or '-'}, found {self.actual or '-'})"
        return text

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "expected": self.expected,
                "actual": self.actual}


@dataclass
class Verification:
    """What :func:`verify` checked of one generation, and every problem it found."""

    distribution: str  # the suite's own (kern-N); every one served is in distributions
    generation: int
    distributions: list[str] = field(default_factory=list)
    indexes: int = 0  # index files whose Release hash was checked
    packages: int = 0  # distinct pool files the indexes list
    size: int = 0  # bytes of those pool files read and hashed
    signatures: bool = False  # InRelease and Release.gpg both verify with the key
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: ``kern-1: 3 indexes, 41 packages, 58 MB verified, signatures good``."""
        counts = (f"{_count(self.indexes, 'index', 'indexes')}, "
                  f"{_count(self.packages, 'package', 'packages')}, {human_size(self.size)}")
        names = ", ".join(self.distributions or [self.distribution])
        if self.ok:
            return f"{names}: {counts} verified, signatures good"
        files = len({p.path for p in self.problems})
        return (f"{names}: generation {self.generation} FAILED verification: "
                f"{_count(len(self.problems), 'problem', 'problems')} in "
                f"{_count(files, 'file', 'files')} ({counts} checked, "
                f"signatures {'good' if self.signatures else 'BAD'})")

    def as_dict(self) -> dict:
        return {"distribution": self.distribution, "distributions": self.distributions,
                "generation": self.generation,
                "ok": self.ok, "indexes": self.indexes, "packages": self.packages,
                "bytes": self.size, "signatures": self.signatures,
                "problems": [p.as_dict() for p in self.problems], "summary": self.summary()}


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def sha256_and_size(path: Path) -> tuple[str, int]:
    """A file's sha256 (hex) and length, read once in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify(repo: "AptRepository") -> Verification:
    """Check the generation ``repo`` serves: keyrings, signatures, index hashes, pool files.

    Raises KernError only when there is nothing to check (never published); every
    problem with what is served is in the result's ``problems``.
    """
    number = repo.current_generation()
    if number is None:
        raise KernError(f"{repo.distribution} has never been published: nothing to verify",
                        "publish it first: kernbuild package")
    result = Verification(repo.distribution, number)
    generation = repo.generations / str(number)
    here = f"generations/{number}"
    if not generation.is_dir():
        result.problems.append(Problem("current", f"points to {here}, which is missing"))
        return result
    trusted = repo.key.export_public(binary=True)
    _check_keyrings(repo, generation, here, trusted, result)
    served = sorted(p.name for p in (generation / "dists").iterdir()) \
        if (generation / "dists").is_dir() else []
    result.distributions = served
    # Every frozen release is always served. The suite's own kern-N appears with its
    # first publish (after a release moved the suite on, the next one has none yet), and
    # a generation published before there were releases serves no rolling one: some
    # distribution must be served, which is the rolling one when none is.
    expected = [*repo.frozen(), *([repo.rolling or repo.distribution] if not served else [])]
    for name in expected:
        if name not in served:
            result.problems.append(Problem(f"{here}/dists/{name}", "missing"))
    signatures = True
    listed: list[tuple[str, bytes]] = []
    for name in served:
        dist = generation / "dists" / name
        since = repo.frozen_since(name) if repo.is_frozen(name) else None
        if since is not None and result.generation >= since:
            # (an older generation lists it as it was before its release froze it)
            _check_frozen(repo.frozen_root / name, dist, f"{here}/dists/{name}", result)
        release = _check_signatures(dist, f"{here}/dists/{name}", trusted, result)
        signatures = signatures and result.signatures
        if release is not None:
            listed += _check_release_hashes(repo, dist, f"{here}/dists/{name}", release,
                                            result)
    result.signatures = signatures and bool(served)
    _check_pool(generation, listed, result)
    return result


def _check_frozen(signed: Path, served: Path, where: str, result: Verification) -> None:
    """A frozen distribution's served tree must be the one signed at its release."""
    from kernbuild.repo.apt import frozen_tree

    kept, found = frozen_tree(signed), frozen_tree(served)
    for name in sorted(set(kept) | set(found)):
        if name not in found:
            result.problems.append(Problem(f"{where}/{name}", "missing from a frozen release"))
        elif name not in kept:
            result.problems.append(Problem(f"{where}/{name}", "added to a frozen release"))
        elif kept[name] != found[name]:
            result.problems.append(Problem(
                f"{where}/{name}", "differs from the frozen release as signed",
                f"sha256 {hashlib.sha256(kept[name]).hexdigest()}",
                f"sha256 {hashlib.sha256(found[name]).hexdigest()}"))


def _check_keyrings(repo: "AptRepository", generation: Path, here: str, trusted: bytes,
                    result: Verification) -> None:
    """The keyrings handed to clients must be the signing key's own: a client given
    another key would trust whatever that key signs."""
    from kernbuild.repo.apt import KEYRING_NAME

    armored = repo.key.export_public(binary=False)
    for directory, where in ((repo.root, ""), (generation, f"{here}/")):
        for suffix, wanted in ((".gpg", trusted), (".asc", armored)):
            path = directory / f"{KEYRING_NAME}{suffix}"
            name = f"{where}{path.name}"
            try:
                found = path.read_bytes()
            except OSError:
                result.problems.append(Problem(name, "missing"))
                continue
            if found != wanted:
                result.problems.append(Problem(
                    name, "is not the signing key's public key",
                    f"the key {repo.key.fingerprint}",
                    f"{len(found)} bytes of something else"))


def _gpgv(keyring: Path, *files: Path) -> tuple[bool, bytes, str]:
    """gpgv, as apt runs it: (verified, the text a clearsigned file signs, why not)."""
    args = [require("gpgv", "verifying the repository's signatures"), "--keyring",
            str(keyring)]
    if len(files) == 1:  # clearsigned: also give back the text it signs
        args += ["--output", "-"]
    done = subprocess.run([*args, *map(str, files)], capture_output=True)
    # gpgv's last word that is not "Signature made ..." / "using ... key" says what failed.
    said = [line.removeprefix("gpgv:").strip()
            for line in done.stderr.decode(errors="replace").splitlines()
            if line.startswith("gpgv:") and "Signature made" not in line
            and "using " not in line]
    return done.returncode == 0, done.stdout, said[-1] if said else f"exit {done.returncode}"


def _check_signatures(dist: Path, where: str, trusted: bytes,
                      result: Verification) -> str | None:
    """Both signatures of Release, and InRelease's text equal to Release; the Release
    text, or None when there is none to read."""
    release_path, inrelease = dist / "Release", dist / "InRelease"
    try:
        release = release_path.read_bytes()
    except OSError:
        result.problems.append(Problem(f"{where}/Release", "missing"))
        return None
    with tempfile.TemporaryDirectory(prefix="kernbuild-verify-") as scratch:
        keyring = Path(scratch, "trusted.gpg")  # gpgv reads a plain exported key as a keyring
        keyring.write_bytes(trusted)
        good = True
        if not inrelease.is_file():
            result.problems.append(Problem(f"{where}/InRelease", "missing"))
            good = False
        else:
            ok, signed, why = _gpgv(keyring, inrelease)
            if not ok:
                result.problems.append(Problem(
                    f"{where}/InRelease", "its signature does not verify with the "
                    "repository's key", "a good signature", why))
                good = False
            elif signed != release:
                result.problems.append(Problem(
                    f"{where}/Release", "differs from the text InRelease signs",
                    f"sha256 {hashlib.sha256(signed).hexdigest()}",
                    f"sha256 {hashlib.sha256(release).hexdigest()}"))
        if not (dist / "Release.gpg").is_file():
            result.problems.append(Problem(f"{where}/Release.gpg", "missing"))
            good = False
        else:
            ok, _, why = _gpgv(keyring, dist / "Release.gpg", release_path)
            if not ok:
                # The detached signature names no content: the file it covers is the suspect.
                result.problems.append(Problem(
                    f"{where}/Release", "does not match its signature Release.gpg",
                    "a good signature", why))
                good = False
    result.signatures = good
    return release.decode(errors="replace")


def _check_release_hashes(repo: "AptRepository", dist: Path, where: str, release: str,
                          result: Verification) -> list[tuple[str, bytes]]:
    """Each index Release lists must have that size and SHA256; every index publish
    writes must be listed. Returns, per architecture, the index to read the pool files
    from: (its name, its text), taken, as apt takes it, from a form Release vouches for."""
    listed = {entry["name"]: entry for entry in Release(release).get("SHA256", [])}
    wanted = [f"{repo.component}/binary-{arch}/{name}"
              for arch in repo.architectures for name in _DECOMPRESS]
    for name in wanted:
        if name not in listed:
            result.problems.append(Problem(f"{where}/{name}", "not listed in Release"))
    good: set[str] = set()
    for name, entry in sorted(listed.items()):
        path = dist / name
        try:
            sha, size = sha256_and_size(path)
        except OSError:
            result.problems.append(Problem(f"{where}/{name}", "listed in Release but missing"))
            continue
        result.indexes += 1
        if size != int(entry["size"]):
            result.problems.append(Problem(f"{where}/{name}", "size differs from Release's",
                                           f"{entry['size']} bytes", f"{size} bytes"))
        elif sha != entry["sha256"]:
            result.problems.append(Problem(f"{where}/{name}", "SHA256 differs from Release's",
                                           entry["sha256"], sha))
        else:
            good.add(name)
    indexes = []
    for arch in repo.architectures:
        binary = f"{repo.component}/binary-{arch}"
        texts: dict[str, bytes] = {}
        for name, decompress in _DECOMPRESS.items():
            if f"{binary}/{name}" in good:
                try:
                    texts[name] = decompress((dist / binary / name).read_bytes())
                except (OSError, EOFError, ValueError, lzma.LZMAError):
                    result.problems.append(Problem(f"{where}/{binary}/{name}",
                                                   "cannot be decompressed"))
        # Forms that each match Release but not each other: publish wrote them wrong.
        if len(set(texts.values())) > 1:
            for name in texts:
                result.problems.append(Problem(f"{where}/{binary}/{name}",
                                               "its forms hold different indexes"))
        trusted = next(iter(texts), None)
        if trusted is not None:
            indexes.append((f"{where}/{binary}/{trusted}", texts[trusted]))
        else:  # no form to trust: still check what the plain one lists, to name more
            try:
                indexes.append((f"{where}/{binary}/Packages",
                                (dist / binary / "Packages").read_bytes()))
            except OSError:
                pass  # reported above as missing
    return indexes


def _check_pool(generation: Path, indexes: list[tuple[str, bytes]], result: Verification) -> None:
    """Every pool file an index lists: present, not truncated, with the listed SHA256.
    A file listed by several indexes (``all`` packages) is read once."""
    seen: dict[tuple[str, str, str], None] = {}
    for where, text in indexes:
        for para in Packages.iter_paragraphs(text.decode(errors="replace"),
                                             use_apt_pkg=False):
            filename = para.get("Filename", "")
            claim = (filename, para.get("Size", ""), para.get("SHA256", ""))
            if claim in seen:
                continue
            seen[claim] = None
            _check_pool_file(generation, where, para, claim, result)
    result.packages = len({claim[0] for claim in seen})


def _check_pool_file(generation: Path, where: str, para,
                     claim: tuple[str, str, str], result: Verification) -> None:
    filename, size_text, sha = claim
    name = para.get("Package", "?")
    parts = PurePosixPath(filename).parts
    # A tampered index could point anywhere: only pool/... is the repository's.
    if not parts or parts[0] != "pool" or ".." in parts or filename.startswith("/"):
        result.problems.append(Problem(where, f"{name}: Filename {filename!r} is not in "
                                              "the pool"))
        return
    if not sha or not size_text.isdigit():
        result.problems.append(Problem(where, f"{filename}: no SHA256 or Size listed"))
        return
    try:
        found_sha, found_size = sha256_and_size(generation / filename)
    except OSError:
        result.problems.append(Problem(filename, f"listed in {where} but missing"))
        return
    result.size += found_size
    if found_size != int(size_text):
        what = "truncated" if found_size < int(size_text) else "longer than listed"
        result.problems.append(Problem(filename, f"{what} (size differs from {where})",
                                       f"{size_text} bytes", f"{found_size} bytes"))
    elif found_sha != sha:
        result.problems.append(Problem(filename, f"SHA256 differs from {where}", sha,
                                       found_sha))
