"""debian/ rendering: control, changelog, rules and copyright from a recipe."""

from __future__ import annotations

import subprocess
from pathlib import Path

from debian.changelog import Changelog
from debian.deb822 import Deb822

from kernbuild import debian
from kernbuild.recipe import load_recipe
from kernbuild.recipe.model import SuiteSettings
from tests.conftest import recipe_text

SETTINGS = SuiteSettings(name="kern", release=10, date="2026-05-01",
                         maintainer="Test Maintainer <test@example.org>")


def load(tmp_path: Path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(path)


def test_control_has_source_and_binary_paragraphs(tmp_path):
    recipe = load(tmp_path, recipe_text("losoto", depends=["python3-scipy (>= 1.0)"],
                                        build_depends=["python3-numpy"]))
    source, binary = Deb822.iter_paragraphs(debian.control(recipe, SETTINGS))
    assert source["Source"] == "losoto"
    assert source["Maintainer"] == "Test Maintainer <test@example.org>"
    build_depends = [r.strip() for r in source["Build-Depends"].split(",")]
    assert build_depends[0] == "debhelper-compat (= 13)"
    assert "dh-sequence-python3" in build_depends and "python3-numpy" in build_depends
    assert binary["Package"] == "python3-losoto"
    assert binary["Architecture"] == "all"
    depends = [r.strip() for r in binary["Depends"].split(",")]
    assert depends == ["${python3:Depends}", "${misc:Depends}", "python3-scipy (>= 1.0)"]
    assert binary["Description"].splitlines()[0] == "losoto for tests"


def test_compiled_package_gets_shlibs_and_install_files(tmp_path):
    text = recipe_text("wcslib").replace("system: pybuild", "system: autotools").replace(
        "  python3-wcslib:\n    architecture: all\n",
        "  libwcs8:\n    architecture: any\n    files: [usr/lib/*/libwcs.so.*]\n"
        "  wcslib-tools:\n    files: [usr/bin]\n    architecture: any\n")
    recipe = load(tmp_path, text)
    files = debian.render(recipe, SETTINGS)
    paragraphs = list(Deb822.iter_paragraphs(files["debian/control"]))
    assert paragraphs[1]["Depends"].startswith("${shlibs:Depends}")
    assert files["debian/libwcs8.install"] == "usr/lib/*/libwcs.so.*\n"
    assert files["debian/wcslib-tools.install"] == "usr/bin\n"


def test_changelog_is_dated_by_the_release_not_the_clock(tmp_path):
    recipe = load(tmp_path, recipe_text("demo"))
    log = Changelog(debian.changelog(recipe, SETTINGS))
    assert str(log.version) == "1.0-1kern10"
    assert log.distributions == "kern-10"
    assert log.date == "Fri, 01 May 2026 00:00:00 +0000"
    assert debian.changelog(recipe, SETTINGS) == debian.changelog(recipe, SETTINGS)


def test_recipe_date_wins_over_the_release_date(tmp_path):
    recipe = load(tmp_path, recipe_text("demo", extra="date: 2026-02-03\n"))
    assert Changelog(debian.changelog(recipe, SETTINGS)).date.startswith("Tue, 03 Feb 2026")


def test_rules_quote_configure_flags_for_shell_and_make(tmp_path):
    text = recipe_text("demo").replace(
        "system: pybuild", "system: cmake\n  configure: ['-DX=$(id)', \"it's\", '-DY=a b']")
    rules = debian.rules(load(tmp_path, text))
    assert "dh $@ --buildsystem=cmake" in rules
    assert "dh_auto_configure -- '-DX=$$(id)' 'it'\"'\"'s' '-DY=a b'" in rules
    # make itself must see one target per override and the quoted flags intact
    makefile = tmp_path / "rules"
    makefile.write_text(rules.replace("dh_auto_configure --", "printf '%s\\n'"))
    shown = subprocess.run(["make", "-s", "-f", str(makefile), "override_dh_auto_configure"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown == ["-DX=$(id)", "it's", "-DY=a b"]


def test_autotools_uses_shipped_configure(tmp_path):
    recipe = load(tmp_path, recipe_text("demo").replace("system: pybuild", "system: autotools"))
    tree = tmp_path / "tree"
    tree.mkdir()
    assert "--without autoreconf" not in debian.rules(recipe, tree)
    (tree / "configure").write_text("#!/bin/sh\n")
    assert "dh $@ --without autoreconf" in debian.rules(recipe, tree)


def test_write_makes_rules_executable(tmp_path):
    recipe = load(tmp_path, recipe_text("demo"))
    debian.write(debian.render(recipe, SETTINGS), tmp_path / "out")
    assert (tmp_path / "out/debian/rules").stat().st_mode & 0o111
    assert (tmp_path / "out/debian/source/format").read_text() == "3.0 (quilt)\n"
    copyright_text = (tmp_path / "out/debian/copyright").read_text()
    assert "License: GPL-3+" in copyright_text
    assert list(Deb822.iter_paragraphs(copyright_text))[0]["Upstream-Name"] == "demo"


def test_meson_projects_build_with_debhelpers_meson(tmp_path):
    recipe = load(tmp_path, recipe_text("sky").replace("system: pybuild", "system: meson")
                  .replace("architecture: all", "architecture: any"))
    files = debian.render(recipe, SETTINGS)
    assert "\tdh $@ --buildsystem=meson\n" in files["debian/rules"]
    build_depends = Deb822(files["debian/control"].split("\n\n")[0])["Build-Depends"]
    assert "meson" in build_depends and "ninja-build" in build_depends


def test_compiled_python_gets_the_headers_and_overrides_are_rendered(tmp_path):
    text = recipe_text("fast").replace(
        "    architecture: all\n",
        "    architecture: any\n    lintian_overrides: ['privacy-breach-generic [usr/x.html]']\n")
    recipe = load(tmp_path, text)
    files = debian.render(recipe, SETTINGS)
    build_depends = Deb822(files["debian/control"].split("\n\n")[0])["Build-Depends"]
    assert "python3-all-dev" in build_depends
    assert files["debian/python3-fast.lintian-overrides"] == \
        "python3-fast: privacy-breach-generic [usr/x.html]\n"
