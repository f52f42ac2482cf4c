"""``/.singularity.d``: what makes a root filesystem one that apptainer runs.

:func:`write_singularity_dir` writes it as apptainer's ``build`` does, from the
scripts beside this module in ``templates/singularity.d/`` (small equivalents of
those in apptainer's internal/pkg/build/sources: the action scripts, rendered
with jinja2 so they share one ``source-env.sh``, and the ``env/`` scripts as they
are). A SIF, a CVMFS sandbox and a native chroot all start their commands
through these scripts.
"""

from __future__ import annotations

import json
import os
import re
import stat
import textwrap
from pathlib import Path

import jinja2

from kernbuild.errors import KernError
from kernbuild.fsutil import disk_space

_TEMPLATES = Path(__file__).with_name("templates") / "singularity.d"


def _load_scripts() -> tuple[dict[str, str], dict[str, str]]:
    """The action scripts (rendered) and the env scripts, by name."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                             keep_trailing_newline=True, autoescape=False)
    actions = {path.stem: env.get_template(f"actions/{path.name}").render()
               for path in sorted((_TEMPLATES / "actions").glob("*.j2"))}
    scripts = {path.name: path.read_text() for path in sorted((_TEMPLATES / "env").iterdir())}
    return actions, scripts


#: /.singularity.d/actions/{exec,run,shell,start,test}: source env/*.sh in order, then act.
#: /.singularity.d/env/*.sh but for 10-docker2singularity.sh and 90-environment.sh,
#: which are made from the image.
ACTIONS, ENV_SCRIPTS = _load_scripts()

_MOUNT_DIRS = ("dev", "proc", "root", "var/tmp", "tmp", "etc", "sys", "home")
_SYMLINKS = {"singularity": ".singularity.d/runscript", ".run": ".singularity.d/actions/run",
             ".exec": ".singularity.d/actions/exec", ".test": ".singularity.d/actions/test",
             ".shell": ".singularity.d/actions/shell",
             "environment": ".singularity.d/env/90-environment.sh"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def write_singularity_dir(rootfs: Path, definition: str, labels: dict[str, str],
                          environment: dict[str, str], runscript: str = 'exec "$@"') -> None:
    """Make ``rootfs`` an apptainer root filesystem: ``/.singularity.d`` as apptainer's
    ``build`` writes it, and the mount points apptainer expects.

    - ``actions/{exec,run,shell,start,test}``: source ``env/*.sh`` in order, then act;
    - ``env/10-docker2singularity.sh``: ``environment`` (the image's ``ENV``, from
      ``docker inspect``), exported as apptainer does: PATH as is, every other
      variable only where the caller has not set it;
    - ``env/90-environment.sh``: the definition's ``%environment``; the other
      ``env/`` files as apptainer writes them;
    - ``runscript`` (``runscript``, with ``#!/bin/sh`` unless it has its own ``#!``),
      ``test`` (the definition's ``%test``: the smoke commands), ``startscript``
      and ``runscript.help`` (``%startscript``, ``%help``), ``labels.json``
      (``labels``), ``Singularity`` (``definition``), an empty ``libs/``;
    - /dev, /proc, /sys, /tmp, /var/tmp, /home, /root and empty /etc/hosts and
      /etc/resolv.conf files to bind the host's onto; the legacy ``/singularity``,
      ``/.exec``, ``/.run``, ``/.shell``, ``/.test`` and ``/environment`` symlinks.
      (/etc/localtime is not made: apptainer binds the host's only where the image
      has one.)
    """
    rootfs = Path(rootfs)
    bad = [name for name in environment if not _ENV_NAME.match(name)]
    if bad:
        raise KernError(f"the image's environment has names a shell cannot export: {bad}",
                        "fix the ENV lines of the image")
    sections = _definition_sections(definition)
    with disk_space(rootfs):
        # A Dockerfile can make the root read-only; apptainer adds owner write too.
        os.chmod(rootfs, os.stat(rootfs).st_mode | stat.S_IWUSR)
        for directory in (*_MOUNT_DIRS, ".singularity.d/libs", ".singularity.d/actions",
                          ".singularity.d/env"):
            inside(rootfs, directory).mkdir(mode=0o755, parents=True, exist_ok=True)
        for name, target in _SYMLINKS.items():
            if not os.path.lexists(rootfs / name):
                os.symlink(target, rootfs / name)
        _write(rootfs, "etc/hosts", "", 0o644)
        _write(rootfs, "etc/resolv.conf", "", 0o644)
        for name, text in ACTIONS.items():
            _write(rootfs, f".singularity.d/actions/{name}", text, 0o755)
        env_scripts = {
            **ENV_SCRIPTS,
            "10-docker2singularity.sh": "#!/bin/sh\n" + "".join(
                _export_line(name, value) for name, value in environment.items()),
            "90-environment.sh": "#!/bin/sh\n# Custom environment shell code should follow\n\n"
                                 + _section_text(sections.get("environment", "")),
        }
        for name, text in sorted(env_scripts.items()):
            _write(rootfs, f".singularity.d/env/{name}", text, 0o755)
        _write(rootfs, ".singularity.d/runscript", _script(runscript), 0o755)
        _write(rootfs, ".singularity.d/startscript",
               _script(sections.get("startscript", ""), empty="#!/bin/sh\n"), 0o755)
        if sections.get("test", "").strip():
            _write(rootfs, ".singularity.d/test", _script(sections["test"]), 0o755)
        if sections.get("help", "").strip():
            _write(rootfs, ".singularity.d/runscript.help", _section_text(sections["help"]), 0o644)
        _write(rootfs, ".singularity.d/labels.json",
               json.dumps(labels, indent="\t", sort_keys=True), 0o644)
        _write(rootfs, ".singularity.d/Singularity", definition, 0o644)


# The sections apptainer's parser knows; any other "%word" line is text of a section.
_SECTIONS = ("help", "setup", "files", "labels", "environment", "post", "runscript", "test",
             "startscript", "arguments")


def _definition_sections(definition: str) -> dict[str, str]:
    """{section name: its raw text} of a definition file (``%name`` at a line's start)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in definition.splitlines():
        match = re.match(r"%(\w+)\b", line)
        if match and match.group(1).lower() in _SECTIONS:
            current = sections.setdefault(match.group(1).lower(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _section_text(text: str) -> str:
    text = textwrap.dedent(text).strip("\n")
    return text + "\n" if text else ""


def _script(text: str, empty: str = "") -> str:
    """A section as an executable script: ``#!/bin/sh`` unless it brings its own (as
    apptainer's handleShebangScript)."""
    body = _section_text(text)
    if not body:
        return empty
    if body.startswith("#!"):
        return body
    return "#!/bin/sh\n\n" + body


def _export_line(name: str, value: str) -> str:
    # As apptainer's OCI conveyor: the image's PATH wins; any other variable keeps the
    # value a user gives it (apptainer --env, or the host's environment).
    quoted = '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'
    if name == "PATH":
        return f"export PATH={quoted}\n"
    return f'export {name}="${{{name}:-{quoted}}}"\n'


def inside(rootfs: Path, relative: str) -> Path:
    """``rootfs/relative``, refused where its parent resolves outside ``rootfs`` (an image
    whose /etc is a symlink to / would otherwise have us write this machine's files)."""
    path = rootfs / relative
    real_root = os.path.realpath(rootfs)
    parent = os.path.realpath(path.parent)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise KernError(f"/{relative} in {rootfs} leads outside the image (a symlink)",
                        "fix the image: its directories must not link outside it")
    return path


def _write(rootfs: Path, relative: str, text: str, mode: int) -> None:
    path = inside(rootfs, relative)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_symlink():  # replaced, never written through
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)
