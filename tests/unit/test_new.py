"""Writing recipes from upstream metadata: kernbuild.recipe.new.

No test touches the real network: a local HTTP server on 127.0.0.1 is PyPI
(its JSON and a small sdist made here) and a Debian mirror (Packages and
Sources indexes, a dh-python .deb holding the table of PyPI names, a
.debian.tar.xz), and every recipe written must load as kernbuild loads the suite.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kernbuild.errors import KernError
from kernbuild.recipe import load_suite
from kernbuild.recipe.new import NewRecipe, new_recipe
from kernbuild.recipe.new.draft import scalar
from kernbuild.recipe.new.resolve import lower_bound
from kernbuild.workspace import Workspace
from tests.conftest import recipe_text

BSD_3 = ("Copyright (c) 2024, Ada Lovelace\n\nRedistribution and use in source and binary "
         "forms, with or without modification, are permitted provided that ...\n"
         "Neither the name of the copyright holder nor the names of its contributors may "
         "be used to endorse or promote products derived from this software.\n")

PKG_INFO = """\
Metadata-Version: 2.1
Name: demo-tool
Version: {version}
Summary: Demo tool for radio astronomers.
Home-page: https://example.org/demo
Author: Ada Lovelace
License: BSD
Classifier: License :: OSI Approved :: BSD License
Requires-Python: >=3.9
Requires-Dist: numpy>=1.24
Requires-Dist: PyYAML>=7
Requires-Dist: katversion
Requires-Dist: mocpy
Requires-Dist: argparse
Requires-Dist: tomli; python_version < "3.11"
Requires-Dist: sphinx; extra == "docs"
Description-Content-Type: text/markdown

# Demo tool

[![badge](https://example.org/badge.svg)](https://example.org)

Demo tool turns demonstrations into reproducible examples for radio astronomers.
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61", "setuptools_scm>=8", "wheel"]
build-backend = "setuptools.build_meta"
"""

# The distribution's packages: (name, version, extra fields).
PACKAGES = [("python3-numpy", "1:2.2.4+ds-1", ""), ("python3-yaml", "6.0.2-1", ""),
            ("python3-setuptools-scm", "8.2.1-1", ""), ("cython3", "3.0.11+dfsg-2", ""),
            ("python3-all-dev", "3.13.5-1", ""), ("cmake", "3.31.6-2", ""),
            ("debhelper", "13.24.2", "Provides: debhelper-compat (= 13)\n"),
            ("libcfitsio-dev", "4.6.2-2", ""), ("python3-pytest", "8.3.5-2", "")]
# dh-python's table of PyPI names: mocpy is in it, but the distribution lacks the package.
FALLBACK = ("numpy python3-numpy\nPyYAML python3-yaml\nsetuptools_scm python3-setuptools-scm\n"
            "Cython cython3\nargparse python3 (>= 3.2)\nmocpy python3-mocpy\n")


# --- a local PyPI and Debian mirror -------------------------------------------------------


# The local HTTP server (and no proxy in the way) that the source tests use.
from tests.unit.test_sources import Served, no_proxy, server  # noqa: E402,F401


def tar(files: dict[str, bytes | str], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def deb(files: dict[str, str]) -> bytes:
    """A .deb: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", tar({}, "w:xz")),
               ("data.tar.xz", tar(files, "w:xz"))]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Upstream:
    """The local PyPI and mirror, and a suite (with a katversion recipe) that uses them."""

    server: Served
    ws: Workspace

    @property
    def pypi(self) -> str:
        return f"{self.server.url}/pypi-root"

    def publish_mirror(self, packages=PACKAGES, fallback: str = FALLBACK,
                       sources: dict[str, str] | None = None) -> None:
        dh_python = deb({"./usr/share/dh-python/dist/cpython3_fallback": fallback})
        filename = "pool/main/d/dh-python/dh-python_6.20250414_all.deb"
        self.server.put(f"debian/{filename}", dh_python)
        stanzas = [f"Package: dh-python\nVersion: 6.20250414\nArchitecture: all\n"
                   f"Provides: dh-sequence-python3\nFilename: {filename}\n"
                   f"SHA256: {sha256(dh_python)}\n"]
        stanzas += [f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}"
                    for name, version, extra in packages]
        self.server.put("debian/dists/trixie/main/binary-amd64/Packages.xz",
                        lzma.compress("\n".join(stanzas).encode()))
        for distribution, text in (sources or {}).items():
            self.server.put(f"debian/dists/{distribution}/main/source/Sources.xz",
                            lzma.compress(text.encode()))

    def publish_pypi(self, project: str, releases: dict[str, list[tuple[str, str, bytes]]],
                     relative_urls: bool = False) -> None:
        """``releases``: version -> [(packagetype, filename, data)]."""
        document: dict = {"info": {"name": project}, "releases": {}}
        for version, files in releases.items():
            entries = document["releases"][version] = []
            for kind, filename, data in files:
                url = self.server.put(f"files/{filename}", data)
                entries.append({"packagetype": kind, "filename": filename,
                                "url": f"../../../files/{filename}" if relative_urls else url,
                                "digests": {"sha256": sha256(data)}})
        self.server.put(f"pypi-root/pypi/{project}/json", json.dumps(document).encode())

    def new(self, name: str, **options) -> NewRecipe:
        """``kernbuild new NAME --pypi``, against the local PyPI."""
        return new_recipe(self.ws, name, pypi=True, pypi_url=self.pypi, **options)


