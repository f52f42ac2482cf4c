"""Hostile input: every file a user gives kernbuild is read in bounded time, memory and stack.

One test per attack. Each crafted file must come back as diagnostics (most as exactly
one) naming the file and a line, never a hang, a traceback or a MemoryError. Some go
through the real CLI in a subprocess, with a timeout as a safety net: a regression
then fails the test instead of hanging the suite. No test measures time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernbuild import limits
from kernbuild.errors import KernError, RecipeError
from kernbuild.lockfile import read_lock
from kernbuild.recipe import load_suite

# A small recipe that loads: each attack changes one thing of it.
VALID = """\
name: demo
version: "1.0"
summary: a demo tool
description: |
  A demo tool.
license: MIT
source:
  pypi: demo
  sha256: {sha}
build:
  system: pybuild
  depends: [python3-all]
packages:
  python3-demo:
    architecture: all
""".format(sha="a" * 64)


def laughs(levels: int = 12) -> str:
    """The billion laughs: each anchor repeats the one before it nine times."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def lint(tmp_path: Path, content: str | bytes, name: str = "attack.yaml"):
    """The diagnostics of loading ``content`` as the one recipe of a suite."""
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RecipeError) as caught:
        load_suite(tmp_path, [path])
    diagnostics = caught.value.diagnostics
    for diagnostic in diagnostics:
        assert diagnostic.path == path and diagnostic.line >= 1 and diagnostic.column >= 1
    return diagnostics


def one(tmp_path: Path, content: str | bytes, name: str = "attack.yaml"):
    """The single diagnostic ``content`` must give."""
    diagnostics = lint(tmp_path, content, name)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def test_the_valid_recipe_loads(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(VALID)
    assert [r.name for r in load_suite(tmp_path, [path]).recipes] == ["demo"]


# --- expansion, nesting, size ------------------------------------------------------------


def test_billion_laughs(tmp_path):
    found = one(tmp_path, laughs())
    assert "once aliases (*name) are expanded" in found.message
    assert str(limits.MAX_YAML_NODES) in found.message


def test_laughs_inside_a_real_field(tmp_path):
    bomb = "\n".join([f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]"
                      for i in range(1, 9)])
    text = VALID.replace("summary: a demo tool", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n"
                         + bomb + "\nsummary: *x8")
    assert "aliases" in one(tmp_path, text).message


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    "{a: " * 50_000 + "1" + "}" * 50_000,
    "".join("  " * i + "a:\n" for i in range(200)) + "  " * 200 + "b: 1\n",
    "".join("  " * i + "-\n" for i in range(200)),
], ids=["flow-lists", "flow-maps", "block-maps", "block-lists"])
def test_deep_nesting_stops_at_the_depth_limit(tmp_path, text):
    found = one(tmp_path, text)
    assert found.message == f"nested too deeply: more than {limits.MAX_YAML_DEPTH} levels"
    assert found.line <= limits.MAX_YAML_DEPTH + 1  # where it crossed, not the end


@pytest.mark.parametrize("text", ["&a [*a]\n", "&a {b: *a}\n",
                                  VALID + "image: &i {docs: *i}\n"],
                         ids=["list", "mapping", "in-a-recipe"])
def test_an_alias_inside_its_own_anchor(tmp_path, text):
    assert "nested too deeply" in one(tmp_path, text).message


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    found = one(tmp_path, "# " + "x" * limits.MAX_YAML_BYTES + "\n")
    assert f"more than the {limits.MAX_YAML_BYTES} allowed" in found.message
    assert (found.line, found.column) == (1, 1)


@pytest.mark.parametrize("text", ["".join(f"k{i}: 1\n" for i in range(limits.MAX_YAML_NODES)),
                                  "x: [" + "1," * limits.MAX_YAML_NODES + "]\n"],
                         ids=["keys", "items"])
def test_too_many_nodes_within_the_size_limit(tmp_path, text):
    assert len(text) < limits.MAX_YAML_BYTES
    found = one(tmp_path, text)
    assert found.message == f"too large: more than {limits.MAX_YAML_NODES} keys and values"


