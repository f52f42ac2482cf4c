"""The variations of a reproducibility rebuild, as reprotest applies them: pure logic.

``kernbuild reproduce`` rebuilds a release's packages with the build environment
changed in ways that must not reach a .deb (:data:`VARIATIONS`): another build
path, a clock a year and a month ahead (libfaketime, Debian's ``faketime``), a
time zone 14 hours east of UTC, a group-writable umask, another hostname, and a
French locale. :func:`choose` reads ``--vary`` in reprotest's spelling;
:func:`conditions` turns the chosen ones into the build container's
:class:`~kernbuild.build.package.BuildConditions`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernbuild.build.package import BuildConditions
from kernbuild.errors import KernError

#: Where the varied build's directory is mounted instead of /build.
VARIED_ROOT = "/srv/kern-reproduce/another/build-path"
#: libfaketime's offset: a year and a month ahead, so year, month and day all differ.
CLOCK_OFFSET = "+398d"
#: A POSIX TZ (no tzdata needed): local time is UTC+14, so the date differs from UTC's.
TIME_ZONE = "UTC-14"
UMASK = "0002"  # builds normally run with 0022
HOSTNAME = "kern-reproduce-varied"
LOCALE = "fr_CH.UTF-8"  # a decimal comma, another collation, messages in French


@dataclass(frozen=True)
class Variation:
    """One thing the rebuild varies, as reprotest names it, and what it sets."""

    name: str
    description: str


VARIATIONS: dict[str, Variation] = {v.name: v for v in (
    Variation("build_path", f"the build directory is {VARIED_ROOT}, not /build"),
    Variation("time", f"the clock is {CLOCK_OFFSET[1:-1]} days ahead (faketime {CLOCK_OFFSET}; "
                      "file times read by stat() stay real)"),
    Variation("timezone", f"TZ={TIME_ZONE}"),
    Variation("umask", f"umask {UMASK}, not 0022"),
    Variation("hostname", f"the container's hostname is {HOSTNAME}"),
    Variation("locales", f"LANG=LC_ALL={LOCALE}, LANGUAGE=fr_CH:fr"),
)}


def choose(vary: str = "") -> tuple[str, ...]:
    """The variations ``vary`` asks for, in :data:`VARIATIONS`' order.

    reprotest's spelling: comma-separated names, each adding one (``+name`` too), or
    ``-name`` taking one away; ``all`` or ``-all`` first. Empty means all of them, and
    so does a list that starts by taking one away (``-time``: all but the clock).
    A name that is no variation is one KernError listing those there are.
    """
    items = [item.strip() for item in vary.split(",") if item.strip()]
    chosen = set(VARIATIONS) if not items or items[0].startswith("-") else set()
    for item in items:
        sign, name = (item[0], item[1:]) if item[0] in "+-" else ("+", item)
        names = set(VARIATIONS) if name == "all" else {name}
        if not names <= set(VARIATIONS):
            raise KernError(f"--vary {vary}: {name!r} is no variation",
                            f"choose from {', '.join(VARIATIONS)} (or all); -NAME leaves one "
                            "out")
        chosen = chosen - names if sign == "-" else chosen | names
    return tuple(name for name in VARIATIONS if name in chosen)


def conditions(chosen: tuple[str, ...]) -> BuildConditions:
    """The build container's conditions under the ``chosen`` variations."""
    environment: list[tuple[str, str]] = []
    packages: list[str] = []
    setup: list[tuple[str, ...]] = []
    prefix: list[str] = []
    if "umask" in chosen:  # a process's own, so set by the shell that becomes the build
        prefix += ["sh", "-c", f'umask {UMASK} && exec "$@"', "umask"]
    if "time" in chosen:
        packages.append("faketime")
        prefix += ["faketime", "-f", CLOCK_OFFSET]
        # libfaketime shifts the times stat() reports too, so a file copied with its
        # time kept (install -p, cp -p: an upstream changelog) would get a time a year
        # ahead, which dh then clamps to SOURCE_DATE_EPOCH: a difference of faketime's
        # making, not the build's. Only the clock is varied.
        environment.append(("NO_FAKE_STAT", "1"))
    if "timezone" in chosen:
        environment.append(("TZ", TIME_ZONE))
    if "locales" in chosen:
        # The base has C.UTF-8 only: make the one locale used, before going offline.
        packages.append("locales")
        language, _, charset = LOCALE.partition(".")
        setup.append(("localedef", "-i", language, "-c", "-f", charset, LOCALE))
        environment += [("LANG", LOCALE), ("LC_ALL", LOCALE), ("LANGUAGE", "fr_CH:fr")]
    return BuildConditions(
        root=VARIED_ROOT if "build_path" in chosen else BuildConditions.root,
        hostname=HOSTNAME if "hostname" in chosen else "",
        environment=tuple(environment), packages=tuple(packages), setup=tuple(setup),
        prefix=tuple(prefix))
