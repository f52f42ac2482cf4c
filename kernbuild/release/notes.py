"""What a release is, compared with the one before, and when the next is due: pure logic.

``kernbuild release`` gathers a :class:`ReleaseRecord` (the recipes and the exact
package versions it freezes, its images by digest, its matrix grid); everything
that decides anything about it is here, without Docker, apt or the file system,
so that the rules are unit-tested directly:

- :func:`compare`: the notes against the previous release: recipes added, dropped
  (each with the reason ``dropped:`` in suite.yaml gives; a drop without one is an
  error, as a silent drop is what users of the previous release trip over),
  upgraded (a new upstream version) and rebuilt only (the same upstream version,
  a new Debian version, which every release gives: ``kern1`` becomes ``kern2``);
- :func:`refused_cells`: a failing matrix cell refuses the release unless
  ``accepted_failures:`` names it with a reason (one known failure should not
  block a release; an unknown one must);
- :func:`due_date`: the cadence (``calendar:``), KERN-N due ``first + (N-1) * months``;
- :func:`render_markdown`: the notes for people (:func:`kernbuild.results.to_json`
  of :class:`ReleaseNotes` is the form for machines).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from kernbuild.errors import KernError
from kernbuild.fsutil import human_size
from kernbuild.recipe.settings import Calendar


@dataclass(frozen=True)
class ReleasedRecipe:
    """One recipe as a release freezes it: its upstream version, its source package's
    Debian version, each binary package's exact version and pool file's sha256."""

    name: str
    upstream: str
    version: str
    packages: dict[str, str] = field(default_factory=dict)  # package -> exact version
    files: dict[str, str] = field(default_factory=dict)  # pool file -> sha256


@dataclass(frozen=True)
class ReleasedImage:
    """An image of the release, by digest: tags come and go, digests are forever."""

    tag: str
    recipe: str
    digest: str  # the Docker image id, sha256:...
    size: int = 0
    base_digest: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    sif_sha256: str = ""
    sandbox: str = ""  # the CVMFS path named after the release, when published there


@dataclass(frozen=True)
class ReleasedBuildImage:
    """The build image a release's packages were built in, kept in the engine as
    ``kern/build:<distribution>`` and recorded with every package installed in it (what
    Debian's .buildinfo keeps as Installed-Build-Depends): ``kernbuild reproduce``
    rebuilds in it, or, once it is gone, names what changed in the one it used."""

    tag: str  # kern/build:kern-N
    image: str  # its id, sha256:...
    packages: dict[str, str] = field(default_factory=dict)  # package -> version


def build_image_changes(released: dict[str, str], used: dict[str, str]) -> tuple[str, ...]:
    """How the packages of a build image ``used`` differ from the release's:
    ``name old -> new``, ``+name new`` (only in ``used``), ``-name old`` (gone)."""
    changes = []
    for name in sorted(set(released) | set(used)):
        old, new = released.get(name), used.get(name)
        if old == new:
            continue
        changes.append(f"+{name} {new}" if old is None else f"-{name} {old}" if new is None
                       else f"{name} {old} -> {new}")
    return tuple(changes)


@dataclass(frozen=True)
class ReleasedCell:
    """One matrix cell's outcome; ``accepted`` is the suite's reason for shipping a
    failure."""

    pipeline: str
    image: str
    form: str
    target: str
    status: str  # pass, fail or skip
    reason: str = ""
    accepted: str = ""

    @property
    def key(self) -> str:
        """How ``accepted_failures:`` names it: ``pipeline/image/target``."""
        return cell_key(self.pipeline, self.image, self.target)


@dataclass(frozen=True)
class ReleaseRecord:
    """Everything a release is, as kept in ``releases/<distribution>/release.json``."""

    suite: str
    number: int
    distribution: str
    due: str  # YYYY-MM-DD, from the calendar
    recipes: tuple[ReleasedRecipe, ...] = ()
    images: tuple[ReleasedImage, ...] = ()
    cells: tuple[ReleasedCell, ...] = ()
    generation: int = 0  # the repository generation that first served it
    matrix_run: bool = True  # False in a dry run: the grid is not known yet
    build_image: ReleasedBuildImage | None = None  # None: cut before it was recorded

    @property
    def title(self) -> str:
        return f"{self.suite.upper()}-{self.number}"

    def recipe(self, name: str) -> ReleasedRecipe | None:
        return next((r for r in self.recipes if r.name == name), None)


@dataclass(frozen=True)
class Change:
    """One line of the notes: a recipe ``added``, ``dropped``, ``upgraded`` or
    ``rebuilt`` (only), with the versions before and after and a drop's reason."""

    name: str
    kind: str
    old: str = ""  # upgraded: the old upstream version; rebuilt, dropped: old Debian version
    new: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ReleaseNotes:
    """The release against the previous one (``previous`` None for the first)."""

    release: str  # KERN-2
    distribution: str
    due: str
    previous: str | None
    added: tuple[Change, ...] = ()
    dropped: tuple[Change, ...] = ()
    upgraded: tuple[Change, ...] = ()
    rebuilt: tuple[Change, ...] = ()
    images: tuple[ReleasedImage, ...] = ()
    cells: tuple[ReleasedCell, ...] = ()
    matrix_run: bool = True
    next_release: str = ""
    next_due: str = ""
    dry_run: bool = False


def cell_key(pipeline: str, image: str, target: str) -> str:
    return f"{pipeline}/{image}/{target}"


def due_date(calendar: Calendar, number: int) -> dt.date:
    """When KERN-``number`` is due: ``calendar.first`` plus (number-1) * months (the
    day of the month kept, clamped to the month's last day)."""
    first = dt.date.fromisoformat(calendar.first)
    months = first.month - 1 + (number - 1) * calendar.months
    year, month = first.year + months // 12, months % 12 + 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(first.day, last))


def release_months(calendar: Calendar) -> list[int]:
    """The months of the year releases fall in (for a cron schedule): ``[5, 11]``."""
    if 12 % calendar.months:
        return sorted({due_date(calendar, n).month for n in range(1, 13)})
    return sorted({due_date(calendar, n).month for n in range(1, 12 // calendar.months + 1)})


def compare(previous: ReleaseRecord | None, current: ReleaseRecord,
            dropped: dict[str, str], where: str = "suite.yaml") -> tuple[
                tuple[Change, ...], tuple[Change, ...], tuple[Change, ...], tuple[Change, ...]]:
    """(added, dropped, upgraded, rebuilt) of ``current`` against ``previous``.

    A recipe of the previous release that ``current`` lacks must be named in
    ``dropped`` with its reason; a recipe named there that ``current`` still has is
    a contradiction. Either is one KernError at ``where`` (``path:line:column`` of
    suite.yaml's ``dropped:`` or ``release:``) listing every such recipe.
    """
    before = {r.name: r for r in previous.recipes} if previous else {}
    now = {r.name: r for r in current.recipes}
    unexplained = sorted(set(before) - set(now) - set(dropped))
    if unexplained:
        example = unexplained[0]
        raise KernError(
            f"{where}: {current.title} drops {', '.join(unexplained)} of "
            f"{previous.title if previous else '?'} without a reason",
            f"say why in suite.yaml, for the release notes: dropped: {{{example}: <reason>}} "
            f"(or bring back recipes/{example}.yaml)")
    contradicted = sorted(set(dropped) & set(now))
    if contradicted:
        raise KernError(f"{where}: {', '.join(contradicted)} listed under dropped: but still "
                        "a recipe of the suite",
                        "remove it from dropped:, or remove its recipe file")
    added = tuple(Change(n, "added", "", now[n].upstream) for n in sorted(set(now) - set(before)))
    gone = tuple(Change(n, "dropped", before[n].upstream, "", dropped[n])
                 for n in sorted(set(before) - set(now)))
    upgraded, rebuilt = [], []
    for name in sorted(set(now) & set(before)):
        old, new = before[name], now[name]
        if old.upstream != new.upstream:
            upgraded.append(Change(name, "upgraded", old.upstream, new.upstream))
        elif old.version != new.version or old.packages != new.packages:
            rebuilt.append(Change(name, "rebuilt", old.version, new.version))
    return added, gone, tuple(upgraded), tuple(rebuilt)


def with_accepted(cells: tuple[ReleasedCell, ...],
                  accepted: dict[str, str]) -> tuple[ReleasedCell, ...]:
    """The cells, each failure the suite accepts carrying its reason."""
    return tuple(replace(c, accepted=accepted[c.key]) if c.status == "fail" and c.key in accepted
                 else c for c in cells)


def refused_cells(cells: tuple[ReleasedCell, ...]) -> list[ReleasedCell]:
    """The failures that refuse a release: every failed cell without an accepted reason.
    (A skipped cell, such as apptainer where none can run, says why and refuses nothing.)"""
    return [c for c in cells if c.status == "fail" and not c.accepted]


def refuse_failures(cells: tuple[ReleasedCell, ...], title: str, where: str) -> None:
    """KernError naming each failing cell not accepted, and how to accept one."""
    refused = refused_cells(cells)
    if refused:
        lines = "\n".join(f"  {c.key} ({c.form}): {c.reason}" for c in refused)
        raise KernError(
            f"{where}: {title} is refused: {len(refused)} matrix cell"
            f"{'s' if len(refused) != 1 else ''} failed:\n{lines}",
            "fix them (kernbuild test shows the logs), or accept one with its reason: "
            f"accepted_failures: {{{refused[0].key}: <why it may ship>}} in suite.yaml")


def make_notes(previous: ReleaseRecord | None, current: ReleaseRecord,
               dropped: dict[str, str], calendar: Calendar, where: str = "suite.yaml",
               dry_run: bool = False) -> ReleaseNotes:
    """The notes of ``current`` against ``previous`` (see :func:`compare`)."""
    added, gone, upgraded, rebuilt = compare(previous, current, dropped, where)
    return ReleaseNotes(
        current.title, current.distribution, current.due,
        previous.title if previous else None, added, gone, upgraded, rebuilt,
        current.images, current.cells, current.matrix_run,
        f"{current.suite.upper()}-{current.number + 1}",
        due_date(calendar, current.number + 1).isoformat(), dry_run)


def render_markdown(notes: ReleaseNotes) -> str:
    """The release notes as Markdown, for people."""
    lines = [f"# {notes.release} (`{notes.distribution}`), due {notes.due}", ""]
    if notes.dry_run:
        lines += ["*Dry run: nothing is frozen yet; versions as the recipes give them.*", ""]
    lines += [f"Against {notes.previous}." if notes.previous else "The first release.", ""]
    lines += ["## Packages", ""]
    sections = [
        ("Added", notes.added, lambda c: f"- {c.name} {c.new}"),
        ("Dropped", notes.dropped, lambda c: f"- {c.name} {c.old}: {c.reason}"),
        ("Upgraded", notes.upgraded, lambda c: f"- {c.name}: {c.old} → {c.new}"),
        ("Rebuilt only", notes.rebuilt, lambda c: f"- {c.name}: {c.old} → {c.new}"),
    ]
    for title, changes, line in sections:
        lines.append(f"### {title} ({len(changes)})")
        lines += [line(c) for c in changes] or ["- none"]
        lines.append("")
    lines += ["## Images", ""]
    if notes.images:
        lines += ["| image | digest | size | SIF sha256 |", "|---|---|---|---|"]
        lines += [f"| {i.tag} | `{i.digest}` | {human_size(i.size)} | "
                  f"{('`' + i.sif_sha256 + '`') if i.sif_sha256 else '-'} |" for i in notes.images]
    else:
        lines.append("none recorded")
    lines += ["", "## Matrix", ""]
    if not notes.matrix_run:
        lines.append("not run (dry run): `kernbuild release` runs it before freezing")
    elif notes.cells:
        lines += ["| pipeline | image | form | target | result | note |",
                  "|---|---|---|---|---|---|"]
        for c in notes.cells:
            status = "fail (accepted)" if c.accepted else c.status
            note = c.accepted or c.reason
            lines.append(f"| {c.pipeline} | {c.image} | {c.form} | {c.target} | {status} | "
                         f"{note.replace('|', '/') or '-'} |")
    else:
        lines.append("no cells")
    lines += ["", f"Next: {notes.next_release}, due {notes.next_due}.", ""]
    return "\n".join(lines)