def test_a_value_over_the_scalar_limit(tmp_path):
    text = VALID.replace("a demo tool", "x" * (limits.MAX_SCALAR_CHARS + 1))
    found = one(tmp_path, text)
    assert "a value too long" in found.message and found.line == 3


def test_a_number_too_long_for_python_to_print(tmp_path):
    # int('9' * 5000) works, but str() of it raises ValueError (more than 4300 digits).
    found = one(tmp_path, VALID + "revision: " + "9" * 5000 + "\n")
    assert "a number too long: 5000 characters" in found.message and found.line == 16


def test_an_infinite_version_is_a_number_not_a_string(tmp_path):
    found = one(tmp_path, VALID.replace('version: "1.0"', "version: 1.0e+999999"))
    assert found.message == "expected a string, got the number inf" and found.line == 2


def test_a_long_bad_value_is_quoted_short(tmp_path):
    found = one(tmp_path, VALID.replace('"1.0"', '"1' + "!" * 60_000 + '"'))
    assert found.message.startswith("invalid value '1!!!") and len(found.message) < 200


def test_a_value_that_made_a_regex_backtrack(tmp_path):
    # cuda.RANGE's adjacent \s* took quadratic time on a run of spaces.
    text = VALID + 'variants:\n  gpu:\n    cuda: "' + " " * 60_000 + '!"\n'
    found = one(tmp_path, text)
    assert found.message.startswith("invalid value '   ") and found.line == 18


def test_many_problems_are_capped_per_file(tmp_path):
    diagnostics = lint(tmp_path, VALID + "".join(f"bad{i}: 1\n" for i in range(500)))
    assert len(diagnostics) == limits.MAX_DIAGNOSTICS_PER_FILE + 1
    assert diagnostics[-1].message == (
        f"{500 - limits.MAX_DIAGNOSTICS_PER_FILE} more problem(s) in this file, not shown")
    assert [d.line for d in diagnostics] == sorted(d.line for d in diagnostics)


# --- bytes and characters -----------------------------------------------------------------


def test_bytes_that_are_not_utf8(tmp_path):
    found = one(tmp_path, VALID.encode().replace(b"a demo tool", b"a demo \xff tool"))
    assert found.message.startswith("not UTF-8 text: byte 0xff")
    assert (found.line, found.column) == (3, 17)


def test_utf16_is_not_utf8(tmp_path):
    assert "not UTF-8" in one(tmp_path, ("\ufeff" + VALID).encode("utf-16-le")).message


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_control_characters(tmp_path, char):
    found = one(tmp_path, VALID.replace("a demo tool", f"a demo{char}tool"))
    assert f"U+{ord(char):04X}" in found.message and (found.line, found.column) == (3, 16)


def test_a_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("\ufeff" + VALID, encoding="utf-8")
    assert load_suite(tmp_path, [path]).recipes[0].name == "demo"


def test_a_tab_for_indentation(tmp_path):
    found = one(tmp_path, VALID.replace("  pypi", "\tpypi"))
    assert "invalid YAML" in found.message and found.line == 8


# --- YAML features a recipe has no use for ---------------------------------------------


@pytest.mark.parametrize("key", ["? [a]\n: b", "null: x", "1.5: x", "? {a: 1}\n: b"])
def test_keys_that_are_no_plain_names(tmp_path, key):
    found = one(tmp_path, VALID + key + "\n")
    assert found.message == "a key must be a plain name" and found.line == 16


def test_a_merge_key(tmp_path):
    found = one(tmp_path, VALID + "<<: {a: 1}\n")
    assert found.message == "merge keys (<<) are not supported" and found.line == 16


@pytest.mark.parametrize("value,tag", [
    ("!!python/object/apply:os.system ['echo pwned']", "!!python/object/apply:os.system"),
    ("!!binary aGVsbG8=", "!!binary"), ("!custom x", "!custom"), ("!!set {a, b}", "!!set"),
    ("!!timestamp 2001-12-14", "!!timestamp"), ("!!omap [a: 1]", "!!omap"),
    ("!!str {a: 1}", "!!str"), ("!!map x", "!!map"),
])
def test_tags(tmp_path, value, tag):
    found = one(tmp_path, VALID.replace("summary: a demo tool", f"summary: {value}"))
    assert found.message == f"the YAML tag {tag} is not allowed here" and found.line == 3


