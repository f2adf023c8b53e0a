"""Terminal pieces shared by the commands: a progress bar and ``skopos doctor``'s table (rich).

Progress goes to standard error and only when it is a terminal, so ``--json`` output and
pipes stay clean.

Example::

    with progress_bar("reading PocketBase", unit="sessions") as advance:
        advance(10, 100)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from skopos._admin.doctor import Check

__all__ = ["ProgressCallback", "print_checks", "progress_bar"]

ProgressCallback = Callable[[int, int], None]
_STATUS = {
    "ok": ("✔ ok", "green"),
    "warning": ("! warning", "yellow"),
    "problem": ("✖ problem", "bold red"),
    "skipped": ("- skipped", "dim"),
}


@contextmanager
def progress_bar(description: str, *, unit: str = "") -> Iterator[ProgressCallback]:
    """A callback ``advance(done, total)`` drawing a bar on stderr (a no-op off a terminal)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done) or None)

        yield advance


def print_checks(checks: list[Check], console: Console) -> None:
    """``skopos doctor``'s verdicts as a table, then one line saying what it adds up to.

    Example::

        print_checks(run_doctor(options), Console())
    """
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, expand=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("what was found", ratio=3)
    table.add_column("fix", ratio=2, style="cyan")
    for check in checks:
        label, style = _STATUS[check.status]
        table.add_row(check.name, Text(label, style=style), check.summary, check.fix)
    console.print(table)
    problems = sum(check.status == "problem" for check in checks)
    warnings = sum(check.status == "warning" for check in checks)
    if problems:
        console.print(Text(f"{problems} problem(s), {warnings} warning(s)", style="bold red"))
    elif warnings:
        console.print(Text(f"all good, {warnings} warning(s)", style="yellow"))
    else:
        console.print(Text("all good", style="bold green"))
