"""The build key is complete, and exact: each input that decides the rendered debian/
tree or the build changes it; what changes neither leaves it alone.

Keys are computed for real (load the suite, render, hash); nothing is built. Each case
changes one input from the same starting point and compares the key with the one before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from kernbuild import cuda, debian
from kernbuild.build import BuildEnvironment, PackageBuilder
from kernbuild.build import environment as build_environment
from kernbuild.build import package
from kernbuild.recipe import load_suite
from kernbuild.recipe.model import Recipe
from kernbuild.repo import AptRepository, SigningKey
from kernbuild.sources import SourceCache, file_sha256
from kernbuild.workspace import Workspace
from tests.conftest import recipe_text
from tests.unit.test_repo import key
from tests.unit.test_repo import pytestmark as needs_repo_tools

__all__ = ["key"]  # the session's signing key fixture, shared with test_repo

GPU = 'variants:\n  gpu:\n    build:\n      depends: [nvidia-cuda-toolkit]\n    cuda: ">=12.0"\n'


@dataclass
class Setup:
    """The suite (aa <- bb <- cc, and gg with a gpu variant) and how its keys are made."""

    recipes: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    image: str = "sha256:build1"
    base: str = "kern/base:trixie"
    state: str = "state"
    jobs: int = 1
    mirrors: tuple[Path, ...] = ()

    def builder(self, name: str) -> tuple[PackageBuilder, object]:
        """A fresh builder and recipe ``name`` (``gg:gpu``: gg's gpu variant)."""
        suite = load_suite(self.recipes)
        recipe_name, _, variant = name.partition(":")
        if variant:
            suite, recipe = suite.with_variant(recipe_name, variant)
        else:
            recipe = suite.get(name)
        workspace = Workspace(self.recipes, self.tmp / self.state, self.mirrors)
        builder = PackageBuilder(
            suite=suite, workspace=workspace,
            environment=BuildEnvironment(self.base, "sha256:base", "kern/build:x", self.image),
            sources=SourceCache(workspace.sources), repo=None,  # type: ignore[arg-type]
            connect=lambda: pytest.fail("no engine here"), jobs=self.jobs)
        return builder, recipe

    def key(self, name: str) -> str:
        """The build key of recipe ``name``, computed anew."""
        builder, recipe = self.builder(name)
        return builder.key(recipe)

    def inputs(self, name: str) -> dict[str, str]:
        builder, recipe = self.builder(name)
        return builder.key_inputs(recipe)

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.recipes / f"{name}.yaml"
        text = path.read_text()
        assert old in text, (old, text)
        path.write_text(text.replace(old, new, 1))

    def suite_yaml(self, extra: str) -> None:
        with open(self.recipes / "suite.yaml", "a") as out:
            out.write(extra)

    def templates_copy(self) -> Path:
        """A copy of the debian templates that the renderer's digest reads instead."""
        copy = self.tmp / "templates"
        shutil.copytree(debian.TEMPLATES, copy)
        self.monkeypatch.setattr(debian, "TEMPLATES", copy)
        return copy


@pytest.fixture
def setup(suite_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    (suite_dir / "gg.yaml").write_text(recipe_text("gg", extra=GPU))
    return Setup(suite_dir, tmp_path, monkeypatch)


def patch_dict(setup: Setup, module, name: str, key: str, value) -> None:
    setup.monkeypatch.setattr(module, name, {**getattr(module, name), key: value})


def renderer_code_changed(setup: Setup) -> None:
    """The renderer's own code (a copy of it, one line added) is what it hashes."""
    copy = setup.tmp / "debian_renderer.py"
    copy.write_text(Path(debian.__file__).read_text() + "\n# a new rule\n")
    setup.monkeypatch.setattr(debian, "__file__", str(copy))


def template_output_changed(setup: Setup) -> None:
    """A template that renders differently (the digest's copy left as it is)."""
    loader = jinja2.DictLoader({
        name: debian._templates.loader.get_source(debian._templates, name)[0]
        + ("\n# changed\n" if name == "rules.j2" else "")
        for name in debian._templates.list_templates()})
    setup.monkeypatch.setattr(debian, "_templates", debian._templates.overlay(loader=loader))


def library_upgraded(setup: Setup) -> None:
    real = debian.importlib.metadata.version
    setup.monkeypatch.setattr(debian.importlib.metadata, "version",
                              lambda name: "99.0" if name == "jinja2" else real(name))


def edit_aa(old: str, new: str) -> Callable[[Setup], None]:
    return lambda s: s.edit("aa", old, new)


#: (what changes, the recipe whose key must change, the input of key_inputs that shows
#: it, how). Every input key_inputs names is varied by at least one case (checked below).
CHANGES: list[tuple[str, str, str, Callable[[Setup], None]]] = [
    # The recipe's fields.
    ("recipe version", "aa", "recipe", edit_aa('version: "1.0"', 'version: "1.1"')),
    ("recipe revision", "aa", "recipe", edit_aa('version: "1.0"\n',
                                                'version: "1.0"\nrevision: 2\n')),
    ("recipe summary", "aa", "recipe", edit_aa("summary: aa for tests",
                                               "summary: aa, for tests")),
    ("recipe description", "aa", "recipe", edit_aa("A recipe made by the tests.",
                                                    "A recipe the tests made.")),
    ("recipe license", "aa", "recipe", edit_aa("GPL-3.0-or-later", "MIT")),
    ("recipe build depends", "aa", "recipe", edit_aa("depends: []\npackages",
                                                     "depends: [python3-numpy]\npackages")),
    ("recipe package depends", "aa", "recipe", edit_aa("architecture: all\n    depends: []",
                                                       "architecture: all\n    depends: [bc]")),
    ("recipe architecture", "aa", "recipe", edit_aa("architecture: all", "architecture: any")),
    ("recipe build system", "aa", "recipe", edit_aa("system: pybuild", "system: make")),
    ("recipe archive areas", "aa", "archive-areas",
     edit_aa("build:\n", "components: [non-free]\nbuild:\n")),
    # The source's pin.
    ("source sha256", "aa", "source", edit_aa("a" * 64, "b" * 64)),
    # The suite's settings.
    ("suite release", "aa", "settings", lambda s: s.edit("suite", "release: 9", "release: 10")),
    ("suite date", "aa", "settings",
     lambda s: s.edit("suite", "date: 2026-05-01", "date: 2026-05-02")),
    ("suite maintainer", "aa", "settings",
     lambda s: s.suite_yaml("maintainer: Someone <s@example.org>\n")),
    ("suite distribution", "aa", "settings", lambda s: s.suite_yaml("distribution: forky\n")),
    ("suite mirror", "aa", "settings",
     lambda s: s.suite_yaml("mirror: http://mirror.example/debian\n")),
    ("suite gpu archive areas", "gg:gpu", "archive-areas",
     lambda s: s.suite_yaml("gpu:\n  components: [non-free]\n")),
    # The renderer: each table it reads, wherever it lives, seen in the rendered tree.
    ("table SYSTEM_BUILD_DEPENDS", "aa", "debian",
     lambda s: patch_dict(s, debian, "SYSTEM_BUILD_DEPENDS", "pybuild", ("dh-sequence-python3",))),
    ("table DEP5_LICENSES", "aa", "debian",
     lambda s: patch_dict(s, debian, "DEP5_LICENSES", "GPL-3.0-or-later", "GPL-3")),
    ("table STANDARDS_VERSION", "aa", "debian",
     lambda s: s.monkeypatch.setattr(debian, "STANDARDS_VERSION", "4.7.1")),
    ("table DEBHELPER_COMPAT", "aa", "debian",
     lambda s: s.monkeypatch.setattr(debian, "DEBHELPER_COMPAT", "14")),
    ("table cuda.DRIVER_PACKAGES", "gg:gpu", "debian",
     lambda s: s.monkeypatch.setattr(cuda, "DRIVER_PACKAGES", cuda.DRIVER_PACKAGES + ("libx1",))),
    ("template output", "aa", "debian", template_output_changed),
    ("the recipe model's changelog date rule", "aa", "debian", lambda s: s.monkeypatch.setattr(
        Recipe, "changelog_date", lambda self, settings: "2030-01-01")),
    # The renderer itself: its code, the libraries that format its output.
    ("renderer code", "aa", "renderer", renderer_code_changed),
    ("formatting library version", "aa", "renderer", library_upgraded),
    # The build: its image, the image's definition, its steps, its rules.
    ("build image id", "aa", "build-image", lambda s: setattr(s, "image", "sha256:build2")),
    ("build image base", "aa", "build-image-definition",
     lambda s: setattr(s, "base", "kern/base:forky")),
    ("build image toolchain", "aa", "build-image-definition", lambda s: s.monkeypatch.setattr(
        build_environment, "BUILD_TOOLCHAIN", build_environment.BUILD_TOOLCHAIN + ("fakeroot",))),
    ("build format", "aa", "format",
     lambda s: s.monkeypatch.setattr(package, "BUILD_FORMAT", "2x")),
    ("build command", "aa", "build-steps", lambda s: s.monkeypatch.setattr(
        package, "BUILD_COMMAND", package.BUILD_COMMAND + ("--no-pre-clean",))),
    ("build options", "aa", "build-steps", lambda s: s.monkeypatch.setattr(
        package, "BUILD_OPTIONS", package.BUILD_OPTIONS + " nostrip")),
    ("refused-driver rule", "aa", "driver-rule", lambda s: s.monkeypatch.setattr(
        cuda, "DRIVER_PACKAGE", re.compile(cuda.DRIVER_PACKAGE.pattern + "|x"))),
    # A dependency's key, directly and through another recipe.
    ("dependency", "bb", "depends:aa", edit_aa('version: "1.0"', 'version: "1.1"')),
    ("dependency of a dependency", "cc", "depends:bb",
     edit_aa('version: "1.0"', 'version: "1.1"')),
]


@pytest.mark.parametrize("template", sorted(
    p.relative_to(debian.TEMPLATES).as_posix() for p in debian.TEMPLATES.rglob("*")
    if p.is_file()))
def test_each_template_file_is_in_the_key(setup: Setup, template: str) -> None:
    before = setup.key("aa")
    copy = setup.templates_copy()
    assert setup.key("aa") == before  # the copy alone is the same content
    with open(copy / template, "a") as out:
        out.write("{# a new branch #}\n")
    assert setup.key("aa") != before


def test_the_digest_reads_every_template_the_renderer_loads() -> None:
    loaded = set(debian._templates.list_templates())
    hashed = {p.relative_to(debian.TEMPLATES).as_posix()
              for p in debian.TEMPLATES.rglob("*") if p.is_file()}
    assert loaded and loaded <= hashed


@pytest.mark.parametrize("what, name, shown_in, change", CHANGES, ids=[c[0] for c in CHANGES])
def test_each_input_changes_the_key(setup: Setup, what: str, name: str, shown_in: str,
                                    change: Callable[[Setup], None]) -> None:
    before, inputs = setup.key(name), setup.inputs(name)
    assert setup.key(name) == before  # computed twice, from scratch: the same
    change(setup)
    assert setup.key(name) != before, f"{what} does not change the key of {name}"
    assert setup.inputs(name)[shown_in] != inputs[shown_in]


def test_every_input_the_key_hashes_is_varied_by_a_test(
        setup: Setup, figure) -> None:
    hashed = {name.split(":")[0] for name in setup.inputs("cc")}
    varied = {shown_in.split(":")[0] for _, _, shown_in, _ in CHANGES}
    assert hashed == varied
    templates = sum(1 for p in debian.TEMPLATES.rglob("*") if p.is_file())
    figure(f"build key: {len(hashed)} inputs, each varied; {len(CHANGES) + templates} "
           f"changes alter it, {len(SAME)} that alter no output leave it")


def touch_old(path: Path) -> None:
    os.utime(path, (1_000_000_000, 1_000_000_000))


#: (what changes, the recipe whose key must stay, how): none of these changes its output.
SAME: list[tuple[str, str, Callable[[Setup], None]]] = [
    ("a comment in the recipe", "aa", lambda s: s.edit("aa", "name: aa\n",
                                                       "# packaged for the tests\nname: aa\n")),
    ("the recipe's YAML layout", "aa", lambda s: s.edit(
        "aa", "    architecture: all\n    depends: []",
        "    depends: [ ]\n    architecture: 'all'")),
    ("the recipe file's mtime", "aa", lambda s: touch_old(s.recipes / "aa.yaml")),
    ("the suite file's mtime", "aa", lambda s: touch_old(s.recipes / "suite.yaml")),
    ("a smoke step", "aa", lambda s: s.edit("aa", 'import aa"', 'import aa; print(1)"')),
    ("a source mirror in suite.yaml", "aa",
     lambda s: s.suite_yaml("source_mirrors: [/srv/mirror]\n")),
    ("a source mirror given to the command", "aa",
     lambda s: setattr(s, "mirrors", (s.tmp / "mirror",))),
    ("the repository's signing key", "aa",
     lambda s: s.suite_yaml("signing_key: 0123456789ABCDEF0123456789ABCDEF01234567\n")),
    ("the state directory", "aa", lambda s: setattr(s, "state", "elsewhere")),
    ("parallel jobs", "aa", lambda s: setattr(s, "jobs", 4)),
    ("a recipe depending on it", "aa", lambda s: s.edit("cc", 'version: "1.0"',
                                                        'version: "1.1"')),
    ("an unrelated recipe", "aa", lambda s: (s.recipes / "dd.yaml").write_text(
        recipe_text("dd"))),
    ("the driver table, for a recipe without CUDA", "aa",
     lambda s: s.monkeypatch.setattr(cuda, "DRIVER_PACKAGES", cuda.DRIVER_PACKAGES + ("x1",))),
    ("a licence mapping the recipe does not use", "aa",
     lambda s: patch_dict(s, debian, "DEP5_LICENSES", "MIT", "Expat-2")),
    ("the gpu archive areas, for a recipe without CUDA", "aa",
     lambda s: s.suite_yaml("gpu:\n  components: [non-free]\n")),
]


@pytest.mark.parametrize("what, name, change", SAME, ids=[c[0] for c in SAME])
def test_what_changes_no_output_leaves_the_key(setup: Setup, what: str, name: str,
                                               change: Callable[[Setup], None]) -> None:
    before = setup.key(name)
    change(setup)
    assert setup.key(name) == before, f"{what} changes the key of {name}"


def test_key_inputs_name_what_the_key_hashes(setup: Setup) -> None:
    """The inputs are there by name (for a person asking why a recipe rebuilt), and the
    key is the hash of exactly them: a change the inputs miss cannot change the key."""
    suite = load_suite(setup.recipes)
    workspace = Workspace(setup.recipes, setup.tmp / "state")
    builder = PackageBuilder(
        suite=suite, workspace=workspace,
        environment=BuildEnvironment(setup.base, "sha256:base", "kern/build:x", setup.image),
        sources=SourceCache(workspace.sources), repo=None,  # type: ignore[arg-type]
        connect=lambda: pytest.fail("no engine here"))
    inputs = builder.key_inputs(suite.get("cc"))
    assert {"recipe", "settings", "debian", "renderer", "source", "build-image",
            "build-image-definition", "build-steps", "format", "depends:bb"} <= inputs.keys()
    # cc needs bb needs aa: aa through bb's key, which hashes aa's.
    assert [name for name in inputs if name.startswith("depends:")] == ["depends:bb"]
    assert "signing_key" not in inputs["settings"] and "source_mirrors" not in inputs["settings"]


# -- what the key finds: a cache entry is used only whole ---------------------------------


class EntryBuilder(PackageBuilder):
    """Builds as the real builder ends a build, without a container: a reproducible
    one-file .deb and a manifest with its sum in a scratch directory, installed as the
    cache entry by the real :meth:`_install_entry`."""

    calls: list[str]

    def build(self, recipe, version):
        self.calls.append(recipe.name)
        key = self.key(recipe)
        scratch = self.workspace.builds / f".build-{os.getpid()}-{recipe.name}-test"
        root = scratch / "root"
        (root / "DEBIAN").mkdir(parents=True)
        package = recipe.packages[0].name
        (root / "DEBIAN/control").write_text(
            f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: t <t@example.org>\nDescription: test\n")
        deb = scratch / f"{package}_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                        str(deb)], check=True, capture_output=True,
                       env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
        shutil.rmtree(root)
        (scratch / "manifest.json").write_text(json.dumps({
            "version": version, "key": key, "debs": [deb.name],
            "sha256": {deb.name: file_sha256(deb)}}))
        self._install_entry(scratch, self.workspace.builds / key)
        return (self.workspace.builds / key / deb.name,), ()


def corrupt_flip(deb: Path) -> None:
    data = bytearray(deb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    deb.write_bytes(bytes(data))


CORRUPTIONS = {
    "a changed byte": corrupt_flip,
    "truncated": lambda deb: deb.write_bytes(deb.read_bytes()[:100]),
    "missing": lambda deb: deb.unlink(),
}


@needs_repo_tools
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_cache_entry_is_removed_and_rebuilt_never_published(
        setup: Setup, key: SigningKey, corruption: str) -> None:
    said: list[str] = []
    workspace = Workspace(setup.recipes, setup.tmp / "state")
    suite = load_suite(setup.recipes)

    def builder() -> EntryBuilder:
        made = EntryBuilder(
            suite=suite, workspace=workspace,
            environment=BuildEnvironment(setup.base, "sha256:base", "kern/build:x",
                                         setup.image),
            sources=SourceCache(workspace.sources),
            repo=AptRepository(workspace.repo, "kern-9", key, locks=workspace.locks()),
            connect=lambda: pytest.fail("no engine here"), locks=workspace.locks(said.append))
        made.calls = []
        return made

    aa = suite.get("aa")
    first = builder()
    [deb] = first.build(aa, "1.0-1kern9")[0]
    good = deb.read_bytes()
    assert first.cached(aa) == ("1.0-1kern9", (deb,))  # whole: used

    CORRUPTIONS[corruption](deb)
    again = builder()
    assert again.cached(aa) is None
    [result] = again.run(["aa"])
    assert (result.state, result.version, again.calls) == ("built", "1.0-1kern9", ["aa"])
    assert len(said) == 1 and "aa: cache entry" in said[0] and "is corrupt" in said[0]
    assert deb.name in said[0] and "building it again" in said[0]
    # What was published is the rebuild's, byte for byte; the corrupt file went nowhere.
    [ref] = again.repo.packages()
    assert (again.repo.current / ref.filename).read_bytes() == good == deb.read_bytes()
    assert again.repo.verify().ok
    assert builder().cached(aa) == ("1.0-1kern9", (deb,))
    assert not [p for p in workspace.builds.iterdir() if p.name.startswith(".")]
