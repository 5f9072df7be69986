"""The `baton` command: run a spec on Ray, list runs, show a run's ledger.

Every command takes --store URL (default sqlite:///.baton/baton.db, or $BATON_STORE)
and --json (machine-readable output on stdout, nothing else there). Exit codes:
0 done, 1 the run failed (or waits on people), 2 bad input.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.actors.coordinator import Progress as RunProgress
from baton.actors.launcher import ClusterUnavailable, RunResult, store_url
from baton.actors.launcher import run as launch
from baton.actors.spec import load_spec
from baton.events.errors import BadSpec, BadStoreURL, BatonError, UnknownRun
from baton.events.store import open_store
from baton.projections.ledger import Ledger, TaskLine, ledger

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
BAD_INPUT = (BadSpec, BadStoreURL, UnknownRun, ClusterUnavailable)
SHOW_ROWS = 40

app = typer.Typer(
    name="baton",
    help=(
        "Run multi-agent work on Ray with every decision recorded.\n\n"
        "Start with: baton run examples/stdlib_audit.py, then baton runs and "
        "baton show RUN.\n\n"
        "Exit codes: 0 done, 1 the run failed or waits on people, 2 bad input."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True)

Store = Annotated[
    str | None,
    typer.Option("--store", envvar="BATON_STORE", show_envvar=True, metavar="URL",
                 help="Where logs are kept: sqlite:///path.db or memory:// "
                      "[default: sqlite:///.baton/baton.db]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout and nothing else.")]


def _fail(error: BatonError) -> NoReturn:
    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    raise typer.Exit(EXIT_BAD_INPUT if isinstance(error, BAD_INPUT) else EXIT_FAILED)


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="path/to/spec.py or package.module:spec")],
    store: Store = None,
    address: Annotated[str | None, typer.Option(
        "--address", envvar="RAY_ADDRESS", metavar="ADDR",
        help="Ray cluster to attach to; without one, a local Ray is started.")] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", metavar="ID", help="Name the run (default: run-DATE-TIME-XXXX).")] = None,
    as_json: AsJson = False,
) -> None:
    """Run a spec to its end on Ray, showing progress, then summarise it.

    The spec is checked before anything starts: a missing file, no `spec` in the
    module, an unknown capability, a dependency cycle or a duplicate task id is refused
    with exit code 2.
    """
    try:
        loaded = load_spec(spec)
        loaded.validate()
        with _ProgressDisplay(enabled=not as_json and err.is_terminal) as display:
            result = launch(loaded, store, address, run_id=run_id, on_progress=display.update)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(_result_json(result))
    else:
        _print_result(result)
    raise typer.Exit(EXIT_DONE if result.ok else EXIT_FAILED)


@app.command()
def runs(store: Store = None, as_json: AsJson = False) -> None:
    """List the runs in a store, newest first, with their status."""
    url = store_url(store)
    try:
        with open_store(url) as log:
            rows: list[dict[str, Any]] = []
            for info in log.runs():
                last = log.last_event(info.run_id)
                status = {"RunCompleted": "completed", "RunFailed": "failed"}.get(
                    getattr(last, "type", ""), "running")
                rows.append({"run_id": info.run_id, "status": status, "goal": info.goal,
                             "tasks": info.tasks, "events": last.seq if last else 0,
                             "requested_at": info.requested_at})
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        out.print(f"no runs in {url} yet; start one with: baton run SPEC")
        return
    table = Table("run", "status", "requested", "tasks", "events", "goal", box=None)
    for row in rows:
        table.add_row(row["run_id"], _styled(row["status"]), _when(row["requested_at"]),
                      str(row["tasks"]), str(row["events"]), row["goal"])
    out.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id (see baton runs).")],
    store: Store = None,
    show_all: Annotated[bool, typer.Option(
        "--all", help=f"List every task (by default, past {SHOW_ROWS} tasks, the accepted "
        "first attempts are summarised).")] = False,
    as_json: AsJson = False,
) -> None:
    """Show a run's ledger: each task's status, attempts, handler and outcome.

    Then the open escalations (questions waiting on a person) and the final output.
    Exit code 0 when the run completed, 1 otherwise.
    """
    url = store_url(store)
    try:
        with open_store(url) as log:
            if not log.last_seq(run_id):
                raise UnknownRun(run_id, url)
            book = ledger(log.read_recorded(run_id))
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(book.as_dict())
    else:
        _print_ledger(book, show_all)
    raise typer.Exit(EXIT_DONE if book.status == "completed" else EXIT_FAILED)


# --- printing --------------------------------------------------------------------------


class _ProgressDisplay:
    """A live line on stderr: tasks accepted of total, in flight, failures, rate."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err,
            transient=True)
        self.task = self.bar.add_task("tasks accepted", total=None, detail="starting Ray")

    def __enter__(self) -> _ProgressDisplay:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, p: RunProgress) -> None:
        detail = (f"in flight {p.in_flight}  failures {p.failures}  rejected {p.rejections}  "
                  f"recoveries {p.recoveries}  {p.assignments_per_s:,.0f} assignments/s")
        if p.escalations:
            detail += f"  [yellow]waiting on people: {p.escalations}[/]"
        self.bar.update(self.task, completed=p.accepted, total=p.tasks, detail=detail)


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
    table.add_row("status", _styled(result.status))
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


def _print_ledger(book: Ledger, show_all: bool) -> None:
    out.print(f"[bold]{book.run_id}[/]  {_styled(book.status)}  {book.goal}")
    out.print(f"{book.accepted} of {len(book.tasks)} tasks accepted; {book.events} events")
    shown = book.tasks if show_all or len(book.tasks) <= SHOW_ROWS else _worth_showing(book)
    rows = [(line.id + ("" if line.required else " (optional)"), line.status,
             str(line.attempts), line.handler or "-", line.outcome) for line in shown]
    headers = ("task", "status", "attempts", "handler")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    table = Table(box=None)
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width)
    # The outcome gets what is left of the line, cut short rather than wrapped.
    table.add_column("outcome", no_wrap=True, overflow="ellipsis",
                     max_width=max(24, out.width - sum(widths) - 2 * len(widths) - 2))
    for task, status, attempts, handler, outcome in rows:
        table.add_row(task, _styled(status), attempts, handler, " ".join(outcome.split()))
    out.print(table)
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


def _worth_showing(book: Ledger) -> list[TaskLine]:
    """Every task that is not simply accepted, then accepted ones up to SHOW_ROWS."""
    trouble = [t for t in book.tasks if t.status != "accepted" or t.attempts > 1]
    room = max(0, SHOW_ROWS - len(trouble))
    fine = [t for t in book.tasks if t.status == "accepted" and t.attempts <= 1][:room]
    keep = {id(t) for t in trouble + fine}
    return [t for t in book.tasks if id(t) in keep]


def _styled(status: str) -> str:
    colour = {"completed": "green", "accepted": "green", "failed": "red", "abandoned": "red",
              "waiting": "yellow", "escalated": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/]"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def main() -> None:
    """Entry point of the `baton` console script."""
    app()
