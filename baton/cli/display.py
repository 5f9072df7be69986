"""How a run shows while it goes and once it ends: a live bar on a terminal, a plain line
every few seconds elsewhere, nothing with --json; then a summary, or its JSON; and its
ledger, as `baton show` prints it."""

from __future__ import annotations

import json
import time
from typing import Any, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.actors.progress import RunProgress, RunResult
from baton.events.errors import EXIT_DONE, EXIT_FAILED, EXIT_INTERRUPTED, RunInterrupted
from baton.projections.ledger import Ledger

from .common import emit_json, err, out, styled

PLAIN_EVERY_S = 5.0  # between two progress lines, when stderr is not a terminal
SHOW_ROWS = 40  # tasks `baton show` lists, past which it keeps to those worth a look


def stopped(interrupted: RunInterrupted) -> NoReturn:
    """Ctrl-C: one line, and the shell's exit code for an interrupt."""
    err.print(str(interrupted), highlight=False, markup=False)
    raise typer.Exit(EXIT_INTERRUPTED)


def finish(result: RunResult, as_json: bool, detached: bool) -> NoReturn:
    if as_json:
        emit_json(_result_json(result))
    elif detached:
        out.print(f"run {result.run_id} continues in a detached coordinator\n"
                  f"follow it: baton status {result.run_id} / baton wait {result.run_id}")
    else:
        _print_result(result)
    raise typer.Exit(EXIT_DONE if result.ok or detached else EXIT_FAILED)


def store_outage(p: RunProgress) -> str:
    """What a coordinator waiting for its store is doing, in one line."""
    since = time.strftime("%H:%M:%S", time.localtime(p.store_down_since))
    return f"store unreachable since {since}, retrying ({p.store_error})"


class ProgressDisplay:
    """How a run goes, on stderr: to a terminal, a live bar (tasks accepted of total, in
    flight, failures, rate); elsewhere (`ray job submit` logs, CI), a plain line every
    PLAIN_EVERY_S; with --json, nothing."""

    def __init__(self, as_json: bool):
        self.bar_shown = not as_json and err.is_terminal
        self.lines_shown = not as_json and not err.is_terminal
        self.line_due = 0.0  # monotonic time the next plain line is due
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err,
            transient=True)
        self.task = self.bar.add_task("tasks accepted", total=None, detail="starting Ray")

    def __enter__(self) -> ProgressDisplay:
        if self.bar_shown:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar_shown:
            self.bar.stop()

    def update(self, p: RunProgress) -> None:
        if self.lines_shown:
            self._line(p)
            return
        if p.waiting_for:
            self.bar.update(self.task, detail=f"[yellow]waiting for {p.waiting_for}[/]")
            return
        detail = (f"in flight {p.in_flight}  failures {p.failures}  rejected {p.rejections}  "
                  f"recoveries {p.recoveries}  {p.assignments_per_s:,.0f} assignments/s")
        if p.escalations:
            detail += f"  [yellow]waiting on people: {p.escalations}[/]"
        if p.store_down_since:
            detail = f"[red]{store_outage(p)}[/]"
        self.bar.update(self.task, completed=p.accepted, total=p.tasks, detail=detail)

    def _line(self, p: RunProgress) -> None:
        now = time.monotonic()
        if now < self.line_due:
            return
        self.line_due = now + PLAIN_EVERY_S
        if p.waiting_for:
            err.print(f"{p.run_id}: waiting for {p.waiting_for}", highlight=False,
                      markup=False, soft_wrap=True)
            return
        line = (f"{p.run_id}: {p.accepted} of {p.tasks} tasks accepted, {p.in_flight} in "
                f"flight, {p.failures} failures, {p.assignments_per_s:,.0f} assignments/s, "
                f"{p.elapsed_s:.0f}s")
        if p.escalations:
            line += f", waiting on people: {p.escalations}"
        if p.store_down_since:
            line += f"; {store_outage(p)}"
        err.print(line, highlight=False, markup=False, soft_wrap=True)


