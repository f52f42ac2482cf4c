"""kernbuild's signed apt repository: an append-only pool and atomically switched generations.

Why apt-ftparchive + gpg, and not aptly or reprepro
---------------------------------------------------
1. The repository index is then a pure function of the pool. A publish builds a complete
   new *generation* (Packages, Release, InRelease, Release.gpg) beside the live one and
   switches to it with one atomic rename of a symlink. An interrupted publish leaves the
   previous generation served; there is no tool database that could be left half-updated.
2. Every version in the pool stays listed, so old versions remain installable with
   ``apt-get install pkg=version`` (bookworm's reprepro keeps one version per package).

Layout under ``root`` (``Workspace.repo``)::

    pool/<component>/<prefix>/<source>/<package>_<version>_<arch>.deb   append-only
    generations/<n>/dists/<dist>/{Release,InRelease,Release.gpg}
    generations/<n>/dists/<dist>/<component>/binary-<arch>/Packages{,.gz,.xz}
    generations/<n>/pool -> ../../pool
    generations/<n>/kern-archive-keyring.{gpg,asc}
    frozen/<release>/{Release,InRelease,Release.gpg,<component>/...}   signed once, kept
    current -> generations/<n>                                           what apt reads
    kern-archive-keyring.gpg, kern-archive-keyring.asc                   for signed-by=

Distributions
-------------
A generation serves several distributions, each with its own signed Release:

- ``distribution`` (``kern-N``, the suite's release in progress) and ``rolling``
  (``kern-dev``) are *rolling*: every publish indexes the whole pool into them, so
  builds and images see the newest build of everything;
- every *frozen* release (``kernbuild release``, :meth:`AptRepository.freeze`): its
  index lists exactly the package versions of that release, is written and signed
  once into ``frozen/<release>/`` and copied byte for byte into every later
  generation. Since the pool never loses a file, a frozen distribution stays
  installable, unchanged, for ever; publishing to it again is refused.

Freezing ``kern-N`` in place, rather than naming the frozen one apart from the one
in progress, keeps every image built for release N valid: its sources line names
``kern-N`` before the release as after.

A publish holds the state's ``repo`` lock (:mod:`kernbuild.locks`): one publisher at a
time. Readers take no lock: a generation never changes once it is served, so whoever
resolved ``current`` (a build container mounts that generation, not the link) reads
one consistent index while the next is published; only the oldest beyond
``GENERATIONS_KEPT`` are removed.

``prefix`` is ``source[:4]`` for ``lib*`` sources, else ``source[0]`` (Debian's rule). Pool
files get the canonical ``<package>_<version without epoch>_<arch>.deb`` name, whatever the
input file was called, so "the same file name" means "the same package, version and
architecture". ``current/`` is self-contained: serve it, or bind-mount it, on its own.

A full disk at any step of a publish is one error saying so and which generation is
still served (that one untouched, nothing half-written left); :meth:`AptRepository.verify`
(``kernbuild repo verify``) checks what is served end to end, as apt does.
"""

from __future__ import annotations

import filecmp
import gzip
import lzma
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from debian.deb822 import Packages

from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.fsutil import DiskFull, atomic_copy, atomic_write, disk_space, no_space
from kernbuild.locks import StateLocks
from kernbuild.runtime.tools import require, run_tool

if TYPE_CHECKING:
    from kernbuild.repo.verify import Verification

KEYRING_NAME = "kern-archive-keyring"
GENERATIONS_KEPT = 10
_DEFAULT_UID = "kernbuild archive key <kernbuild@localhost>"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


@dataclass(frozen=True)
class PackageRef:
    """One binary package listed in the repository.

    ``filename`` is the ``Filename:`` field of the Packages index, ``pool/<component>/...``,
    relative to the root of a generation (so ``repo.current / ref.filename`` is the file).
    """

    name: str
    version: str
    architecture: str
    filename: str


