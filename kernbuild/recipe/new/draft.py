"""What a new recipe says, and its YAML in the style of the suite's hand-written recipes.

:mod:`.pypi` and :mod:`.debian` each fill a :class:`Draft`; :func:`render` writes
it out by hand rather than with a YAML dumper, because the suite's recipes have a
shape a dumper does not keep: comments above the keys they concern, flow lists
wrapped under their first item, scalars quoted only where YAML would misread them.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

import yaml

_WIDTH = 100


@dataclass(frozen=True)
class Package:
    name: str
    architecture: str
    section: str
    summary: str | None = None  # for one of several packages
    depends: tuple[str, ...] = ()
    recommends: tuple[str, ...] = ()
    suggests: tuple[str, ...] = ()
    files: tuple[str, ...] | None = None  # when there are several packages


@dataclass(frozen=True)
class Draft:
    """Everything a recipe says, and the comments that go above its keys.

    ``comments`` is keyed by the dotted YAML path of the key a comment belongs to
    ("license", "build.depends", "packages.python3-x.depends"); a comment on a list
    that ends up empty stays, above where the list would be.
    """

    name: str
    version: str
    summary: str
    description: str
    homepage: str | None
    license: str
    copyright: str | None
    source: tuple[tuple[str, str], ...]
    build_system: str
    build_depends: tuple[str, ...]
    packages: tuple[Package, ...]
    smoke: tuple[str, ...]
    comments: dict[str, list[str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    epoch: int | None = None
    revision: int | None = None


def render(draft: Draft) -> str:
    """The recipe's YAML, in the style of the suite's hand-written recipes."""
    lines: list[str] = []

    def put(path: str, text: str | None, indent: int = 0) -> None:
        pad = " " * indent
        for comment in draft.comments.get(path, ()):
            lines.extend(pad + "# " + part for part in
                         _wrap(comment, _WIDTH - indent - 2))
        if text is not None:
            lines.append(pad + text)

    put("name", f"name: {draft.name}")
    put("version", f"version: {json.dumps(draft.version)}")
    if draft.epoch:
        put("epoch", f"epoch: {draft.epoch}")
    if draft.revision:
        put("revision", f"revision: {draft.revision}")
    put("summary", f"summary: {scalar(draft.summary)}")
    put("description", "description: |")
    for paragraph in draft.description.split("\n"):
        lines.extend("  " + part for part in _wrap(paragraph, 78) or [""])
    if draft.homepage:
        put("homepage", f"homepage: {scalar(draft.homepage)}")
    put("license", f"license: {scalar(draft.license)}")
    if draft.copyright:
        put("copyright", f"copyright: {scalar(draft.copyright)}")
    put("source", "source:")
    for key, value in draft.source:
        value = json.dumps(value) if key == "version" else scalar(value)  # quoted, as above
        put(f"source.{key}", f"{key}: {value}", 2)
    put("build", "build:")
    put("build.system", f"system: {draft.build_system}", 2)
    put("build.depends", None, 2)
    if draft.build_depends:
        lines.extend(_flow("depends", draft.build_depends, 2))
    put("packages", "packages:")
    for package in draft.packages:
        at = f"packages.{package.name}"
        put(at, f"{package.name}:", 2)
        put(f"{at}.architecture", f"architecture: {package.architecture}", 4)
        put(f"{at}.section", f"section: {package.section}", 4)
        if package.summary:
            put(f"{at}.summary", f"summary: {scalar(package.summary)}", 4)
        for key in ("depends", "recommends", "suggests"):
            put(f"{at}.{key}", None, 4)
            if getattr(package, key):
                lines.extend(_flow(key, getattr(package, key), 4))
        if package.files is not None:
            put(f"{at}.files", None, 4)
            lines.extend(_flow("files", package.files, 4))
    put("smoke", "smoke:" if draft.smoke else None)
    lines.extend(f"  - run: {scalar(step)}" for step in draft.smoke)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` where words allow: a URL or a path is never split."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def _flow(key: str, items: tuple[str, ...], indent: int) -> list[str]:
    """``key: [a, b, ...]``, wrapped under its first item as the suite's recipes are."""
    head = " " * indent + f"{key}: ["
    lines, line = [], head
    for index, item in enumerate(items):
        piece = scalar(item, flow=True) + ("]" if index == len(items) - 1 else ",")
        if line != head and len(line) + 1 + len(piece) > _WIDTH:
            lines.append(line)
            line = " " * len(head) + piece
        else:
            line += ("" if line == head else " ") + piece
    lines.append(line if items else head + "]")
    return lines


def scalar(value: str, flow: bool = False) -> str:
    """``value`` as a YAML scalar: plain where YAML reads it back as the same string
    (``${binary:Version}`` does not survive a flow list, "1.10" is a number, " #"
    starts a comment), double-quoted otherwise."""
    try:
        plain = yaml.safe_load(f"[{value}]" if flow else value) == ([value] if flow else value)
    except yaml.YAMLError:
        plain = False
    return value if plain and value == value.strip() else json.dumps(value, ensure_ascii=False)
