"""Matrix reports: the grid of pipelines x images x targets, JUnit XML, a static HTML page."""

from __future__ import annotations

import html
import re
from pathlib import Path
from xml.etree import ElementTree

from kernbuild.matrix.state import CellResult

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


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>kernbuild matrix</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .4em .8em; text-align: left; }}
td.pass {{ background: #cfc; }} td.fail {{ background: #f99; }} td.skip {{ background: #eee; }}
</style></head><body>
<h1>kernbuild matrix</h1>
<p>{summary}</p>
<table>
<tr><th>pipeline</th><th>image</th><th>form</th>{heads}</tr>
{rows}
</table></body></html>
"""


def write_html(results: list[CellResult], directory: Path) -> Path:
    """index.html with the grid; each cell links its log in logs/."""
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
    page = PAGE.format(summary=", ".join(f"{n} {s}" for s, n in counts.items()),
                       heads="".join(f"<th>{html.escape(t)}</th>" for t in targets),
                       rows="\n".join(lines))
    index = directory / "index.html"
    index.write_text(page)
    return index
