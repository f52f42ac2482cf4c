"""Matrix reports: the grid of pipelines x images x targets, JUnit XML, a static HTML page."""

from __future__ import annotations

import html
import platform
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from kernbuild.matrix.state import CellResult
from kernbuild.results import LockEntry
from kernbuild.runtime import engine_and_runner

if TYPE_CHECKING:
    from kernbuild.matrix import MatrixRun

ROW = tuple[str, str, str]  # pipeline, image, form


def grid(results: list[CellResult]) -> tuple[list[ROW], list[str], dict]:
    """Rows (pipeline, image, form), target columns, and {(row, target): result}."""
    rows = sorted({(r.pipeline, r.image, r.form) for r in results})
    targets = sorted({r.target for r in results})
    cells = {((r.pipeline, r.image, r.form), r.target): r for r in results}
    return rows, targets, cells


def log_name(result: CellResult) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_",
                  f"{result.pipeline}-{result.image}-{result.form}-{result.target}") + ".log"


def write_junit(results: list[CellResult], path: Path) -> None:
    """One testsuite per pipeline, one testcase per cell; skipped cells say why."""
    root = ElementTree.Element("testsuites", name="kernbuild matrix")
    for pipeline in sorted({r.pipeline for r in results}):
        mine = [r for r in results if r.pipeline == pipeline]
        suite = ElementTree.SubElement(
            root, "testsuite", name=pipeline, tests=str(len(mine)),
            failures=str(sum(r.status == "fail" for r in mine)),
            skipped=str(sum(r.status == "skip" for r in mine)),
            time=f"{sum(r.seconds for r in mine):.3f}")
        for r in mine:
            case = ElementTree.SubElement(suite, "testcase", classname=f"{pipeline}.{r.image}",
                                          name=f"{r.form} on {r.target}", time=f"{r.seconds:.3f}")
            if r.status == "fail":
                ElementTree.SubElement(case, "failure", message=r.reason).text = r.log
            elif r.status == "skip":
                ElementTree.SubElement(case, "skipped", message=r.reason)
            ElementTree.SubElement(case, "system-out").text = r.log
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


#: A line an assert prints about what it measured: "... want ...", "image check: PASS".
_RESULT_LINE = re.compile(r"\bwant\b|\bcheck: (PASS|FAIL)\b|\(want ")
RESULT_LINES = 12  # at most, per cell


def result_lines(result: CellResult) -> list[str]:
    """What a cell's asserts said they measured (the peak and its flux, the period and
    DM, each recovered source), as a release manager reads it: from its assert steps,
    or, for a CWL workflow, the lines its assert steps printed into the runner's log."""
    said = []
    for step in result.steps:
        if step.phase not in ("assert", "cwl"):
            continue
        for line in step.output.splitlines():
            line = line.strip()
            if line and (step.phase == "assert" or _RESULT_LINE.search(line)):
                said.append(line)
    return said[-RESULT_LINES:]


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>kernbuild matrix</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: .4em .8em; text-align: left; vertical-align: top; }}
td.pass {{ background: #cfc; }} td.fail {{ background: #f99; }} td.skip {{ background: #eee; }}
td.detail {{ white-space: nowrap; }}
pre {{ margin: 0; white-space: pre-wrap; font-size: 90%; }}
code {{ font-size: 90%; }}
</style></head><body>
<h1>kernbuild matrix</h1>
<p>{when}</p>
<p>{summary}</p>
<table>
<tr><th>pipeline</th><th>image</th><th>form</th>{heads}</tr>
{rows}
</table>
<h2>Images</h2>
<table>
<tr><th>image</th><th>packages (exact versions)</th><th>Docker image id</th><th>size</th>
<th>SIF sha256</th><th>base</th></tr>
{images}
</table>
<h2>Cells</h2>
<table>
<tr><th>pipeline</th><th>image</th><th>form</th><th>target</th><th>runner</th><th>result</th>
<th>time</th><th>what it found, or why not</th><th>kept</th></tr>
{details}
</table></body></html>
"""


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size else ""


def _image_row(lock: LockEntry) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in sorted(lock.packages.items()))
    cells = [lock.tag + (" (GPU, CUDA " + lock.cuda + ")" if lock.gpu and lock.cuda else ""),
             packages, lock.image, _mb(lock.size),
             lock.sif.sha256 if lock.sif else "", f"{lock.base} {lock.base_digest}".strip()]
    return "<tr>" + "".join(f"<td><code>{html.escape(v)}</code></td>" for v in cells) + "</tr>"


def _copy_kept(result: CellResult, kept: Path, directory: Path) -> list[str]:
    """Copy a cell's kept outputs into the report; links to each file, relative."""
    source = kept / result.key
    if not source.is_dir():
        return []
    target = directory / "cells" / log_name(result).removesuffix(".log")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    return [f'<a href="{html.escape(str(path.relative_to(directory)), quote=True)}">'
            f"{html.escape(str(path.relative_to(target)))}</a>"
            for path in sorted(target.rglob("*")) if path.is_file()][:KEPT_LINKS]


KEPT_LINKS = 30  # files linked per cell (a Toil run keeps a log per job)


def write_html(run: "MatrixRun", directory: Path) -> Path:
    """index.html: when and where it ran, the grid, the images (versions, digests), and
    each cell with its runner, duration, result lines (what its asserts measured), a
    skip's reason, a failure's assert and log tail, its log and kept outputs linked."""
    results, images, kept = run.cells, run.images, run.kept
    rows, targets, cells = grid(results)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        tds = []
        for target in targets:
            result = cells.get((row, target))
            if result is None:
                tds.append("<td></td>")
                continue
            name = log_name(result)
            (directory / "logs" / name).write_text(result.log)
            title = html.escape(result.reason or f"{result.seconds:.1f} s", quote=True)
            tds.append(f'<td class="{result.status}" title="{title}">'
                       f'<a href="logs/{name}">{result.status}</a></td>')
        lines.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row)
                     + "".join(tds) + "</tr>")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    details = []
    for result in sorted(results, key=lambda r: (r.pipeline, r.image, r.form, r.target)):
        said = result_lines(result)
        if result.status != "pass":  # the reason first, and a failure's log tail
            said = [result.reason, *said] + ([] if result.status == "skip" else
                                               result.log.splitlines()[-8:])
        engine, runner = engine_and_runner(result.target)
        details.append(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in (
                result.pipeline, result.image, result.form, engine, runner))
            + f'<td class="{result.status} detail"><a href="logs/{log_name(result)}">'
            f"{result.status}</a></td><td>{result.seconds:.1f} s</td>"
            f"<td><pre>{html.escape(chr(10).join(said))}</pre></td>"
            f"<td>{'<br>'.join(_copy_kept(result, kept, directory))}</td></tr>")
    from kernbuild import __version__

    when = (f"run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} by "
            f"kernbuild {__version__}")
    page = PAGE.format(when=html.escape(when),
                       summary=", ".join(f"{n} {s}" for s, n in counts.items()),
                       heads="".join(f"<th>{html.escape(t)}</th>" for t in targets),
                       rows="\n".join(lines), images="\n".join(map(_image_row, images)),
                       details="\n".join(details))
    index = directory / "index.html"
    index.write_text(page)
    return index