def _result_json(result: RunResult) -> dict[str, Any]:
    p = result.progress
    return {
        "run_id": result.run_id, "status": result.status, "store": result.store,
        "output": result.output, "error": result.error,
        "counts": {"tasks": p.tasks, "accepted": p.accepted, "abandoned": p.abandoned,
                   "escalations": p.escalations, "dispatched": p.dispatched,
                   "failures": p.failures, "rejections": p.rejections,
                   "recoveries": p.recoveries, "events": p.events},
        "elapsed_s": round(p.elapsed_s, 3),
    }


def _print_result(result: RunResult) -> None:
    p = result.progress
    table = Table(box=None, show_header=False)
    table.add_row("run", result.run_id)
    table.add_row("status", styled(result.status))
    table.add_row("tasks", f"{p.accepted} accepted of {p.tasks}"
                  + (f", {p.abandoned} abandoned" if p.abandoned else ""))
    table.add_row("assignments", f"{p.dispatched} dispatched, {p.failures} failed, "
                  f"{p.rejections} rejected, {p.recoveries} recoveries")
    table.add_row("time", f"{p.elapsed_s:.1f}s ({p.assignments_per_s:,.0f} assignments/s)")
    table.add_row("log", f"{p.events} events in {result.store}")
    if result.error:
        table.add_row("error", f"[red]{result.error}[/]")
    if result.status == "waiting":
        table.add_row("waiting", f"{p.escalations} escalation(s) need a person; "
                      f"see: baton show {result.run_id}")
    out.print(table)
    out.print(f"\nnext: baton show {result.run_id}")


def print_ledger(book: Ledger, show_all: bool) -> None:
    out.print(f"[bold]{book.run_id}[/]  {styled(book.status)}  {book.goal}")
    out.print(f"{book.accepted} of {len(book.tasks)} tasks accepted; {book.events} events")
    for line in (book.spent, book.budget):
        if line:
            out.print(line, highlight=False, markup=False)
    if book.parent:
        parent, _, assignment = book.parent.partition(" ")
        out.print(f"a child run: it answers {assignment} of run {parent}", highlight=False)
    if book.forked_from:
        parent, _, seq = book.forked_from.partition("@")
        out.print(f"forked from {parent} at seq {seq} (baton diff {parent} {book.run_id})",
                  highlight=False)
    shown = (book.tasks if show_all or len(book.tasks) <= SHOW_ROWS
             else book.worth_showing(SHOW_ROWS))
    out.print(fitted_table(
        ("task", "status", "attempts", "handler"), "outcome", 24,
        [(line.id + ("" if line.required else " (optional)"), line.status,
          str(line.attempts), line.handler or "-", " ".join(line.outcome.split()))
         for line in shown]))
    if len(shown) < len(book.tasks):
        out.print(f"… {len(book.tasks) - len(shown)} more accepted tasks "
                  f"(baton show {book.run_id} --all lists every task)")
    if book.escalations:
        out.print(f"\n[yellow bold]waiting on people[/] ({len(book.escalations)}):")
        for esc in book.escalations:
            out.print(f"  {esc.id}  {esc.question}", highlight=False)
    if book.error:
        out.print(f"\n[red]error:[/] {book.error}", highlight=False)
    if book.status == "completed":
        out.print("\n[bold]output[/]")
        out.print_json(json.dumps(book.output, default=str))


def fitted_table(
    headers: tuple[str, ...], last: str, last_min: int, rows: list[tuple[str, ...]]
) -> Table:
    """Columns `headers` as wide as their contents, never wrapped (ids must stay whole),
    and a last column that gets what is left of the line, cut short rather than wrapped.
    The second column is a status, shown in its colour."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    table = Table(box=None)
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width)
    table.add_column(last, no_wrap=True, overflow="ellipsis",
                     max_width=max(last_min, out.width - sum(widths) - 2 * len(widths) - 2))
    for first, status, *rest in rows:
        table.add_row(first, styled(status), *rest)
    return table