def _require(tool: str) -> str:
    return require(tool, "publishing the apt repository")


#: A Unix socket's address holds 107 bytes and a NUL: gpg-agent cannot listen in a home
#: whose longest socket path is longer, and gpg then says only "No agent running".
_SOCKET_PATH_MAX = 107
_LONGEST_SOCKET = "S.gpg-agent.browser"


def _agent_sockets(home: Path) -> None:
    """Make room for gpg-agent's sockets: in ``home`` where their paths fit a socket
    address, else in the directory gnupg keeps for such a home under the user's runtime
    directory (``/run/user/UID/gnupg/d.HASH``, which ``gpgconf --create-socketdir``
    makes, and every gpg of that home then finds). A state directory deep in a CI
    runner's or pytest's temporary tree is such a home."""
    if len(f"{home}/{_LONGEST_SOCKET}") <= _SOCKET_PATH_MAX:
        return
    runtime = Path(f"/run/user/{os.getuid()}")
    if not runtime.is_dir():
        if os.getuid() != 0:
            raise KernError(f"{home}: too long a path for gpg-agent's sockets, and there is "
                            f"no {runtime} to put them in instead",
                            "use a shorter --state, or run in a login session (which makes "
                            f"{runtime})")
        runtime.mkdir(mode=0o700, parents=True)  # what a login session would have made
    _run([_require("gpgconf"), "--homedir", str(home), "--create-socketdir"])


def _run(args: list[str], cwd: Path | None = None, where: Path | None = None) -> bytes:
    """Run ``args`` (never a shell string); its stdout, or a KernError with what it said
    (a full disk is named as ``where``, by default ``cwd``)."""
    return run_tool(args, cwd=cwd, where=where or cwd)


class SigningKey:
    """A GPG key in its own GNUPGHOME; created on first use if none is configured."""

    def __init__(self, gnupg_home: Path, fingerprint: str) -> None:
        self.gnupg_home = gnupg_home
        self.fingerprint = fingerprint

    @classmethod
    def ensure(
        cls,
        gnupg_home: Path,
        uid: str = _DEFAULT_UID,
        fingerprint: str | None = None,
    ) -> "SigningKey":
        """The signing key in ``gnupg_home`` (created 0700 if missing).

        With ``fingerprint``, that secret key must already be in the home. Without it, the
        home's only secret key is reused, or, if there is none, a new ed25519 key with no
        passphrase and no expiry is generated for ``uid``.
        """
        _require("gpg")
        gnupg_home = Path(gnupg_home).absolute()
        gnupg_home.mkdir(parents=True, exist_ok=True)
        gnupg_home.chmod(0o700)
        _agent_sockets(gnupg_home)
        secret = cls._secret_fingerprints(gnupg_home)
        if fingerprint is not None:
            wanted = fingerprint.replace(" ", "").upper().removeprefix("0X")
            if wanted not in secret:
                raise KernError(
                    f"signing key {wanted} has no secret key in {gnupg_home}",
                    hint=f"import it: gpg --homedir {gnupg_home} --import <secret-key.asc>",
                )
            return cls(gnupg_home, wanted)
        if len(secret) > 1:
            raise KernError(
                f"{gnupg_home} holds several secret keys ({', '.join(secret)}); "
                "kernbuild does not know which one signs the repository",
                hint="name one: signing_key: <fingerprint> in recipes/suite.yaml",
            )
        if not secret:
            _run(
                ["gpg", "--homedir", str(gnupg_home), "--batch", "--passphrase", "",
                 "--pinentry-mode", "loopback", "--quick-gen-key", uid, "ed25519", "sign",
                 "never"]
            )
            secret = cls._secret_fingerprints(gnupg_home)
        return cls(gnupg_home, secret[0])

    @staticmethod
    def _secret_fingerprints(gnupg_home: Path) -> list[str]:
        out = _run(["gpg", "--homedir", str(gnupg_home), "--batch", "--with-colons",
                    "--list-secret-keys"]).decode()
        fingerprints, after_sec = [], False
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] == "sec":
                after_sec = True
            elif fields[0] == "fpr" and after_sec:
                fingerprints.append(fields[9])
                after_sec = False
        return fingerprints

    def _gpg(self, *args: str, where: Path | None = None) -> bytes:
        return _run(["gpg", "--homedir", str(self.gnupg_home), "--batch", *args],
                    where=where or self.gnupg_home)

    def export_secret(self) -> bytes:
        """The private key, ASCII-armored (it has no passphrase: CI signs unattended), for
        tools that sign with the suite's key from a keyring of their own (apptainer sign)."""
        return self._gpg("--pinentry-mode", "loopback", "--passphrase", "", "--armor",
                         "--export-secret-keys", self.fingerprint)

    def export_public(self, binary: bool) -> bytes:
        """The public key: binary (for ``signed-by=``, ``gpgv --keyring``) or ASCII-armored."""
        armor = [] if binary else ["--armor"]
        return self._gpg(*armor, "--export-options", "export-minimal", "--export",
                         self.fingerprint)

    def sign(self, release: Path) -> None:
        """Write ``InRelease`` (clearsigned) and ``Release.gpg`` (detached) beside ``release``."""
        common = ["--yes", "--local-user", self.fingerprint, "--digest-algo", "SHA512"]
        self._gpg(*common, "--clearsign", "--output", str(release.with_name("InRelease")),
                  str(release), where=release.parent)
        self._gpg(*common, "--armor", "--detach-sign",
                  "--output", str(release.with_name("Release.gpg")), str(release),
                  where=release.parent)


