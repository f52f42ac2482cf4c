"""The recipe stages: YAML with positions, schema diagnostics, model, graph.

The exact text of the diagnostics for bad files is snapshotted in test_recipe_errors.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kernbuild.recipe
from kernbuild.errors import KernError, RecipeError
from kernbuild.recipe import load_recipe, load_suite
from kernbuild.recipe.graph import build_order, levels, reverse_dependencies
from tests.conftest import recipe_text


def problems(path: Path) -> list[str]:
    """'line:column: message' of every diagnostic for one file."""
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    return [f"{d.line}:{d.column}: {d.message}" for d in caught.value.diagnostics]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_valid_recipe_becomes_the_model(tmp_path):
    recipe = load_recipe(write(tmp_path, recipe_text("losoto", depends=["python3-numpy"])))
    assert recipe.name == "losoto"
    assert recipe.source.kind == "pypi" and recipe.source.ref == "losoto"
    assert recipe.packages[0].name == "python3-losoto"
    assert recipe.packages[0].relations["depends"] == ("python3-numpy",)
    assert recipe.smoke[0].run == 'python3 -c "import losoto"'


def test_every_problem_is_reported_with_its_line(tmp_path):
    text = recipe_text("demo").replace("  system: pybuild", "  system: pybuild\n  depnds: [a]")
    text = text.replace("depends: []\npackages", "depends: ['python3-numpy >=']\npackages")
    found = problems(write(tmp_path, text))
    assert "12:3: unknown key 'depnds' in build" in found
    assert any(p.startswith("13:") and "malformed dependency relation" in p for p in found)


def test_unknown_key_hint_suggests_the_right_name(tmp_path):
    path = write(tmp_path, recipe_text("demo").replace("summary:", "sumary:"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    messages = {d.message: d.hint for d in caught.value.diagnostics}
    assert messages["unknown key 'sumary'"] == "did you mean 'summary'?"
    assert "missing required key 'summary'" in messages


@pytest.mark.parametrize("relation", [
    "python3-numpy >=", "python3-numpy (>= )", "Foo_bar", "a (= 1.0", "pkg (>= 1.0 junk)", "",
])
def test_malformed_relations_are_refused(tmp_path, relation):
    path = write(tmp_path, recipe_text("demo", depends=[relation]))
    assert any("relation" in p for p in problems(path))


@pytest.mark.parametrize("relation", [
    "python3-numpy (>= 1:1.24) | python3-numpy-legacy", "libc6 (>= 2.36)", "foo:any",
    "bar (<< 2.0~rc1) [amd64]", "libwcs8 (= ${binary:Version})",
])
def test_valid_relations_pass(tmp_path, relation):
    load_recipe(write(tmp_path, recipe_text("demo", depends=[relation])))


@pytest.mark.parametrize("old,new,expected", [
    ("name: demo", "name: demo;rm -rf", "invalid value 'demo;rm -rf'"),
    ("name: demo", "name: Demo$(id)", "invalid value 'Demo$(id)'"),
    ('version: "1.0"', "version: 1.0", "expected a string, got the number 1.0"),
    ('version: "1.0"', "version: v1", "invalid value 'v1'"),
    (f"sha256: {'a' * 64}", "sha256: abc", "invalid value 'abc'"),
    (f"  sha256: {'a' * 64}\n", "", "a remote source needs 'sha256'"),
    ("system: pybuild", "system: scons", "'scons' is not one of"),
    ("architecture: all", "architecture: [all]", "expected a string, got a list"),
])
def test_bad_values_are_refused(tmp_path, old, new, expected):
    text = recipe_text("demo")
    assert old in text
    found = problems(write(tmp_path, text.replace(old, new)))
    assert any(expected in p for p in found), found


def test_git_source_needs_a_full_commit(tmp_path):
    text = recipe_text("demo").replace(f"  pypi: demo\n  sha256: {'a' * 64}", "  git: https://example.org/demo.git")
    assert any("needs 'commit'" in p for p in problems(write(tmp_path, text)))
    pinned = text.replace("demo.git", "demo.git\n  commit: " + "0" * 39 + "f")
    assert load_recipe(write(tmp_path, pinned)).source.commit == "0" * 39 + "f"


def test_version_and_changelog_date_come_from_the_suite(suite_dir):
    suite = load_suite(suite_dir)
    recipe = suite.get("aa")
    assert recipe.debian_version(suite.settings) == "1.0-1kern9"
    assert recipe.changelog_date(suite.settings) == "2026-05-01"
    assert suite.get("python3-bb") is suite.get("bb")  # by binary name too


def test_unknown_recipe_suggests_a_close_one(suite_dir):
    with pytest.raises(KernError, match="no recipe named 'bbb'") as caught:
        load_suite(suite_dir).get("bbb")
    assert caught.value.hint == "did you mean 'bb'?"


def test_build_order_puts_dependencies_first(suite_dir):
    suite = load_suite(suite_dir)
    assert [r.name for r in build_order(suite)] == ["aa", "bb", "cc"]
    assert [r.name for r in build_order(suite, ["bb"])] == ["aa", "bb"]
    assert [[r.name for r in w] for w in levels(suite, build_order(suite))] == [
        ["aa"], ["bb"], ["cc"]]
    assert reverse_dependencies(suite, "aa") == {"bb", "cc"}


def test_independent_recipes_share_a_wave(suite_dir):
    (suite_dir / "dd.yaml").write_text(recipe_text("dd", build_depends=["python3-aa"]))
    suite = load_suite(suite_dir)
    waves = [[r.name for r in w] for w in levels(suite, build_order(suite))]
    assert waves == [["aa"], ["bb", "dd"], ["cc"]]


def test_a_cycle_is_reported_at_the_relation_that_closes_it(suite_dir):
    (suite_dir / "aa.yaml").write_text(recipe_text("aa", build_depends=["python3-cc"]))
    with pytest.raises(RecipeError) as caught:
        load_suite(suite_dir)
    [cycle] = caught.value.diagnostics
    assert "dependency cycle" in cycle.message
    assert cycle.path.name in {"aa.yaml", "bb.yaml", "cc.yaml"}
    assert cycle.line > 1


def test_fingerprint_changes_with_the_recipe_not_the_smoke_test(tmp_path):
    base = load_recipe(write(tmp_path, recipe_text("demo"))).fingerprint()
    assert load_recipe(write(tmp_path, recipe_text("demo") + "# comment\n")).fingerprint() == base
    smoke = recipe_text("demo").replace('import demo"', 'import demo; print(1)"')
    assert load_recipe(write(tmp_path, smoke)).fingerprint() == base
    bumped = recipe_text("demo").replace('version: "1.0"', 'version: "1.1"')
    assert load_recipe(write(tmp_path, bumped)).fingerprint() != base


def test_fingerprints_stay_what_build_caches_were_keyed_by(tmp_path):
    # Every build key contains fingerprints: one that moved would rebuild the whole suite.
    assert load_recipe(write(tmp_path, recipe_text("demo"))).fingerprint() == (
        "3774a1fb010c21574a3653439e58ef7ec3241a8f6fd09088ef2f1e0e34064c2e")


def test_a_path_source_keys_the_same_wherever_the_checkout_is(tmp_path):
    """``path:`` is resolved to an absolute path on loading; the key hashes it as written."""
    text = recipe_text("demo").replace(f"pypi: demo\n  sha256: {'a' * 64}", "path: src")

    def fingerprint(checkout: Path) -> str:
        (checkout / "src").mkdir(parents=True)
        recipe = load_recipe(write(checkout, text))
        assert recipe.source.ref == str((checkout / "src").resolve())
        return recipe.fingerprint()

    here = fingerprint(tmp_path / "one")
    assert fingerprint(tmp_path / "elsewhere" / "two") == here
    moved = text.replace("path: src", "path: other")
    (tmp_path / "three" / "other").mkdir(parents=True)
    assert load_recipe(write(tmp_path / "three", moved)).fingerprint() != here


def test_only_a_metapackage_has_no_source(tmp_path):
    text = recipe_text("demo").replace(f"source:\n  pypi: demo\n  sha256: {'a' * 64}\n", "")
    assert any("missing required key 'source'" in p for p in problems(write(tmp_path, text)))
    meta = load_recipe(write(tmp_path, text.replace("system: pybuild", "system: none")))
    assert meta.source.kind == "none"


def test_the_source_map_points_at_lines_after_loading(tmp_path):
    recipe = load_recipe(write(tmp_path, recipe_text("demo", depends=["python3-numpy"])))
    assert recipe.source_map.path == recipe.path
    assert recipe.where(("packages", "python3-demo", "depends", 0)) == (16, 15)
    assert recipe.where(("packages", "python3-demo", "no-such-key")) == (15, 5)  # the parent
    with pytest.raises(TypeError):  # a recipe is frozen, and so is where it came from
        recipe.source_map.values[("name",)] = (9, 9)


def recipe_imports() -> dict[str, set[str]]:
    """Each module of kernbuild.recipe (not its subpackages) and the others it imports,
    wherever the import is: at the top, under TYPE_CHECKING or inside a function."""
    package = Path(kernbuild.recipe.__file__).parent
    modules = {"kernbuild.recipe" + ("" if p.stem == "__init__" else f".{p.stem}"): p
               for p in package.glob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative to the package
                    base = "kernbuild.recipe" + (f".{base}" if base else "")
                # "from P import m" imports module P.m if there is one, else names of P.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        imports[name] = found
    return imports


def test_the_recipe_modules_import_one_way():
    imports = recipe_imports()
    # The stages, as the loader runs them: the model imports the document stage's
    # source map, the graph and the checks import the model, never the reverse.
    assert "kernbuild.recipe.source_map" in imports["kernbuild.recipe.model"]
    assert "kernbuild.recipe.model" in imports["kernbuild.recipe.graph"]
    assert "kernbuild.recipe.model" in imports["kernbuild.recipe.checks"]

    def cycle_from(name: str, trail: list[str]) -> list[str]:
        for other in sorted(imports[name]):
            if other in trail:
                return trail[trail.index(other):] + [other]
            if found := cycle_from(other, trail + [other]):
                return found
        return []

    for name in sorted(imports):
        assert not (cycle := cycle_from(name, [name])), "import cycle: " + " -> ".join(cycle)