@pytest.mark.parametrize("value,kind", [("!!int abc", "int"), ("!!float abc", "float"),
                                        ("!!bool maybe", "bool")])
def test_a_scalar_that_does_not_read_as_its_tag(tmp_path, value, kind):
    found = one(tmp_path, VALID + f"revision: {value}\n")
    assert found.message.endswith(f"is not a valid {kind}") and found.line == 16


def test_duplicate_keys(tmp_path):
    found = one(tmp_path, VALID + "name: again\n")
    assert found.message == "duplicate key 'name'" and found.line == 16


def test_two_documents(tmp_path):
    found = one(tmp_path, VALID + "---\nname: two\n")
    assert "another document" in found.message and found.line == 16


@pytest.mark.parametrize("text,kind", [("", "nothing (null)"), ("# nothing\n", "nothing (null)"),
                                       ("- a\n", "a list"), ("hello\n", "a string"),
                                       ("3\n", "an integer")])
def test_a_document_that_is_no_mapping(tmp_path, text, kind):
    assert one(tmp_path, text).message == f"expected a mapping, got {kind}"


# --- what the path names --------------------------------------------------------------------


def special(path: Path, kind: str) -> None:
    """Make ``path`` a directory, FIFO, link to a device, link loop or dangling link."""
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")


@pytest.mark.parametrize("kind,message", [
    ("directory", "not a regular file"), ("fifo", "not a regular file"),
    ("device", "not a regular file"), ("loop", "cannot read: Too many levels of symbolic links"),
    ("dangling", "cannot read: No such file or directory")])
def test_a_recipe_that_is_no_regular_file(tmp_path, kind, message):
    special(tmp_path / "attack.yaml", kind)
    with pytest.raises(RecipeError) as caught:
        load_suite(tmp_path)  # found by the directory's *.yaml
    [found] = caught.value.diagnostics
    assert found.path == tmp_path / "attack.yaml" and found.line == 1
    assert found.message == message


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "loop", "dangling"])
def test_a_suite_yaml_that_is_no_regular_file(tmp_path, kind):
    # A suite.yaml link that leads nowhere was taken for no suite.yaml at all.
    special(tmp_path / "suite.yaml", kind)
    with pytest.raises(RecipeError) as caught:
        load_suite(tmp_path)
    [found] = caught.value.diagnostics
    assert found.path == tmp_path / "suite.yaml" and found.line == 1


def test_suite_yaml_gets_the_same_limits(tmp_path):
    (tmp_path / "suite.yaml").write_text(laughs())
    with pytest.raises(RecipeError) as caught:
        load_suite(tmp_path)
    [found] = caught.value.diagnostics
    assert found.path == tmp_path / "suite.yaml" and "aliases" in found.message


# --- patches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,message", [
    ("not-utf8", "patch 'p.patch': not UTF-8 text"),
    ("too-large", f"patch 'p.patch': the file has {limits.MAX_PATCH_BYTES + 1} bytes"),
    ("fifo", "no patch file 'p.patch'"), ("device", "no patch file 'p.patch'"),
    ("directory", "no patch file 'p.patch'")])
def test_a_patch_that_cannot_be_read(tmp_path, kind, message):
    patch = tmp_path / "p.patch"
    if kind == "not-utf8":
        patch.write_bytes(b"--- a\n+++ b\n\xff\n")
    elif kind == "too-large":
        with open(patch, "wb") as handle:
            handle.truncate(limits.MAX_PATCH_BYTES + 1)  # sparse: takes no disk
    else:
        special(patch, kind)
    found = one(tmp_path, VALID + "patches: [p.patch]\n")
    assert found.message.startswith(message) and found.line == 16