def frozen_tree(root: Path) -> dict[str, bytes]:
    """Every file of a distribution's tree by its path in it, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


class AptRepository:
    """A signed apt repository of one distribution, published by generations."""

    def __init__(
        self,
        root: Path,
        distribution: str,
        key: SigningKey,
        origin: str = "kernbuild",
        label: str = "kernbuild",
        architectures: tuple[str, ...] = ("amd64",),
        component: str = "main",
        locks: StateLocks | None = None,
        rolling: str | None = None,
    ) -> None:
        for what, value in [("distribution", distribution), ("component", component),
                            *([("distribution", rolling)] if rolling else []),
                            *[("architecture", a) for a in architectures]]:
            if not _NAME_RE.match(value):
                raise KernError(f"invalid apt repository {what} {value!r}",
                                hint="use letters, digits and . + _ - only")
        self.root = Path(root).absolute()
        self.distribution = distribution
        self.rolling = rolling if rolling != distribution else None
        self.key = key
        self.origin = origin
        self.label = label
        self.architectures = tuple(architectures)
        self.component = component
        # The state's locks; a repository on its own keeps its lock file in its root.
        self.locks = locks or StateLocks(self.root, directory=self.root)

    @property
    def current(self) -> Path:
        """The generation apt reads: ``root/current``, a symlink switched atomically."""
        return self.root / "current"

    @property
    def generations(self) -> Path:
        return self.root / "generations"

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def frozen_root(self) -> Path:
        """Where each frozen release's signed dists tree is kept, to be carried into
        every generation unchanged."""
        return self.root / "frozen"

    def frozen(self) -> list[str]:
        """The frozen distributions (released), oldest first."""
        if not self.frozen_root.is_dir():
            return []
        return sorted((p.name for p in self.frozen_root.iterdir()
                       if p.is_dir() and not p.name.startswith(".")), key=_release_order)

    def is_frozen(self, distribution: str | None = None) -> bool:
        return (self.frozen_root / (distribution or self.distribution)).is_dir()

    def frozen_since(self, distribution: str) -> int | None:
        """The first generation that served ``distribution`` frozen; None if none is
        known to (a release killed between its freeze and the next generation: the
        generation served still lists it as it was before the freeze)."""
        try:
            return int((self.frozen_root / f".{distribution}.served").read_text())
        except (OSError, ValueError):
            return None

    def _mark_served(self, distribution: str, generation: int) -> int:
        if self.frozen_since(distribution) is None:
            atomic_write(self.frozen_root / f".{distribution}.served", f"{generation}\n")
        return generation

    def serves_frozen(self, generation: Path, distribution: str) -> bool:
        """Whether ``generation`` serves ``distribution`` exactly as it was frozen."""
        return frozen_tree(self.frozen_root / distribution) == frozen_tree(
            generation / "dists" / distribution)

    def frozen_filenames(self, distribution: str) -> set[str]:
        """The pool files a frozen distribution's index lists."""
        names: set[str] = set()
        for arch in self.architectures:
            index = self.frozen_root / distribution / self.component / f"binary-{arch}" / "Packages"
            with open(index, encoding="utf-8") as fh:
                names |= {p["Filename"] for p in Packages.iter_paragraphs(fh, use_apt_pkg=False)}
        return names

    def distributions(self) -> list[str]:
        """The distributions the served generation holds (none if never published)."""
        if self.current_generation() is None:
            return []
        dists = self.current.resolve() / "dists"
        return sorted((p.name for p in dists.iterdir() if p.is_dir()), key=_release_order)

    def current_generation(self) -> int | None:
        """The number of the served generation, or None if nothing was ever published."""
        try:
            return int(Path(os.readlink(self.current)).name)
        except FileNotFoundError:
            return None

    def sources_line(self, url: str, keyring_path: str) -> str:
        """The ``sources.list`` line a client uses to read this repository at ``url``."""
        return f"deb [signed-by={keyring_path}] {url} {self.distribution} {self.component}"

    # -- reading ---------------------------------------------------------------------------

    def _index_paths(self, generation: Path, distribution: str | None = None) -> list[Path]:
        dist = generation / "dists" / (distribution or self.distribution) / self.component
        return [dist / f"binary-{arch}" / "Packages" for arch in self.architectures]

    def packages(self, distribution: str | None = None) -> list[PackageRef]:
        """Every package the current generation lists in ``distribution`` (default: the
        suite's own), sorted; empty if never published or that distribution not yet."""
        if self.current_generation() is None:
            return []
        generation = self.current.resolve()
        refs: set[PackageRef] = set()
        for index in self._index_paths(generation, distribution):
            if not index.is_file():
                continue
            with open(index, encoding="utf-8") as fh:
                for para in Packages.iter_paragraphs(fh, use_apt_pkg=False):
                    refs.add(PackageRef(para["Package"], para["Version"],
                                        para["Architecture"], para["Filename"]))
        return sorted(refs, key=lambda r: (r.name, r.version, r.architecture, r.filename))

    def has(self, name: str, version: str, architecture: str) -> bool:
        """Whether the current generation lists ``name`` at ``version`` for ``architecture``."""
        return any((r.name, r.version, r.architecture) == (name, version, architecture)
                   for r in self.packages())

    # -- publishing ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The repository to oneself: one publisher at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.locks.hold("repo"):
            yield

    def _pool_path(self, deb: Path) -> str:
        """The pool-relative ``pool/...`` path where ``deb`` belongs, read from its control."""
        proc = subprocess.run(
            ["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Source"],
            capture_output=True,
        )
        if proc.returncode != 0:
            raise KernError(f"{deb} is not a readable Debian package: "
                            f"{proc.stderr.decode(errors='replace').strip()}")
        control = Packages(proc.stdout.decode())
        name, version, arch = control["Package"], control["Version"], control["Architecture"]
        if arch != "all" and arch not in self.architectures:
            raise KernError(
                f"{deb} is built for {arch}, which this repository does not serve "
                f"({', '.join(self.architectures)})",
                hint=f"add {arch} to the repository's architectures",
            )
        source = control.get("Source", name).split("(")[0].strip()
        prefix = source[:4] if source.startswith("lib") else source[0]
        upstream = version.split(":", 1)[-1]
        return f"pool/{self.component}/{prefix}/{source}/{name}_{upstream}_{arch}.deb"

    def verify(self) -> "Verification":
        """The served generation checked end to end (:func:`kernbuild.repo.verify.verify`)."""
        from kernbuild.repo.verify import verify

        return verify(self)

    def _pool_file_corrupt(self, rel: str) -> bool:
        """Whether the served index lists ``rel`` with a SHA256 its pool file lacks."""
        from kernbuild.repo.verify import sha256_and_size

        if self.current_generation() is None:
            return False
        for index in self._index_paths(self.current.resolve(), self._listing()):
            with open(index, encoding="utf-8") as fh:
                for para in Packages.iter_paragraphs(fh, use_apt_pkg=False):
                    if para.get("Filename") == rel:
                        return sha256_and_size(self.root / rel)[0] != para.get("SHA256")
        return False

    def _listing(self) -> str:
        """The rolling distribution that lists the whole pool in the served generation."""
        return self.rolling or self.distribution

    def _listed_filenames(self) -> set[str]:
        return {ref.filename for ref in self.packages(self._listing())}

    def _refuse_frozen(self) -> None:
        if self.is_frozen():
            raise KernError(
                f"{self.distribution} is a frozen release: nothing more is published to it",
                "the suite moves on to its next release: release: N+1 in recipes/suite.yaml "
                "(kernbuild release writes it)")

    def publish(self, debs: list[Path]) -> int:
        """Add ``debs`` to the pool, publish a new signed generation and serve it.

        Returns the generation number. A .deb whose pool file already exists with different
        content is refused (KernError) before anything changes. If every .deb is already
        listed by the current generation with identical content, nothing is done and the
        current generation number is returned.

        A full disk, at whatever step, is a KernError that says so and which generation
        is still served: the served one is never touched, the pool gains only whole
        files, and the half-made generation is removed, so the same publish succeeds
        once space is freed.
        """
        _require("apt-ftparchive")
        _require("gpg")
        _require("dpkg-deb")
        with self._locked():
            self._refuse_frozen()
            served = self.current_generation()
            try:
                with disk_space(self.root):  # what no helper below turned into DiskFull
                    return self._publish(list(map(Path, debs)))
            except DiskFull as full:
                raise self._disk_full(full.where, served) from None

    def _disk_full(self, where: Path, served: int | None) -> DiskFull:
        """The full-disk error of a publish, saying what clients still get."""
        plain = no_space(where)
        still = (f"generation {served} is still served, unchanged" if served is not None
                 else "nothing is served yet")
        return DiskFull(f"{plain.message}: publishing {self.distribution} stopped; {still}",
                        f"free space there (df -h {where}), then run the command again: "
                        "nothing half-written was left to get in its way", where)

    def _publish(self, debs: list[Path]) -> int:
        """:meth:`publish`, with the repository lock held."""
        # 1. Check everything before changing anything.
        planned: dict[str, Path] = {}
        for deb in debs:
            rel = self._pool_path(deb)
            target = self.root / rel
            other = planned.get(rel) or (target if target.exists() else None)
            if other is not None and not filecmp.cmp(deb, other, shallow=False):
                if other == target and self._pool_file_corrupt(rel):
                    raise KernError(
                        f"{rel}: the pool's copy is corrupt (not the file the served "
                        "index lists), so it cannot be compared with the new one",
                        "'kernbuild repo verify' names every such file; restore it, or "
                        "remove it and publish the package again")
                raise KernError(
                    f"{Path(rel).name}: version already published with different "
                    f"content; bump the revision",
                    hint=f"{deb} differs from {other}",
                )
            planned[rel] = deb
        new = {rel: deb for rel, deb in planned.items() if not (self.root / rel).exists()}
        number = self.current_generation()
        if not new and number is not None and set(planned) <= self._listed_filenames() \
                and self.distribution in self.distributions():
            return number

        # 2. The pool only grows; each file appears whole, under its final name, or not
        # (atomic_copy removes its temporary file when the disk fills up).
        for rel, deb in new.items():
            atomic_copy(deb, self.root / rel)
        (self.pool / self.component).mkdir(parents=True, exist_ok=True)
        return self._new_generation()

    def freeze(self, refs: "list[PackageRef] | Callable[[], list[PackageRef]]",
               distribution: str | None = None) -> int:
        """Freeze ``distribution`` (default: the suite's own) as exactly ``refs``: its
        index, signed once into ``frozen/``, is served from the next generation on and
        carried byte for byte into every later one. Returns that generation's number.

        ``refs`` may be a function choosing them, called holding the repository lock:
        what it reads of the repository then stays as it was until the freeze (a
        release chooses the builds its matrix tested, and no publish can slip in).
        Refused (KernError, nothing changed) when the distribution is frozen already or
        a ref is not a file of the pool."""
        dist = distribution or self.distribution
        if not _NAME_RE.match(dist):
            raise KernError(f"invalid apt repository distribution {dist!r}",
                            hint="use letters, digits and . + _ - only")
        _require("apt-ftparchive")
        _require("gpg")
        with self._locked():
            if callable(refs):
                refs = refs()
            if self.is_frozen(dist):
                if self.frozen_filenames(dist) == {r.filename for r in refs}:
                    # frozen as asked by a release that was killed after its freeze:
                    # nothing changes but that it is served, and that release goes on
                    served = self.current_generation()
                    if served is None or not self.serves_frozen(self.current.resolve(), dist):
                        served = self._new_generation()
                    return self._mark_served(dist, served)
                raise KernError(f"{dist} is frozen already: a released distribution never "
                                "changes", "release the next one (release: N+1 in "
                                "recipes/suite.yaml)")
            missing = [r.filename for r in refs if not (self.root / r.filename).is_file()]
            if missing:
                raise KernError(f"cannot freeze {dist}: not in the pool: {', '.join(missing)}",
                                "publish the packages first: kernbuild package")
            served = self.current_generation()
            try:
                with disk_space(self.root):
                    self._freeze(dist, {r.filename for r in refs})
                    return self._mark_served(dist, self._new_generation())
            except DiskFull as full:
                raise self._disk_full(full.where, served) from None

    def _freeze(self, dist: str, filenames: set[str]) -> None:
        """Write and sign ``dist``'s index of ``filenames`` aside, then rename it into
        ``frozen/`` whole: a frozen tree is complete or absent."""
        self.frozen_root.mkdir(exist_ok=True)
        building = self.frozen_root / f".{dist}.tmp"
        shutil.rmtree(building, ignore_errors=True)
        try:
            building.mkdir()
            (building / "pool").symlink_to(Path("..", "..", "pool"))
            paragraphs = [p for p in self._pool_listing(building) if p["Filename"] in filenames]
            self._write_dist(building, dist, paragraphs)
            self.key.sign(building / "dists" / dist / "Release")
            boundary("commit:frozen-distribution")
            (building / "dists" / dist).rename(self.frozen_root / dist)
        finally:
            shutil.rmtree(building, ignore_errors=True)

    def _new_generation(self) -> int:
        """A new generation of every distribution, built aside, then served; its number."""
        # 3. Keys in the root, for clients to fetch.
        keyring = self.key.export_public(binary=True)
        armored = self.key.export_public(binary=False)
        atomic_write(self.root / f"{KEYRING_NAME}.gpg", keyring)
        atomic_write(self.root / f"{KEYRING_NAME}.asc", armored)

        # 4. A new generation, built aside, then switched to.
        self.generations.mkdir(exist_ok=True)
        for stale in self.generations.glob("*.tmp"):
            shutil.rmtree(stale)
        numbers = [int(p.name) for p in self.generations.iterdir() if p.name.isdigit()]
        number = max(numbers, default=0) + 1
        building = self.generations / f"{number}.tmp"
        try:
            building.mkdir()
            (building / "pool").symlink_to(Path("..", "..", "pool"))
            (building / f"{KEYRING_NAME}.gpg").write_bytes(keyring)
            (building / f"{KEYRING_NAME}.asc").write_bytes(armored)
            self._write_indices(building)
            boundary("commit:repo-generation")
            building.rename(self.generations / str(number))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        link = self.root / f".current.tmp-{os.getpid()}"
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(Path("generations", str(number)))
            boundary("commit:repo-current")
            os.replace(link, self.current)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        self._prune(number)
        return number

    def _write_indices(self, generation: Path) -> None:
        """Every distribution of a generation: the rolling ones indexed from the whole
        pool and signed, the frozen ones copied as they were signed at their release."""
        paragraphs = self._pool_listing(generation)
        (generation / "dists").mkdir()
        rolling = [d for d in (self.distribution, self.rolling) if d and not self.is_frozen(d)]
        for dist in rolling:
            self._write_dist(generation, dist, paragraphs)
            self.key.sign(generation / "dists" / dist / "Release")
        for dist in self.frozen():
            shutil.copytree(self.frozen_root / dist, generation / "dists" / dist,
                            symlinks=True)

    def _pool_listing(self, where: Path) -> list:
        """Every pool file's Packages paragraph, by file name (``where/pool`` is the pool)."""
        listing = _run(["apt-ftparchive", "packages", f"pool/{self.component}"],
                       cwd=where).decode()
        return sorted(Packages.iter_paragraphs(listing, use_apt_pkg=False),
                      key=lambda p: p["Filename"])

    def _write_dist(self, generation: Path, distribution: str, paragraphs: list) -> None:
        """Packages (per architecture, with ``all``) of ``paragraphs`` and an unsigned
        Release, in ``generation/dists/<distribution>``."""
        dist = generation / "dists" / distribution
        for arch in self.architectures:
            text = "\n".join(str(p) for p in paragraphs
                             if p["Architecture"] in (arch, "all")).encode()
            binary = dist / self.component / f"binary-{arch}"
            binary.mkdir(parents=True)
            (binary / "Packages").write_bytes(text)
            (binary / "Packages.gz").write_bytes(gzip.compress(text, mtime=0))
            (binary / "Packages.xz").write_bytes(lzma.compress(text, format=lzma.FORMAT_XZ))
        option = "APT::FTPArchive::Release::"
        release = _run(
            ["apt-ftparchive",
             "-o", f"{option}Origin={self.origin}",
             "-o", f"{option}Label={self.label}",
             "-o", f"{option}Suite={distribution}",
             "-o", f"{option}Codename={distribution}",
             "-o", f"{option}Architectures={' '.join(self.architectures)}",
             "-o", f"{option}Components={self.component}",
             "release", f"dists/{distribution}"],
            cwd=generation,
        )
        (dist / "Release").write_bytes(release)

    def _prune(self, current: int) -> None:
        """Keep the newest GENERATIONS_KEPT generations (always including ``current``)."""
        numbers = sorted((int(p.name) for p in self.generations.iterdir() if p.name.isdigit()),
                         reverse=True)
        for old in numbers[GENERATIONS_KEPT:]:
            if old != current:
                shutil.rmtree(self.generations / str(old))


def _release_order(name: str) -> tuple[str, int, str]:
    """``kern-2`` before ``kern-10``; names without a number (``kern-dev``) after."""
    prefix, _, number = name.rpartition("-")
    return (prefix, int(number), "") if number.isdigit() else (name, 1 << 30, name)