@pytest.fixture
def upstream(tmp_path: Path, server: Served) -> Upstream:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "suite.yaml").write_text(
        f"name: kern\nrelease: 9\ndate: 2026-05-01\nmirror: {server.url}/debian\n")
    (recipes / "katversion.yaml").write_text(recipe_text("katversion"))
    return Upstream(server, Workspace(recipes, tmp_path / "state"))


def sdist(version: str = "1.0", extra: dict[str, str] | None = None,
          pkg_info: str = PKG_INFO) -> bytes:
    top = f"demo_tool-{version}"
    files = {"PKG-INFO": pkg_info.format(version=version), "pyproject.toml": PYPROJECT,
             "LICENSE": BSD_3, "demo_tool/__init__.py": "", "demo_tool/core.py": "",
             "tests/test_core.py": "", **(extra or {})}
    return tar({f"{top}/{name}": data for name, data in files.items()})


def publish_demo(upstream: Upstream, archive: bytes | None = None, **options) -> bytes:
    """demo-tool on PyPI: 1.0 (an sdist), 1.1 (only a wheel), 2.0rc1 (an sdist)."""
    archive = archive or sdist()
    upstream.publish_pypi("demo-tool", {
        "1.0": [("sdist", "demo_tool-1.0.tar.gz", archive),
                ("bdist_wheel", "demo_tool-1.0-py3-none-any.whl", b"wheel")],
        "1.1": [("bdist_wheel", "demo_tool-1.1-py3-none-any.whl", b"wheel")],
        "2.0rc1": [("sdist", "demo_tool-2.0rc1.tar.gz", sdist("2.0rc1"))],
    }, **options)
    upstream.publish_mirror()
    return archive


def written(upstream: Upstream, made: NewRecipe):
    """Write the recipe and load the suite with it, as kernbuild lint does."""
    assert made.write() == upstream.ws.recipes / made.path.name
    return load_suite(upstream.ws.recipes).get(made.path.stem)


# --- from PyPI ----------------------------------------------------------------------------


@pytest.mark.parametrize("relative_urls", [False, True])
def test_pypi_recipe_from_metadata_sdist_and_the_distribution(upstream: Upstream,
                                                              relative_urls: bool) -> None:
    archive = publish_demo(upstream, relative_urls=relative_urls)
    made = upstream.new("demo-tool")
    recipe = written(upstream, made)

    assert made.path == upstream.ws.recipes / "demo-tool.yaml"
    # The newest final release with an sdist: 1.1 has only a wheel, 2.0rc1 is a prerelease.
    assert recipe.version == "1.0"
    assert (recipe.source.kind, recipe.source.ref) == ("pypi", "demo-tool")
    assert recipe.source.sha256 == sha256(archive)
    assert recipe.summary == "Demo tool for radio astronomers"
    assert recipe.description == ("Demo tool turns demonstrations into reproducible examples "
                                  "for radio\nastronomers.\n")
    assert recipe.homepage == "https://example.org/demo"
    # 'BSD' and the classifier do not say which; the license file does.
    assert recipe.license == "BSD-3-Clause"
    assert recipe.copyright == "2024, Ada Lovelace"
    assert recipe.build.system == "pybuild"
    # setuptools and wheel are kernbuild's own; the bound carries over.
    assert recipe.build.depends == ("python3-setuptools-scm (>= 8)",)
    (package,) = recipe.packages
    assert (package.name, package.architecture, package.section) == \
        ("python3-demo-tool", "all", "python")
    # Debian's epoch on numpy, the suite's own katversion; tomli (a Python < 3.11
    # marker), sphinx (an extra) and argparse (the standard library) are not needed.
    assert package.relations["depends"] == (
        "python3-numpy (>= 1:1.24)", "python3-yaml (>= 7)", "python3-katversion")
    assert made.missing == ("mocpy",)
    assert "    # missing: mocpy (no Debian package, no suite recipe)\n" in made.text
    assert made.todo == ("PyYAML>=7: trixie has python3-yaml 6.0.2-1 only",)
    assert [step.run for step in recipe.smoke] == ['python3 -c "import demo_tool"']
    assert "pyproject.toml, no setup.py" in made.text


