"""Exporting and reporting: runs to Parquet and back, a run's statistics, and its HTML
report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.table import Table
from rich.text import Text

from baton.events.errors import BadInputError
from baton.events.store import arrow, open_store, restore
from baton.projections import report as page
from baton.projections.metrics import Quantiles, RunStats, Spend, recorded_budget, run_stats
from baton.projections.tree import runs_under

from .common import AsJson, Store, app, emit_json, err, fail, out, progress, run_log


@app.command(name="export")
def export_runs(
    run_id: Annotated[str | None, typer.Argument(help="The run to export.")] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="PATH",
        help="A .parquet file; with --all, a directory (a dataset partitioned by run).")] = (
            Path("export.parquet")),
    every: Annotated[bool, typer.Option("--all", help="Export every run in the store.")] = False,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Write runs to Parquet: one row per event, for DuckDB, pandas or polars.

    Each row has run id, seq, type, schema version, cause, recorded_at, the rule that
    fired, task, assignment, handler, outcome, state digest, where and when the handler
    ran, and the event's bytes as recorded (decrypted, when the store is sealed), so
    `baton import` restores the run exactly.

    The file (or each run's directory, with --all) replaces what was there only once
    it is whole: an export that fails midway leaves the last one as it was.
    """
    if (run_id is None) == (not every):
        fail(BadInputError("name one run to export, or pass --all for every run"))
    if not every and output.is_dir():
        fail(BadInputError(f"{output} is a directory: name a .parquet file with -o"))
    try:
        with open_store(store) if every else run_log(run_id or "", store) as log:
            runs = [info.run_id for info in log.runs()] if every else [run_id or ""]
            with progress("exporting", hidden=as_json) as bar:
                step = bar.add_task("events", total=sum(log.last_seq(r) for r in runs))
                def advance(rows: int) -> None:
                    bar.advance(step, rows)

                if every:
                    rows = arrow.write_dataset(log, runs, output, on_rows=advance)
                else:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    rows = arrow.write_parquet(log, runs, output, on_rows=advance)
    except OSError as error:
        fail(BadInputError(f"cannot write the export to {output}: {error.strerror or error}"))
    if as_json:
        emit_json({"output": str(output), "runs": runs, "events": rows})
        return
    err.print(f"exported {rows:,} events of {len(runs):,} run"
              f"{'s' if len(runs) != 1 else ''} to {output}", highlight=False)


