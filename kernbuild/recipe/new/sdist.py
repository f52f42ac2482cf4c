"""An sdist, downloaded and read without unpacking it: what it says about the project.

Only the files that describe the project are read (PKG-INFO, pyproject.toml,
setup.py, egg-info, license files), and only the names of the rest: enough to
tell how it builds, whether it compiles code and which modules it installs,
without running anything of upstream's.
"""

from __future__ import annotations

import functools
import lzma
import re
import tarfile
import tempfile
import tomllib
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

from kernbuild.errors import KernError
from kernbuild.recipe.new.web import MAX_TEXT, Web, tar_read

# Build backends that compile: such an sdist builds architecture-dependent packages.
_COMPILING_BACKENDS = ("mesonpy", "scikit_build_core", "maturin", "setuptools_rust")
_COMPILED_SOURCE = re.compile(r"\.(c|cc|cpp|cxx|pyx|f|f90|rs)$", re.IGNORECASE)
_NOT_INSTALLED = frozenset({"test", "tests", "doc", "docs", "example", "examples",
                            "benchmark", "benchmarks", "bench"})
_NOT_MODULES = _NOT_INSTALLED | {"setup", "conftest", "noxfile", "fabfile", "versioneer",
                                 "build", "dist", "src", "scripts", "bin"}
_LICENSE_FILE = re.compile(r"(licen[cs]e|copying|copyright|notice)[^/]*", re.IGNORECASE)
_SDIST_METADATA = re.compile(r"PKG-INFO|pyproject\.toml|setup\.py"
                             r"|(src/)?[^/]+\.egg-info/(top_level|requires)\.txt")


@dataclass(frozen=True)
class Sdist:
    """What an sdist holds, read without unpacking it.

    Attributes:
        names: every file's path below the archive's top directory.
        texts: the files that describe the project (PKG-INFO, pyproject.toml,
            setup.py, egg-info, license files), by the same paths.
    """

    names: tuple[str, ...]
    texts: dict[str, str]

    @classmethod
    def read(cls, archive: IO[bytes], label: str) -> Sdist:
        try:
            if zipfile.is_zipfile(archive):
                archive.seek(0)
                with zipfile.ZipFile(archive) as zf:
                    return cls._of({i.filename: (i.file_size, functools.partial(zf.read, i))
                                    for i in zf.infolist() if not i.is_dir()})
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:*") as tar:
                return cls._of({m.name: (m.size, functools.partial(tar_read, tar, m))
                                for m in tar.getmembers() if m.isfile()})
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, lzma.LZMAError,
                zlib.error) as exc:
            raise KernError(f"cannot read the sdist {label}: {exc}",
                            "it is not an archive kernbuild can read (tar or zip)") from None

    @classmethod
    def _of(cls, files: dict[str, tuple[int, Any]]) -> Sdist:
        paths = {name.removeprefix("./"): name for name in files}
        tops = {p.split("/", 1)[0] for p in paths}
        if len(tops) == 1 and all("/" in p for p in paths):  # the usual name-version/
            paths = {p.split("/", 1)[1]: full for p, full in paths.items()}
        texts = {}
        for path, full in paths.items():
            size, read = files[full]
            if size <= MAX_TEXT and (_SDIST_METADATA.fullmatch(path)
                                     or _LICENSE_FILE.fullmatch(path)):
                texts[path] = read().decode("utf-8", "replace")
        return cls(tuple(sorted(paths)), texts)

    def egg_info(self, name: str) -> str:
        """``<project>.egg-info/<name>`` (top level or under src/), or ""."""
        found = sorted((p for p in self.texts if p.endswith(f".egg-info/{name}")), key=len)
        return self.texts[found[0]] if found else ""

    @property
    def license_texts(self) -> list[tuple[str, str]]:
        """(path, text) of the license files at the top."""
        return [(p, t) for p, t in sorted(self.texts.items()) if _LICENSE_FILE.fullmatch(p)]


def fetch_sdist(web: Web, url: str, release: dict[str, Any]) -> tuple[str, Sdist]:
    """Download the sdist into a temporary file: its sha256 and the files that describe it."""
    label = str(release.get("filename") or url)
    with tempfile.TemporaryFile() as archive:
        sha = web.download(url, archive)
        published = (release.get("digests") or {}).get("sha256")
        if published and published != sha:
            raise KernError(f"sha256 mismatch for {url}\n  PyPI publishes: {published}\n"
                            f"  downloaded:     {sha}",
                            "try again; if it persists, something between here and PyPI "
                            "changes the file")
        archive.seek(0)
        return sha, Sdist.read(archive, label)


def read_pyproject(sdist: Sdist, comments: dict[str, list[str]]) -> tuple[dict, str]:
    """pyproject.toml as data and the PEP 517 backend; says in a comment how it builds."""
    text = sdist.texts.get("pyproject.toml")
    pyproject: dict = {}
    if text is not None:
        try:
            pyproject = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            comments["build.system"].append(f"TODO: pyproject.toml does not parse ({exc})")
    backend = str((pyproject.get("build-system") or {}).get("build-backend") or "")
    has_setup = "setup.py" in sdist.texts
    if text is None:
        how = "setup.py, no pyproject.toml: a setuptools build"
    elif not has_setup:
        how = (f"pyproject.toml, no setup.py: a PEP 517 build with "
               f"{backend or 'setuptools'} (pybuild-plugin-pyproject)")
    else:
        how = f"setup.py and pyproject.toml ({backend or 'setuptools'})"
    comments["build.system"].append(how)
    return pyproject, backend


def compiled_code(sdist: Sdist, backend: str) -> str:
    """What says the sdist compiles code (an extension module), or ""."""
    sources = [n for n in sdist.names if _COMPILED_SOURCE.search(n)
               and not _NOT_INSTALLED & set(n.lower().split("/")[:-1])]
    if sources:
        return ", ".join(sources[:3]) + (", ..." if len(sources) > 3 else "")
    if backend.startswith(_COMPILING_BACKENDS):
        return f"built with {backend}"
    # Not setup.py's ext_modules: many build an extension only if its sources are there.
    return ""


def import_names(sdist: Sdist, project: str) -> list[str]:
    """The modules the package installs, for the smoke step: egg-info's top_level.txt,
    else the packages (directories with __init__.py) and modules at the top or in src/."""
    names = sdist.egg_info("top_level.txt").split()
    if not names:
        for path in sdist.names:
            parts = path.split("/")[1:] if path.startswith("src/") else path.split("/")
            if len(parts) == 2 and parts[1] == "__init__.py":
                names.append(parts[0])
            elif len(parts) == 1 and parts[0].endswith(".py"):
                names.append(parts[0][:-3])
    names = sorted({n for n in names if n.isidentifier() and not n.startswith("_")
                    and n.lower() not in _NOT_MODULES})
    guess = re.sub(r"[^A-Za-z0-9]+", "_", project).lower()
    # The project's own name first: the one a reader expects.
    return sorted(names, key=lambda n: n.lower() != guess) or [guess]