def test_pypi_version_asked_for(upstream: Upstream) -> None:
    publish_demo(upstream)
    recipe = written(upstream, upstream.new("demo-tool", version="2.0rc1"))
    assert recipe.version == "2.0rc1"


def test_indexes_are_cached(upstream: Upstream) -> None:
    publish_demo(upstream)
    upstream.new("demo-tool")
    upstream.new("demo-tool")
    indexes = [p for p, _ in upstream.server.requests if "/debian/" in p]
    # Packages and dh-python once; contrib and non-free (not on this mirror) each time.
    assert sum(p.endswith("/main/binary-amd64/Packages.xz") for p in indexes) == 1
    assert sum(p.endswith(".deb") for p in indexes) == 1
    assert not list((upstream.ws.state / "index").rglob(".*"))  # no temporary files left


def test_compiled_sdist_is_architecture_dependent(upstream: Upstream) -> None:
    pyproject = ('[build-system]\nrequires = ["setuptools", "Cython>=3"]\n'
                 'build-backend = "setuptools.build_meta"\n')
    publish_demo(upstream, sdist(extra={"pyproject.toml": pyproject, "setup.py": "",
                                        "demo_tool/_fast.pyx": "", "tests/helper.c": ""}))
    made = upstream.new("demo-tool")
    recipe = written(upstream, made)
    assert recipe.packages[0].architecture == "any"
    assert recipe.build.depends == ("cython3 (>= 3)", "python3-all-dev")
    assert "compiled code (demo_tool/_fast.pyx)" in made.text


def test_unknown_license_is_a_todo_that_lints(upstream: Upstream) -> None:
    pkg_info = PKG_INFO.replace("License: BSD\n", "License: Ask the author\n").replace(
        "Classifier: License :: OSI Approved :: BSD License\n", "")
    publish_demo(upstream, sdist(pkg_info=pkg_info, extra={"LICENSE": "All yours.\n"}))
    made = upstream.new("demo-tool")
    assert written(upstream, made).license == "LicenseRef-unknown"
    assert "# TODO: no license kernbuild recognises" in made.text
    assert "'Ask the author'" in made.todo[-1]


def test_license_expression_is_taken_as_it_is(upstream: Upstream) -> None:
    pkg_info = PKG_INFO.replace("Metadata-Version: 2.1", "Metadata-Version: 2.4").replace(
        "License: BSD\n", "License-Expression: MIT OR Apache-2.0\n")
    publish_demo(upstream, sdist(pkg_info=pkg_info))
    assert written(upstream, upstream.new("demo-tool")).license == "MIT OR Apache-2.0"


def test_no_such_project(upstream: Upstream) -> None:
    upstream.publish_mirror()
    with pytest.raises(KernError, match="PyPI has no project 'nothing-here'"):
        upstream.new("nothing-here")


def test_release_without_sdist_is_refused(upstream: Upstream) -> None:
    publish_demo(upstream)
    with pytest.raises(KernError, match=r"demo-tool 1\.1 has no sdist on PyPI") as error:
        upstream.new("demo-tool", version="1.1")
    assert "1.0" in error.value.hint  # the releases that have one
    with pytest.raises(KernError, match="PyPI has no release 9.9 of demo-tool"):
        upstream.new("demo-tool", version="9.9")


def test_sdist_not_matching_pypi_digest_is_refused(upstream: Upstream) -> None:
    publish_demo(upstream)
    upstream.server.put("files/demo_tool-1.0.tar.gz", sdist(extra={"evil.py": "x"}))
    with pytest.raises(KernError, match="sha256 mismatch"):
        upstream.new("demo-tool")


