"""A recipe drafted from Debian: ``kernbuild new NAME --debian SOURCE [VERSION]``.

The Sources entry gives the version, the .dsc's sha256, the build relations and
the binary packages (its Package-List); the source package's debian/ directory
gives their relations, descriptions and files (debian/control, the *.install
files) and the licence (a DEP-5 debian/copyright). Relations are kept only where
the suite's distribution or the suite provides them (see :mod:`.resolve`).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import defaultdict
from typing import Any

from debian.deb822 import Deb822
from debian.debian_support import Version as DebianVersion

from kernbuild.errors import KernError
from kernbuild.recipe.new.archive import Archive
from kernbuild.recipe.new.draft import Draft, Package
from kernbuild.recipe.new.licenses import FROM_DEP5, UNKNOWN_LICENSE, license_named
from kernbuild.recipe.new.resolve import Resolver, explicit_build_depends
from kernbuild.recipe.new.web import MAX_TEXT, NotFound, tar_read
from kernbuild.recipe.schema import relation_names


def from_debian(archive: Archive, name: str, source: str, version: str | None,
                resolver: Resolver) -> Draft:
    entries = archive.sources(source)
    if not entries:
        raise KernError(f"{archive.distribution} has no source package {source!r} "
                        f"({archive.mirror})",
                        f"check the name at https://tracker.debian.org/pkg/{source}; for a "
                        "backport, name the distribution that has it (sid)")
    if version is None:
        entry = max(entries, key=lambda e: DebianVersion(e["Version"]))
    else:
        entry = next((e for e in entries if e["Version"] == version), None)
        if entry is None:
            raise KernError(f"{archive.distribution} has {source} "
                            f"{', '.join(e['Version'] for e in entries)}, not {version}",
                            "mirrors keep only current versions; older ones are on "
                            "https://snapshot.debian.org")
    version = entry["Version"]
    directory = entry.get("Directory", "")
    # The index gives every file's sha256, the .dsc's too: what the recipe pins.
    files = {line.split()[2]: line.split()[0] for line in
             entry.get("Checksums-Sha256", "").splitlines() if len(line.split()) == 3}
    dsc_sha = next((sha for file, sha in files.items() if file.endswith(".dsc")), "")
    if not dsc_sha or not directory:
        raise KernError(f"the Sources entry of {source} {version} names no .dsc",
                        "the mirror's index is damaged; try again or use another mirror")
    comments: dict[str, list[str]] = defaultdict(list)
    debian_dir = _debian_dir(archive, directory, files, comments)
    control = {p.get("Package", ""): p for p in Deb822.iter_paragraphs(
        debian_dir.get("control", ""))}
    epoch, _, rest = version.rpartition(":")
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    system = _guess_build_system(entry)
    if system == "make":
        comments["build.system"].append("TODO: Build-Depends name no build system: check it "
                                        "(autotools if the source has a configure script)")
    listed = _package_list(entry)
    own = {package for package, _, _ in listed}
    build_depends, missing = resolver.debian_all(
        explicit_build_depends(_build_depends(entry), system), own, comments["build.depends"])
    packages = _debian_packages(listed, control, debian_dir, resolver, missing, comments)
    main = next((control[p] for p, _, _ in listed if p in control and (
        p == source or p.startswith("python3-"))), control.get(listed[0][0], {}))
    summary, description = _synopsis(main), _extended_description(main)
    if debian_dir and not summary:
        comments["summary"].append(f"TODO: say what it is; debian/control has no "
                                   f"description of {listed[0][0]}")
    license_, copyright_, why = (_debian_license(debian_dir.get("copyright", ""))
                                 if debian_dir else (UNKNOWN_LICENSE, None, "set the SPDX id"))
    if why:
        comments["license"].append(f"TODO: {why}")
    smoke = tuple(f'python3 -c "import {p.removeprefix("python3-").replace("-", "_")}"'
                  for p, _, _ in listed if p.startswith("python3-"))
    comments["smoke"].append("TODO: the import name is guessed from the package name; "
                             "check a step shows it works" if smoke else
                             "TODO: add a step that shows the packages work")
    source_keys: tuple[tuple[str, str], ...] = (("debian", source), ("version", version),
                                                ("sha256", dsc_sha))
    if archive.distribution != resolver.where:
        source_keys += (("suite", archive.distribution),)
    return Draft(
        name=name, version=upstream, summary=summary or f"{source} from Debian",
        description=description or f"{summary or source}.",
        homepage=entry.get("Homepage") or None, license=license_, copyright=copyright_,
        source=source_keys, build_system=system, build_depends=tuple(build_depends),
        packages=tuple(packages), smoke=smoke, comments=comments, missing=tuple(missing),
        epoch=int(epoch) if epoch else None, revision=_revision(revision))


def _debian_packages(listed: list[tuple[str, str, str]], control: dict[str, Any],
                     debian_dir: dict[str, str], resolver: Resolver, missing: list[str],
                     comments: dict[str, list[str]]) -> list[Package]:
    """The recipe's packages: the Package-List's, with debian/control's relations and
    summaries and, when there are several, the files of their debian/*.install."""
    own = {package for package, _, _ in listed}
    packages = []
    for package, architecture, section in listed:
        paragraph = control.get(package, {})
        relations = {}
        for key in ("depends", "recommends", "suggests"):
            kept, gone = resolver.debian_all(_relations(paragraph.get(key.capitalize(), "")),
                                             own, comments[f"packages.{package}.{key}"])
            relations[key] = tuple(kept)
            missing += gone
        files = None
        if len(listed) > 1:
            files = _install_files(debian_dir.get(f"{package}.install", ""))
            if not files:
                comments[f"packages.{package}.files"].append(
                    f"TODO: list the files {package} takes" + (
                        f" (Debian's packaging has no debian/{package}.install kernbuild "
                        "can read)" if debian_dir else ""))
        summary = _synopsis(paragraph) if len(listed) > 1 else None
        packages.append(Package(package, architecture, section, summary=summary,
                                files=files, **relations))
    return packages


def _revision(debian_revision: str) -> int | None:
    """The recipe's revision for Debian's, so that ours sorts above it: Debian's
    3.7.1-2 gives revision 2, version 3.7.1-2kern1 (None: the default, 1)."""
    number = re.match(r"\d+", debian_revision)
    return int(number.group(0)) if number and int(number.group(0)) > 1 else None


def _debian_dir(archive: Archive, directory: str, files: dict[str, str],
                comments: dict[str, list[str]]) -> dict[str, str]:
    """control, copyright and the *.install files of the source package's debian/, by
    name, from its .debian.tar (verified against the index); empty, with a TODO, if it
    has none (a native or 1.0 package) or the mirror does not serve it."""
    tarball = next((f for f in files if re.search(r"\.debian\.tar\.[a-z0-9]+$", f)), None)
    try:
        data = archive.pool_file(directory, tarball, files[tarball]) if tarball else None
    except NotFound:
        data = None
    if data is None:
        comments["summary"].append(
            f"TODO: Debian's packaging ({tarball or 'a .debian.tar'}) was not read: "
            + ("the mirror does not serve it" if tarball else "the source package has none")
            + "; check the summary, description, license and the packages' relations")
        return {}
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./").removeprefix("debian/")
            if member.isfile() and member.size <= MAX_TEXT and (
                    name in ("control", "copyright") or re.fullmatch(r"[^/]+\.install", name)):
                found[name] = tar_read(tar, member).decode("utf-8", "replace")
    return found


def _build_depends(entry: Deb822) -> list[str]:
    """Every build relation of a Sources entry: kernbuild builds arch and indep at once."""
    return [r for key in ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
            for r in _relations(entry.get(key, ""), build=True)]


def _guess_build_system(entry: Deb822) -> str:
    """pybuild for a PEP 517 build, cmake, pybuild for any other Python build (a C++
    library with Python bindings, such as casacore, uses dh-python beside cmake),
    autotools, else make."""
    names = {n for r in _build_depends(entry) for n in relation_names(r)}
    for system, needs in (("pybuild", {"pybuild-plugin-pyproject"}), ("cmake", {"cmake"}),
                          ("pybuild", {"dh-python", "dh-sequence-python3"}),
                          ("autotools", {"autotools-dev", "dh-autoreconf", "autoconf"})):
        if names & needs:
            return system
    return "make"


def _relations(text: str, build: bool = False) -> list[str]:
    """A relation field's comma-separated relations. Of Build-Depends, those only the
    tests or documentation need (``<!nocheck>``, ``<!nodoc>``) are left out: kernbuild
    runs neither, its smoke steps test the installed packages. Entries that are only a
    substitution variable (``${misc:Depends}``) are left out: kernbuild adds its own."""
    found = []
    for relation in (" ".join(r.split()) for r in text.split(",")):
        if not relation or re.fullmatch(r"\$\{[^}]+\}", relation):
            continue
        if build and re.search(r"<[^>]*!no(check|doc)[^>]*>", relation):
            continue
        found.append(relation)
    return found


def _package_list(entry: Deb822) -> list[tuple[str, str, str]]:
    """(package, architecture, section) of the Sources entry's Package-List (no udebs)."""
    found = []
    for line in entry.get("Package-List", "").splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] != "deb":
            continue
        options = dict(f.partition("=")[::2] for f in fields[4:])
        architecture = options.get("arch", "any").replace(",", " ")
        found.append((fields[0], architecture, fields[2].rpartition("/")[2]))
    if not found:
        raise KernError(f"the Sources entry of {entry.get('Package')} lists no binary packages",
                        "the mirror's index is damaged; try again or use another mirror")
    return found


def _install_files(text: str) -> tuple[str, ...]:
    """A debian/<package>.install as kernbuild's ``files``; dh-exec's multiarch variable
    becomes a wildcard, lines needing other dh-exec features are left out."""
    found = []
    for line in text.splitlines():
        line = line.strip().replace("${DEB_HOST_MULTIARCH}", "*")
        if line and not line.startswith("#") and "${" not in line and "=>" not in line:
            found.append(line.removeprefix("debian/tmp/").lstrip("/"))
    return tuple(found)


def _synopsis(paragraph: Any) -> str:
    return " ".join(str(paragraph.get("Description", "")).split("\n", 1)[0].split())


def _extended_description(paragraph: Any) -> str:
    """A Debian extended description as plain text: ' .' lines are paragraph breaks."""
    lines = str(paragraph.get("Description", "")).split("\n")[1:]
    text = "\n".join("" if line.strip() == "." else line.strip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _debian_license(text: str) -> tuple[str, str | None, str]:
    """(SPDX id, copyright, why to check) from a DEP-5 debian/copyright's ``Files: *``."""
    paragraph = next((p for p in Deb822.iter_paragraphs(text)
                      if p.get("Files", "").split() == ["*"]), None)
    if paragraph is None:
        return UNKNOWN_LICENSE, None, ("debian/copyright is missing or not machine-readable "
                                       "(DEP-5): set the SPDX id")
    name = paragraph.get("License", "").split("\n", 1)[0].strip()
    holder = " ".join(paragraph.get("Copyright", "").split("\n", 1)[0].split()) or None
    holder = re.sub(r"^(copyright\s*)?(\(c\)|©)?\s*", "", holder or "", flags=re.I) or None
    spdx = FROM_DEP5.get(name.lower()) or (license_named(name) or ("", ""))[0]
    if spdx:
        return spdx, holder, ""
    return (name or UNKNOWN_LICENSE), holder, (f"Debian's license {name!r} is no SPDX id "
                                               "kernbuild knows: check it" if name else
                                               "debian/copyright names no license for *")