def test_a_patch_keeps_its_carriage_returns(tmp_path):
    (tmp_path / "p.patch").write_bytes(b"--- a\r\n+++ b\r\n")
    path = tmp_path / "demo.yaml"
    path.write_text(VALID + "patches: [p.patch]\n")
    [recipe] = load_suite(tmp_path, [path]).recipes
    assert recipe.patches[0].text == "--- a\r\n+++ b\r\n"


# --- kern.lock --------------------------------------------------------------------------------


@pytest.mark.parametrize("content,message", [
    ("[" * 100_000, "cannot be read: maximum recursion depth exceeded"),
    ('{"images": {"a": {"size": ' + "9" * 5000 + "}}}", "cannot be read: Exceeds the limit"),
    (b"\xff", ":1:1: cannot be read: not UTF-8 text"),
    ('{"images":\n {', ":2:3: cannot be read: not JSON"),
    ('{"images": {"a": {"sif": "x"}}}', "the entry of a is not an image record"),
    ('{"images": {"a": {"gpu": "yes"}}}', "not an image record (gpu is a string)"),
    ('{"images": {"a": {"size": true}}}', "not an image record (size is a boolean)"),
    ('{"images": {"a": {"packages": {"x": 1}}}}', "not an image record (packages maps to"),
])
def test_a_hostile_lockfile(tmp_path, content, message):
    lock = tmp_path / "kern.lock"
    lock.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(KernError) as caught:
        read_lock(lock)
    assert str(lock) in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "loop"])
def test_a_lockfile_that_is_no_regular_file(tmp_path, kind):
    special(tmp_path / "kern.lock", kind)
    with pytest.raises(KernError, match="kern.lock:1:1: cannot be read"):
        read_lock(tmp_path / "kern.lock")


def test_a_lockfile_of_the_right_types_still_reads(tmp_path):
    lock = tmp_path / "kern.lock"
    lock.write_text(json.dumps({"images": {"kern/a:1": {"size": 3, "gpu": True, "cuda": "12.4",
                                                        "packages": {"a": "1.0-1kern1"}}}}))
    assert read_lock(lock)["kern/a:1"].cuda == "12.4"


# --- through the real CLI ------------------------------------------------------------------


def cli_lint(tmp_path: Path, files: dict[str, str | bytes | None]):
    """Run ``kernbuild lint`` on a suite of ``files`` (None: a FIFO); (exit, stderr)."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name, content in files.items():
        if content is None:
            os.mkfifo(recipes / name)
        else:
            (recipes / name).write_bytes(content if isinstance(content, bytes)
                                         else content.encode())
    # The timeout is a safety net so that a regression fails here instead of hanging.
    run = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes", str(recipes),
                          "--state", str(tmp_path / "state"), "lint"],
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in run.stdout + run.stderr
    return run.returncode, run.stderr, recipes


@pytest.mark.parametrize("name,content,message", [
    ("attack.yaml", laughs(), "once aliases (*name) are expanded"),
    ("attack.yaml", "[" * 100_000, "nested too deeply"),
    ("attack.yaml", None, "not a regular file"),
    ("attack.yaml", VALID + "revision: " + "9" * 5000 + "\n", "a number too long"),
    ("attack.yaml", b"name: \xff\n", "not UTF-8 text"),
    ("attack.yaml", "name: !!python/object/apply:os.system ['true']\n", "is not allowed"),
    ("attack.yaml", VALID + 'variants:\n  gpu:\n    cuda: "' + " " * 60_000 + '!"\n',
     "invalid value"),
    ("suite.yaml", laughs(), "once aliases (*name) are expanded"),
], ids=["laughs", "deep", "fifo", "huge-int", "not-utf8", "python-tag", "regex", "suite-laughs"])
def test_lint_prints_one_diagnostic_and_fails(tmp_path, name, content, message):
    files = {name: content} if name != "suite.yaml" else {name: content, "demo.yaml": VALID}
    status, stderr, recipes = cli_lint(tmp_path, files)
    assert status == 1
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"{recipes / name}:") and message in lines[0]
