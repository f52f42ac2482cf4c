"""Fuzzing the loader: the suite's real recipes, mutated, fed to loader, schema and checks.

Three kinds of mutation of ``recipes/*.yaml`` (and ``suite.yaml``): bytes (flips,
insertions, deletions, truncation), YAML structure (keys dropped, duplicated,
renamed; values replaced by lists, mappings, numbers, null, huge strings, aliases)
and values (a scalar replaced by hostile text). Whatever comes out, loading it must
either succeed or raise kernbuild's own error, each diagnostic naming the mutated
file and a line; any other exception fails the test, and hypothesis shrinks it.

The run is bounded and derandomized, so CI sees the same examples each time, within
a few seconds. ``KERNBUILD_FUZZ_EXAMPLES=N`` runs N random examples per test instead,
for a longer hunt. Each case found that once broke the loader is kept, minimised, in
``fuzz_corpus/`` and loaded by :func:`test_corpus_case_gives_clean_diagnostics`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernbuild.errors import KernError, RecipeError
from kernbuild.recipe import load_suite

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SOURCES = sorted(p for p in RECIPES.glob("*.yaml") if p.name != "suite.yaml")
CORPUS = Path(__file__).parent / "fuzz_corpus"

EXAMPLES = int(os.environ.get("KERNBUILD_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 300, deadline=None, derandomize=not EXAMPLES,
                database=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])

# Text a hostile or careless user might put anywhere.
HOSTILE = st.sampled_from([
    "", " ", "\t", "~", "null", "-1", "0", "1.0e+999999", ".nan", "9" * 5000, "0x" + "f" * 200,
    "*a", "&a x", "&a [*a]", "!!python/object/apply:os.system ['true']", "!!binary aGk=",
    "!!int x", "!!bool maybe", "!custom x", "<<: {a: 1}", "? [a]\n: b", "[[[[[[", "{a: {a: {a:",
    "'unterminated", '"\\x00"', "${binary:Version}", "a (>= 1:1.0) | b [amd64] <!nocheck>",
    "a (>=", "a | | b", ">=12.0, <13", " " * 2000 + "!", "x" * 70_000, "2026-13-45",
    "\ufeff", "\u2028", "é", "\\", "%", "@", "`", "---", "...", "#", "- - -",
])
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), HOSTILE,
    st.text(max_size=40), st.lists(st.text(max_size=10), max_size=4),
    st.dictionaries(st.text(max_size=10), st.integers(), max_size=3),
    st.recursive(st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.text(max_size=5), inner, max_size=3), max_leaves=20),
)


@dataclass
class Tally:
    """What one fuzz test tried, for the line it prints."""

    tried: int = 0
    loaded: int = 0
    diagnostics: int = 0

    def line(self, what: str) -> str:
        return (f"fuzz: {self.tried} {what} tried, 0 escaped, {self.loaded} loaded, "
                f"{self.diagnostics} diagnostics with file:line")


@pytest.fixture(scope="module")
def suite_dir():
    """A recipes directory with the suite's data (patches, pipeline files) linked in, so
    that mutated recipes still find them, and no settings of its own."""
    with tempfile.TemporaryDirectory() as directory:
        for entry in RECIPES.iterdir():
            if entry.is_dir():
                (Path(directory) / entry.name).symlink_to(entry)
        yield Path(directory)


def check(directory: Path, name: str, content: bytes, tally: Tally) -> None:
    """Load ``content`` as the file ``name`` of ``directory``; only kernbuild's errors
    may come out, each diagnostic naming the file and a line."""
    path = directory / name
    path.write_bytes(content)
    tally.tried += 1
    try:
        if name == "suite.yaml":
            load_suite(directory, [SOURCES[0]])
        else:
            load_suite(directory, [path])
        tally.loaded += 1
    except RecipeError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            if name == "suite.yaml" and diagnostic.path == SOURCES[0]:
                continue  # the recipe, checked against mutated settings
            assert diagnostic.path == path, diagnostic
            assert diagnostic.line >= 1 and diagnostic.column >= 1, diagnostic
            tally.diagnostics += 1
    except KernError as exc:  # not a diagnostic, but it must still name the file
        assert str(path) in str(exc)
    finally:
        if name == "suite.yaml":
            path.unlink()


# --- mutations ----------------------------------------------------------------------------


@st.composite
def byte_mutations(draw) -> tuple[str, bytes]:
    source = draw(st.sampled_from(SOURCES + [RECIPES / "suite.yaml"]))
    data = bytearray(source.read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8)
                               | st.sampled_from([b"\n", b":", b"[", b"{", b"&a ", b"*a",
                                                  b"!!", b"\t", b"\xff", b"\x00", b"- "]))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        elif op == "truncate":
            del data[at:]
        elif op == "repeat":  # a line many times over: duplicate keys, long files
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            line = bytes(data[start:end + 1 if end >= 0 else len(data)])
            data[start:start] = line * draw(st.integers(1, 300))
    return source.name, bytes(data)


def _paths(value, path=()):
    """Every path into a nested dict/list value, itself included."""
    yield path
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        yield from _paths(item, path + (key,))


@st.composite
def structure_mutations(draw) -> tuple[str, bytes]:
    source = draw(st.sampled_from(SOURCES + [RECIPES / "suite.yaml"]))
    data = yaml.safe_load(source.read_text())
    extra = ""
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "drop", "rename", "duplicate", "add"]))
        if not path:
            if op == "replace":
                data = draw(VALUES)
            continue
        if op == "replace":
            parent[path[-1]] = draw(VALUES)
        elif op == "drop":
            del parent[path[-1]]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12) | HOSTILE)] = parent.pop(path[-1])
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12) | st.sampled_from(["name", "source", "sha256"]))] \
                = draw(VALUES)
        elif op == "duplicate" and len(path) == 1 and isinstance(data, dict):
            extra += yaml.safe_dump({path[0]: parent[path[0]]}, allow_unicode=True)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False) + extra
    return source.name, text.encode("utf-8", "surrogatepass")


@st.composite
def value_mutations(draw) -> tuple[str, bytes]:
    """One scalar of the file, replaced in its text by hostile text (unquoted: it may
    be YAML syntax, an alias or a tag)."""
    source = draw(st.sampled_from(SOURCES))
    lines = source.read_text().splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if ": " in line or line.lstrip()[:2] == "- "]
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.sampled_from(candidates))
        line = lines[index]
        cut = line.index(": ") + 2 if ": " in line else line.index("- ") + 2
        lines[index] = line[:cut] + draw(HOSTILE | st.text(max_size=30)) + "\n"
    return source.name, "".join(lines).encode("utf-8", "surrogatepass")


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind,strategy", [("byte", byte_mutations()),
                                           ("structure", structure_mutations()),
                                           ("value", value_mutations())])
def test_mutated_recipes_give_only_diagnostics(suite_dir, figure, kind, strategy):
    tally = Tally()

    @FUZZ
    @given(strategy)
    def fuzz(case: tuple[str, bytes]) -> None:
        check(suite_dir, *case, tally)

    fuzz()
    assert tally.tried >= FUZZ.max_examples // 2  # hypothesis ran it, not a stub
    figure(tally.line(f"{kind} mutations of recipes"))


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))


def test_the_corpus_is_kept():
    assert len(corpus()) >= 5


@pytest.mark.parametrize("case", corpus(), ids=lambda p: p.name)
def test_corpus_case_gives_clean_diagnostics(tmp_path, case):
    """A minimised input that once broke the loader: now one clean diagnostic or more.

    Each file's first line says what it broke and how (``# found: ...``)."""
    tally = Tally()
    check(tmp_path, case.name, case.read_bytes(), tally)
    assert tally.diagnostics >= 1  # none of them is a valid recipe