def test_existing_recipe_is_refused_before_any_download(upstream: Upstream) -> None:
    publish_demo(upstream)
    existing = upstream.ws.recipes / "demo-tool.yaml"
    existing.write_text("# mine\n")
    with pytest.raises(KernError, match="exists") as error:
        upstream.new("demo-tool")
    assert "--force" in error.value.hint
    assert upstream.server.requests == []
    assert written(upstream, upstream.new("demo-tool", force=True)).version == "1.0"


def test_write_does_not_replace_a_file_that_appeared_since(upstream: Upstream) -> None:
    publish_demo(upstream)
    made = upstream.new("demo-tool")
    made.path.write_text("# written meanwhile\n")
    with pytest.raises(KernError, match="exists"):
        made.write()
    assert made.path.read_text() == "# written meanwhile\n"
    assert sorted(p.name for p in upstream.ws.recipes.iterdir()) == \
        ["demo-tool.yaml", "katversion.yaml", "suite.yaml"]


def test_a_recipe_of_the_suite_is_not_made_twice(upstream: Upstream) -> None:
    upstream.publish_pypi("katversion", {"1.0": [("sdist", "katversion-1.0.tar.gz", sdist())]})
    upstream.publish_mirror()
    (upstream.ws.recipes / "katversion.yaml").rename(upstream.ws.recipes / "kv.yaml")
    with pytest.raises(KernError, match="already has a recipe katversion"):
        upstream.new("katversion")


def test_origin_is_pypi_or_debian(upstream: Upstream) -> None:
    for options in ({}, {"pypi": True, "debian": "foo"}):
        with pytest.raises(KernError, match="from PyPI or from Debian"):
            new_recipe(upstream.ws, "demo", **options)


# --- from Debian --------------------------------------------------------------------------

CONTROL = """\
Source: foo
Build-Depends: debhelper-compat (= 13), cmake

Package: foo-tools
Architecture: any
Depends: libfoo1 (= ${binary:Version}), ${shlibs:Depends}, ${misc:Depends}, libgone1
Description: foo command-line tools
 Tools that turn foo
 .
 into bar.

Package: libfoo1
Architecture: any
Section: libs
Depends: ${shlibs:Depends}, ${misc:Depends}
Description: foo library (shared library)
 The foo library.
"""

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020-2024 The Foo Authors
License: GPL-2+

Files: debian/*
Copyright: 2024 A Debian Developer
License: GPL-2+
"""


def publish_foo(upstream: Upstream, distribution: str = "trixie",
                debian_tar: bytes | None = None) -> tuple[str, bytes]:
    """Source package foo 1:1.2-3 in ``distribution``: (its .dsc's sha256, debian tarball)."""
    debian_tar = debian_tar or tar({
        "debian/control": CONTROL, "debian/copyright": COPYRIGHT,
        "debian/foo-tools.install": "usr/bin\n",
        "debian/libfoo1.install": "usr/lib/${DEB_HOST_MULTIARCH}/libfoo.so.*\n"}, "w:xz")
    upstream.server.put("debian/pool/main/f/foo/foo_1.2-3.debian.tar.xz", debian_tar)
    dsc_sha = "d" * 64
    entry = textwrap.dedent(f"""\
        Package: foo
        Binary: foo-tools, libfoo1
        Version: 1:1.2-3
        Build-Depends: debhelper-compat (= 13), cmake, libcfitsio-dev,
         python3-pytest <!nocheck>, libmissing-dev (>= 2)
        Checksums-Sha256:
         {dsc_sha} 1234 foo_1.2-3.dsc
         {"0" * 64} 5678 foo_1.2.orig.tar.gz
         {sha256(debian_tar)} {len(debian_tar)} foo_1.2-3.debian.tar.xz
        Homepage: https://example.org/foo
        Package-List:
         foo-tools deb science optional arch=any
         foo-udeb udeb debian-installer optional arch=any
         libfoo1 deb libs optional arch=any
        Directory: pool/main/f/foo
        """)
    other = "Package: bar\nVersion: 1.0-1\nDirectory: pool/main/b/bar\n"
    upstream.publish_mirror(sources={distribution: f"{other}\n{entry}"})
    return dsc_sha, debian_tar


@pytest.mark.parametrize("distribution", [None, "sid"])
def test_debian_recipe_from_sources_and_packaging(upstream: Upstream,
                                                  distribution: str | None) -> None:
    dsc_sha, _ = publish_foo(upstream, distribution or "trixie")
    made = new_recipe(upstream.ws, "foo", debian="foo", distribution=distribution)
    recipe = written(upstream, made)

    assert (recipe.version, recipe.epoch, recipe.revision) == ("1.2", 1, 3)
    assert (recipe.source.kind, recipe.source.ref, recipe.source.version) == \
        ("debian", "foo", "1:1.2-3")
    assert recipe.source.sha256 == dsc_sha
    assert recipe.source.suite == distribution  # a backport says where it is from
    assert recipe.summary == "foo command-line tools"
    assert recipe.description == "Tools that turn foo\n\ninto bar.\n"
    assert recipe.homepage == "https://example.org/foo"
    assert (recipe.license, recipe.copyright) == ("GPL-2.0-or-later", "2020-2024 The Foo Authors")
    # cmake and debhelper come with kernbuild's cmake build; pytest only runs the tests.
    assert (recipe.build.system, recipe.build.depends) == ("cmake", ("libcfitsio-dev",))
    tools, library = recipe.packages  # the udeb is left out
    assert (tools.name, tools.architecture, tools.section, tools.files) == \
        ("foo-tools", "any", "science", ("usr/bin",))
    assert tools.relations["depends"] == ("libfoo1 (= ${binary:Version})",)
    assert (library.name, library.files) == ("libfoo1", ("usr/lib/*/libfoo.so.*",))
    assert library.summary == "foo library (shared library)"
    # Looked up in the suite's distribution, trixie, whatever the source came from.
    assert made.missing == ("libmissing-dev (>= 2)", "libgone1")
    assert "# missing: libmissing-dev (>= 2) (not in trixie, no suite recipe)" in made.text