@app.command(name="import")
def import_runs(
    source: Annotated[Path, typer.Argument(
        help="A .parquet file or directory that baton export wrote.", metavar="PATH")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Load exported runs into a store, byte for byte.

    Every run is checked before anything is written: a run id the store already has is
    refused (exit 2), unless what the store has of it is the beginning of this export's,
    byte for byte (an import that stopped part way): then the import finishes it. An
    export whose events do not chain (a gap, an edited row) is refused naming the run and
    seq (exit 1).
    """
    if not source.exists():
        fail(BadInputError(f"{source} does not exist"))
    try:
        rows = pq.read_table(source)
    except (pa.ArrowException, OSError) as error:
        fail(BadInputError(f"{source} is not a Parquet file or dataset: {error}"))
    with open_store(store) as log:
        loaded = restore.load(log, rows)
    if as_json:
        emit_json({"imported": loaded})
        return
    for run_id, events in loaded.items():
        out.print(f"imported {run_id}: {events:,} events", highlight=False)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to report on.")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE.html",
        help="Where to write the page [default: RUN.html].")] = None,
    tree: Annotated[bool, typer.Option(
        "--tree", help="Also write a page for every run under RUN (the children its "
        "subruns started, theirs…), beside the first, named CHILD.html.")] = False,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Write one HTML page about a run: open it from disk, no server needed.

    Its summary, a timeline (a lane per handler replica, a bar per assignment coloured
    by its outcome, retries, reassignments, escalations and replaced workers marked),
    every task with its status, and each task's trace. Hover over a bar for its
    assignment; click it for the rule and facts that routed it, its validation and state
    digest, and its task's trace. Everything is inside the file: nothing is loaded from
    the network. A nested run's page links to its parent's and its children's pages
    (RUN.html beside it; --tree writes them all).
    """
    target = output if output is not None else Path(f"{run_id}.html")
    written: list[tuple[str, Path, int]] = []
    with run_log(run_id, store) as log:
        runs = [run_id, *runs_under(log.read, run_id)] if tree else [run_id]
        pages = {run_id: target.name, **{run: f"{run}.html" for run in runs[1:]}}
        for run in runs:
            figures = run_stats(arrow.columns(log, run))
            document = page.html(log.read(run), _shown(figures), pages)
            path = target.with_name(pages[run])
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(document, encoding="utf-8")
            except OSError as error:
                fail(BadInputError(f"cannot write the report to {path}: "
                                   f"{error.strerror or error}"))
            written.append((run, path, len(document.encode())))
    if as_json:
        emit_json({"run_id": run_id, "path": str(target), "bytes": written[0][2],
                   "pages": [{"run_id": r, "path": str(p), "bytes": n} for r, p, n in written]})
    err.print(f"wrote the report of {run_id} to {target}"
              + (f", and of the {len(written) - 1} run(s) under it beside it"
                 if len(written) > 1 else ""), highlight=False, markup=False)


@app.command()
def stats(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Where a run's time went: per handler and for the whole run, from its log.

    Per handler: attempts, how each ended (accepted, rejected, failed, timed out, or
    answered too late to count), latency from dispatch to answer and queue wait from
    dispatch to the handler's start (p50/p95/p99), and where workers reported it, what
    the work spent on models (requests, tokens, dollars). Per run: makespan, events,
    attempts and acceptances per second, the spend and what is left of the run's budget,
    and how often each rule decided.
    Computed with Arrow over the run's table (as `baton export` writes it).
    """
    with run_log(run_id, store) as log:
        rows = arrow.columns(log, run_id)
        figures = run_stats(rows, recorded_budget(
            rows, lambda seq: log.read(run_id, after=seq - 1, until=seq)[0]))
    if as_json:
        emit_json(figures.as_dict())
        return
    span = "-" if figures.makespan_s is None else f"{figures.makespan_s:,.2f}s"
    out.print(f"{run_id}  {figures.events:,} events over {span}; "
              f"{figures.assignments:,} attempts ({_rate(figures.assignments_per_s)}), "
              f"{figures.accepted:,} accepted ({_rate(figures.accepted_per_s)})",
              highlight=False, markup=False)
    outcomes = Table(box=None, title="per handler: attempts and how they ended",
                     title_justify="left")
    timing = Table(box=None, title="per handler: seconds (latency: dispatch to answer; "
                   "wait: dispatch to the handler's start)", title_justify="left")
    for header in ("handler", "attempts", "accepted", "rejected", "failed", "timed out",
                   "late"):
        outcomes.add_column(header, justify="left" if header == "handler" else "right")
    for header in ("handler", "latency p50", "p95", "p99", "wait p50", "p95", "p99"):
        timing.add_column(header, justify="left" if header == "handler" else "right")
    for h in figures.handlers:
        outcomes.add_row(Text(h.handler), *(f"{n:,}" for n in (
            h.assignments, h.accepted, h.rejected, h.failed, h.timed_out, h.ignored)))
        timing.add_row(Text(h.handler), *_each(h.latency_s), *_each(h.queue_wait_s))
    out.print(outcomes)
    out.print(timing)
    if figures.spend.answers:
        out.print(_spend_table(figures))
    if figures.budget and figures.budget["left"]:
        out.print(figures.budget["left"], highlight=False, markup=False)
    rules = Table(box=None, title="decisions by rule", title_justify="left")
    rules.add_column("rule", no_wrap=True)
    rules.add_column("decisions", justify="right")
    for rule, count in sorted(figures.decisions_by_rule, key=lambda rc: (-rc[1], rc[0])):
        rules.add_row(Text(rule), f"{count:,}")
    out.print(rules)


def _spend_table(figures: RunStats) -> Table:
    """Tokens and dollars per handler and for the run (a cost is '-' where none was
    priced, and marked '+?' where some answers' price is unknown)."""
    spent = Table(box=None, title="what the work spent (as workers reported it)",
                  title_justify="left")
    for header in ("handler", "answers", "requests", "tokens in", "tokens out", "cost $"):
        spent.add_column(header, justify="left" if header == "handler" else "right")
    rows = [(h.handler, h.spend) for h in figures.handlers if h.spend.answers]
    for name, s in [*rows, ("run", figures.spend)]:
        spent.add_row(Text(name), *(f"{n:,}" for n in (
            s.answers, s.requests, s.input_tokens, s.output_tokens)), _dollars(s))
    return spent


def _dollars(spend: Spend) -> str:
    if spend.unpriced == spend.answers:
        return "-"
    return f"{spend.cost_usd:,.4f}" + (" +?" if spend.unpriced else "")


def _rate(per_s: float | None) -> str:
    return "-" if per_s is None else f"{per_s:,.1f}/s"


def _each(q: Quantiles) -> list[str]:
    return [_duration(v) for v in (q.p50, q.p95, q.p99)]


def _seconds(q: Quantiles) -> str:
    return "-" if q.count == 0 else " / ".join(_each(q))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:,.3f}" if seconds < 10 else f"{seconds:,.1f}"


def _shown(figures: RunStats) -> dict[str, Any]:
    """The statistics as the report's tables: a row per handler, a row per rule."""
    return {
        "per handler": [
            {"handler": h.handler, "attempts": h.assignments, "accepted": h.accepted,
             "rejected": h.rejected, "failed": h.failed, "timed out": h.timed_out,
             "ignored": h.ignored, "latency p50/p95/p99 (s)": _seconds(h.latency_s),
             "queue wait p50/p95/p99 (s)": _seconds(h.queue_wait_s),
             **({"tokens in/out": f"{h.spend.input_tokens:,} / {h.spend.output_tokens:,}",
                 "cost $": _dollars(h.spend)} if figures.spend.answers else {})}
            for h in figures.handlers],
        "decisions by rule": [{"rule": rule, "decisions": count} for rule, count in
                              sorted(figures.decisions_by_rule,
                                     key=lambda rc: (-rc[1], rc[0]))],
    }
