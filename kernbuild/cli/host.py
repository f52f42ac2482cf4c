"""``kernbuild doctor``: is this host ready."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from kernbuild.cli import JSON, _print_json, app, out

DOCTOR_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "skip": "[dim]-[/]",
               "fail": "[bold red]FAIL[/]"}


@app.command()
def doctor(ctx: typer.Context,
           gpu: bool = typer.Option(False, "--gpu",
                                    help="Also check the NVIDIA driver, the runtimes' GPU "
                                         "support, the GPUs, and which GPU images can run."),
           as_json: bool = JSON) -> None:
    """Check this host: the Docker engine and the tools kernbuild runs (exit 1 if one fails)."""
    from kernbuild.doctor import diagnose
    from kernbuild.lockfile import lockfile_path

    report = diagnose(lockfile_path(ctx.obj.recipes), with_gpu=gpu)
    if as_json:
        _print_json(report.as_dict())
    else:
        table = Table("", "check", "detail", box=None, show_header=False)
        for index, check in enumerate(report.checks):
            if index == 0 or check.section != report.checks[index - 1].section:
                table.add_row("", f"[bold]{check.section}[/]", "")
            hint = f"\n[dim]hint: {escape(check.hint)}[/]" if check.hint else ""
            table.add_row(DOCTOR_MARK[check.status], escape(check.name),
                          escape(check.detail) + hint)
        out.print(table)
        failed = sum(check.status == "fail" for check in report.checks)
        warned = sum(check.status == "warn" for check in report.checks)
        out.print(f"{failed} check(s) failed" if failed else
                  f"no check failed, {warned} warning(s)" if warned else "no problems found",
                  style="bold red" if failed else "yellow" if warned else "green")
    if not report.ok:
        raise typer.Exit(1)