def test_debian_packaging_the_mirror_does_not_serve_is_a_todo(upstream: Upstream) -> None:
    publish_foo(upstream)
    (upstream.server.root / "debian/pool/main/f/foo/foo_1.2-3.debian.tar.xz").unlink()
    made = new_recipe(upstream.ws, "foo", debian="foo")
    recipe = written(upstream, made)
    assert recipe.license == "LicenseRef-unknown"
    assert recipe.packages[0].files == ()
    assert any("was not read: the mirror does not serve it" in t for t in made.todo)


def test_debian_tampered_packaging_is_refused(upstream: Upstream) -> None:
    publish_foo(upstream)
    upstream.server.put("debian/pool/main/f/foo/foo_1.2-3.debian.tar.xz", b"tampered")
    with pytest.raises(KernError, match="sha256 mismatch"):
        new_recipe(upstream.ws, "foo", debian="foo")


def test_debian_source_or_version_not_there(upstream: Upstream) -> None:
    publish_foo(upstream)
    with pytest.raises(KernError, match="trixie has no source package 'nope'"):
        new_recipe(upstream.ws, "nope", debian="nope")
    with pytest.raises(KernError, match="trixie has foo 1:1.2-3, not 1:1.0-1"):
        new_recipe(upstream.ws, "foo", debian="foo", version="1:1.0-1")
    with pytest.raises(KernError, match="has no distribution 'bookwork'"):
        new_recipe(upstream.ws, "foo", debian="foo", distribution="bookwork")


# --- pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize("specifier, bound", [
    (">=1.24", (">=", "1.24")), ("~=2.1", (">=", "2.1")), (">1.0", (">>", "1.0")),
    (">=1.0,<2", (">=", "1.0")), ("<2", None), ("==1.*", None), (">=0.1.0b4", (">=", "0.1.0~b4")),
    (">=1.0,>=1.2", (">=", "1.2")), (">=1.0.post1", (">=", "1.0.post1")),
])
def test_lower_bounds_become_debian_versions(specifier: str, bound) -> None:
    from packaging.specifiers import SpecifierSet

    assert lower_bound(SpecifierSet(specifier)) == bound


@pytest.mark.parametrize("value, flow", [
    ("1.10", False), ("yes", False), ("a # b", False), ("x: y", False), (" lead", False),
    ("libwcs8 (= ${binary:Version})", True), ("a, b", True), ("python3-numpy (>= 1:1.2)", True),
    ('python3 -c "import x"', False), ("", False),
])
def test_scalars_read_back_as_written(value: str, flow: bool) -> None:
    text = scalar(value, flow)
    assert (yaml.safe_load(f"k: [{text}]")["k"] if flow else yaml.safe_load(f"k: {text}")["k"]) \
        == ([value] if flow else value)
