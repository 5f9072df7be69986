"""The `baton` command: run a spec on Ray, list runs, show a run's ledger.

Every command takes --store URL (default sqlite:///.baton/baton.db, or $BATON_STORE)
and --json (machine-readable output on stdout, nothing else there). Exit codes:
0 done, 1 the run failed (or waits on people), 2 bad input.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton import replay as debug
from baton.actors import inbox as people
from baton.actors.coordinator import Progress as RunProgress
from baton.actors.launcher import (
    ClusterUnavailable,
    RunResult,
    attach_ray,
    coordinator_alive,
    store_url,
)
from baton.actors.launcher import resume as resume_run
from baton.actors.launcher import run as launch
from baton.actors.spec import load_policy, load_spec
from baton.events.errors import (
    BadSpec,
    BadStoreURL,
    BatonError,
    EncryptionKeyProblem,
    RunExists,
    StoreUnavailable,
    UnknownRun,
)
from baton.events.schema import EVENT_TYPES, Event
from baton.events.store import EventStore, arrow, live, masked_url, open_store
from baton.events.store.sealing import KEY_ENV, new_key
from baton.projections import log as readable
from baton.projections.counterfactual import Counterfactual, TaskChange
from baton.projections.ledger import Ledger, TaskLine, ledger
from baton.projections.replay import Verification
from baton.projections.trace import UnknownTask
from baton.projections.trace import as_dicts as trace_dicts
from baton.projections.trace import trace as explain

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
ENDINGS = frozenset({"RunCompleted", "RunFailed"})
BAD_INPUT = (BadSpec, BadStoreURL, StoreUnavailable, UnknownRun, UnknownTask,
             ClusterUnavailable, EncryptionKeyProblem, RunExists)
SHOW_ROWS = 40
PARTINGS_SHOWN = 5
CHANGES_SHOWN = 10

app = typer.Typer(
    name="baton",
    help=(
        "Run multi-agent work on Ray with every decision recorded.\n\n"
        "Start with: baton run examples/stdlib_audit.py, then baton runs and "
        "baton show RUN.\n\n"
        "After the fact: baton log RUN, baton trace RUN TASK, baton replay RUN --verify "
        "(or --policy M:P to ask what another policy would have done), baton fork RUN "
        "--at SEQ, baton diff RUN_A RUN_B.\n\n"
        "Exit codes: 0 done, 1 the run failed or waits on people, 2 bad input."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs re-wrapped, \b blocks kept
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # long messages wrap where the terminal does

Store = Annotated[
    str | None,
    typer.Option("--store", envvar="BATON_STORE", show_envvar=True, metavar="URL",
                 help="Where logs are kept: sqlite:///path.db, "
                      "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by a cluster) or "
                      "memory:// [default: sqlite:///.baton/baton.db]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout and nothing else.")]
Address = Annotated[str | None, typer.Option(
    "--address", envvar="RAY_ADDRESS", metavar="ADDR",
    help="Ray cluster to attach to; without one, a local Ray is started.")]
Detach = Annotated[bool, typer.Option(
    "--detach", help="Leave the run to a detached coordinator and return at once.")]


@contextmanager
def _run_log(run_id: str, store: str | None) -> Iterator[EventStore]:
    """The store holding `run_id`, open; UnknownRun when the run is not there."""
    url = store_url(store)
    with open_store(url) as log:
        if not log.last_seq(run_id):
            raise UnknownRun(run_id, log.shown_url)
        yield log


def _fail(error: BatonError) -> NoReturn:
    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    raise typer.Exit(EXIT_BAD_INPUT if isinstance(error, BAD_INPUT) else EXIT_FAILED)


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="path/to/spec.py or package.module:spec")],
    store: Store = None,
    address: Address = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", metavar="ID", help="Name the run (default: run-DATE-TIME-XXXX).")] = None,
    detach: Detach = False,
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
            result = launch(loaded, store, address, run_id=run_id, detach=detach,
                            on_progress=display.update)
    except BatonError as error:
        _fail(error)
    _finish(result, as_json, detach)


def _finish(result: RunResult, as_json: bool, detached: bool) -> NoReturn:
    if as_json:
        _emit_json(_result_json(result))
    elif detached:
        out.print(f"run {result.run_id} continues in a detached coordinator\n"
                  f"follow it: baton status {result.run_id} / baton wait {result.run_id}")
    else:
        _print_result(result)
    raise typer.Exit(EXIT_DONE if result.ok or detached else EXIT_FAILED)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to continue.")],
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="SPEC", help="The spec to resume with (default: the one the run "
        "was started from).")] = None,
    store: Store = None,
    address: Address = None,
    detach: Detach = False,
    as_json: AsJson = False,
) -> None:
    """Continue a run from its log: after its driver died, or once people answered.

    A new coordinator folds the log, records CoordinatorRestarted, takes up answers that
    arrived meanwhile, and re-dispatches the work that was in flight under the same ids.
    """
    try:
        loaded = load_spec(spec) if spec else None
        with _ProgressDisplay(enabled=not as_json and err.is_terminal) as display:
            result = resume_run(run_id, store, address, spec=loaded, detach=detach,
                                on_progress=display.update)
    except BatonError as error:
        _fail(error)
    _finish(result, as_json, detach)


@app.command()
def inbox(
    run_id: Annotated[str | None, typer.Argument(
        metavar="[RUN]", help="One run (default: every unfinished run).")] = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """List the open escalations: questions runs are waiting on a person to answer."""
    url = store_url(store)
    try:
        with open_store(url) as log:
            found = people.open_escalations(log, run_id)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json([asdict(e) for e in found])
        return
    if not found:
        out.print("no open escalations")
        return
    for esc in found:
        state = "answered, waiting for a coordinator" if esc.answered else "open"
        out.print(f"[bold]{esc.escalation_id}[/]  ({state}; handlers: "
                  f"{', '.join(esc.handlers)})", highlight=False)
        out.print(f"  {esc.question}", highlight=False)
    out.print("\nanswer one: baton answer ESC --retry [--note TEXT] | --reassign HANDLER | "
              "--abandon | --accept-output FILE.json")


@app.command()
def answer(
    escalation_id: Annotated[str, typer.Argument(
        metavar="ESC", help="RUN:esc-N, as baton inbox lists it.")],
    retry: Annotated[bool, typer.Option("--retry", help="Try again on the same handler.")] = False,
    reassign: Annotated[str | None, typer.Option(
        "--reassign", metavar="HANDLER", help="Try again on this handler.")] = None,
    abandon: Annotated[bool, typer.Option("--abandon", help="Give the task up.")] = False,
    accept_output: Annotated[Path | None, typer.Option(
        "--accept-output", metavar="FILE.json", help="Use this JSON file as the task's "
        "output (it is validated like any output).")] = None,
    note: Annotated[str, typer.Option("--note", metavar="TEXT",
                                      help="Added to the task's instructions.")] = "",
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who answers.")] = "",
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Answer an escalation. Exactly one of --retry, --reassign, --abandon, --accept-output.

    The answer is recorded in the run's inbox: a live coordinator takes it up within a
    second; otherwise `baton resume RUN` does.
    """
    chosen = [name for name, on in (("retry", retry), ("reassign", reassign is not None),
                                    ("abandon", abandon), ("accept", accept_output))
              if on]
    try:
        if len(chosen) != 1:
            raise BadSpec("give exactly one of --retry, --reassign HANDLER, --abandon, "
                          "--accept-output FILE.json")
        output = None
        if accept_output is not None:
            try:
                output = json.loads(accept_output.read_text())
            except (OSError, ValueError) as problem:
                raise BadSpec(f"--accept-output {accept_output}: {problem}") from None
        with open_store(store_url(store)) as log:
            entry = people.answer(log, escalation_id, chosen[0],  # type: ignore[arg-type]
                                  handler=reassign, note=note, output=output, answered_by=by)
    except BatonError as error:
        _fail(error)
    run_id = escalation_id.rpartition(":esc-")[0]
    if as_json:
        _emit_json({"run_id": run_id, "escalation_id": escalation_id, "action": chosen[0],
                    "inbox_seq": entry.seq})
    else:
        out.print(f"recorded: {chosen[0]} for {escalation_id}. A live coordinator takes it "
                  f"up within a second; if none is alive: baton resume {run_id}")


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """How a run stands now, from its log: status, tasks, work in flight, escalations."""
    try:
        report = _status(run_id, store_url(store))
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(report)
    else:
        out.print(f"[bold]{run_id}[/]  {_styled(report['status'])}  "
                  f"{report['accepted']} of {report['tasks']} tasks accepted, "
                  f"{report['in_flight']} in flight, {report['events']} events")
        for esc in report["escalations"]:
            out.print(f"  waiting on a person: {esc}  (baton inbox {run_id})")
        if report["error"]:
            out.print(f"  [red]error:[/] {report['error']}", highlight=False)
    raise typer.Exit(EXIT_DONE if report["status"] in ("completed", "running") else EXIT_FAILED)


@app.command()
def wait(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SECONDS", help="Give up after this long (exit 1).")] = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Wait until a run completes, fails, or waits on people; exit 0 only if it completed.

    On PostgreSQL it is told of each event as it is recorded (LISTEN/NOTIFY); on SQLite
    it reads the log again four times a second.
    """
    url = store_url(store)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        report = _status(run_id, url)
        if report["status"] == "running":
            report = _wait_for_change(run_id, url, report, deadline)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(report)
    elif report["status"] == "running":
        err.print(f"{run_id} is still running after {timeout:g}s")
    else:
        out.print(f"{run_id} {_styled(report['status'])}"
                  + (f": {report['error']}" if report["error"] else "")
                  + (f"; see baton inbox {run_id}" if report["status"] == "waiting" else ""))
    raise typer.Exit(EXIT_DONE if report["status"] == "completed" else EXIT_FAILED)


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to stop.")],
    note: Annotated[str, typer.Option("--note", metavar="TEXT", help="Why.")] = "",
    store: Store = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a run: in-flight work is abandoned and the run fails, recorded so.

    A live coordinator takes the request up within a second; a run nobody is driving
    is cancelled in its log at once.
    """
    url = store_url(store)
    try:
        with open_store(url) as log:
            entry = people.request_cancel(log, run_id, note)
            if not _attached_and_alive(run_id, address):
                people.cancel_in_place(log, run_id, entry)
        report = _status(run_id, url)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(report)
    else:
        out.print(f"cancel recorded for {run_id} (now {report['status']})")


def _wait_for_change(run_id: str, url: str, report: dict[str, Any],
                     deadline: float | None) -> dict[str, Any]:
    """Follow the run's log until its status is no longer running, or the deadline."""
    with open_store(url) as log:
        seen = stale = report["events"]
        for event in live.follow(log, run_id, after=seen, tick_s=0.5):
            if event is not None:
                seen = event.seq
            ended = event is not None and event.type in ENDINGS
            # Whether only people can move the run on shows in its state, not in one
            # event: look again once things have been quiet for a moment.
            if ended or (event is None and seen != stale):
                report, stale = _status(run_id, url), seen
                if report["status"] != "running":
                    return report
            if deadline is not None and time.monotonic() >= deadline:
                return report
    return report


def _attached_and_alive(run_id: str, address: str | None) -> bool:
    """Is a coordinator driving `run_id` in a reachable Ray cluster?"""
    try:
        attach_ray(address)
    except ClusterUnavailable:
        return False
    return coordinator_alive(run_id)


def _status(run_id: str, url: str) -> dict[str, Any]:
    with open_store(url) as log:
        state, phase, answers = people.run_phase(log, run_id)
    return {"run_id": run_id, "status": phase, "tasks": len(state.tasks),
            "pending_answers": answers,
            "accepted": state.accepted, "in_flight": len(state.in_flight),
            "escalations": sorted(state.escalations), "events": state.seq,
            "error": state.error, "output": state.output}


@app.command(name="export")
def export_runs(
    run_id: Annotated[str | None, typer.Argument(help="The run to export.")] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="PATH",
        help="A .parquet file; with --all, a directory (a dataset partitioned by run).")] = (
            Path("export.parquet")),
    every: Annotated[bool, typer.Option("--all", help="Export every run in the store.")] = False,
    store: Store = None,
) -> None:
    """Write runs to Parquet: one row per event, for DuckDB, pandas or polars.

    Each row has run id, seq, type, schema version, cause, recorded_at, the rule that
    fired, task, assignment, handler, outcome, state digest, and the event's bytes as
    recorded (decrypted, when the store is sealed), so `baton import` restores the run
    exactly.
    """
    if (run_id is None) == (not every):
        _fail(BadSpec("name one run to export, or pass --all for every run"))
    try:
        if run_id is not None:
            with _run_log(run_id, store) as log:
                run_ids = [run_id]
                table = arrow.table(log, run_ids)
        else:
            with open_store(store_url(store)) as log:
                run_ids = [info.run_id for info in log.runs()]
                table = arrow.table(log, run_ids)
    except BatonError as error:
        _fail(error)
    if every:
        pq.write_to_dataset(table, output, partition_cols=["run_id"],
                            existing_data_behavior="delete_matching")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output)
    err.print(f"exported {table.num_rows:,} events of {len(run_ids):,} run"
              f"{'s' if len(run_ids) != 1 else ''} to {output}", highlight=False)


@app.command(name="import")
def import_runs(
    source: Annotated[Path, typer.Argument(
        help="A .parquet file or directory that baton export wrote.", metavar="PATH")],
    store: Store = None,
) -> None:
    """Load exported runs into a store, byte for byte.

    Every run is checked before anything is written: a run id the store already has is
    refused (exit 2); an export whose events do not chain (a gap, an edited row) is
    refused naming the run and seq (exit 1).
    """
    if not source.exists():
        _fail(BadSpec(f"{source} does not exist"))
    try:
        rows = pq.read_table(source)
    except (pa.ArrowException, OSError) as error:
        _fail(BadSpec(f"{source} is not a Parquet file or dataset: {error}"))
    try:
        with open_store(store_url(store)) as log:
            loaded = arrow.load(log, rows)
    except BatonError as error:
        _fail(error)
    for run_id, events in loaded.items():
        out.print(f"imported {run_id}: {events:,} events", highlight=False)


@app.command()
def keygen() -> None:
    """Print a new key for encryption at rest.

    With BATON_ENCRYPTION_KEY set to it, everything a run records (outputs, inputs,
    reasons, snapshots) is encrypted before it reaches the store; run ids, seqs and event
    types stay readable. Set it wherever runs are launched or read. Keep it safe: without
    it the runs it sealed cannot be read, by anyone.
    """
    key = new_key()
    sys.stdout.write(f"{key}\n")
    err.print(f"export {KEY_ENV}={key}", highlight=False)


@app.command()
def runs(store: Store = None, as_json: AsJson = False) -> None:
    """List the runs in a store, newest first, with their status.

    Read from the store's runs index, which takes in what was recorded since it was
    last read; it stays fast with many thousands of runs.
    """
    url = store_url(store)
    try:
        with open_store(url) as log:
            listed = log.runs()
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json([{"run_id": i.run_id, "status": i.status, "goal": i.goal,
                     "tasks": i.tasks, "events": i.events, "requested_at": i.requested_at}
                    for i in listed])
        return
    if not listed:
        out.print(f"no runs in {masked_url(url)} yet; start one with: baton run SPEC")
        return
    out.print(_fitted_table(
        ("run", "status", "requested", "tasks", "events"), "goal", 12,
        [(i.run_id, i.status, _when(i.requested_at), str(i.tasks), str(i.events), i.goal)
         for i in listed]))


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
    try:
        with _run_log(run_id, store) as log:
            book = ledger(log.read_recorded(run_id))
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(book.as_dict())
    else:
        _print_ledger(book, show_all)
    raise typer.Exit(EXIT_DONE if book.status == "completed" else EXIT_FAILED)


@app.command(name="log")
def log_(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    kinds: Annotated[list[str] | None, typer.Option(
        "--type", metavar="T", help="Only events of this type (repeatable), e.g. "
        "AssignmentDispatched.")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", metavar="ID", help="Only events about this task.")] = None,
    since: Annotated[int, typer.Option(
        "--since", metavar="SEQ", min=0, help="Only events after this seq.")] = 0,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing events as they are recorded, until the run "
        "completes or fails (Ctrl-C stops). With --json, one JSON object a line.")] = False,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Print a run's log, one event a line, with the rule and facts behind each decision.

    On PostgreSQL, --follow is told of each event as it is recorded (LISTEN/NOTIFY); on
    SQLite it reads the log again four times a second.
    """
    unknown = sorted(set(kinds or ()) - set(EVENT_TYPES))

    def wanted(event: Event) -> bool:
        return ((not kinds or type(event).__name__ in kinds)
                and (task is None or readable.concerns(event, task)))

    try:
        if unknown:
            raise BadSpec(f"unknown event type {', '.join(unknown)}; the types are "
                          f"{', '.join(sorted(EVENT_TYPES))}")
        with _run_log(run_id, store) as log:
            if follow:
                _follow(log, run_id, since, wanted, as_json)
                return
            events = [e for e in log.read(run_id, after=since) if wanted(e)]
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json([e.model_dump(mode="json") for e in events])
        return
    for event in events:
        out.print(readable.line(event), highlight=False, markup=False)


def _follow(log: EventStore, run_id: str, since: int, wanted: Callable[[Event], bool],
            as_json: bool) -> None:
    try:
        for event in live.follow(log, run_id, after=since):
            if event is None:
                continue
            if wanted(event):
                if as_json:
                    sys.stdout.write(json.dumps(event.model_dump(mode="json")) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(readable.line(event), highlight=False, markup=False)
            if event.type in ENDINGS:
                return
    except KeyboardInterrupt:
        return


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    until: Annotated[int | None, typer.Option(
        "--until", metavar="SEQ", help="Stop after this seq.")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Re-decide every recorded stimulus and compare with the log; "
        "exit 1 naming the first decision that differs.")] = False,
    policy: Annotated[str | None, typer.Option(
        "--policy", metavar="MODULE:NAME", help="Feed the run's recorded facts to this "
        "policy (a class or instance; module:Name or file.py:Name), calling no worker, and "
        "show where it decides otherwise and how the run would end. With --verify, "
        "replay with it instead of the recorded policy.")] = None,
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="SPEC", help="Like --policy, with this spec's policy.")] = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Show a run's state at a seq, verify its decisions, or replay it under another policy.

    \b
    baton replay RUN --until 120       the ledger as it stood after seq 120
    baton replay RUN --verify          every decision reproduced? (exit 1 if not)
    baton replay RUN --policy f.py:P   the same facts, decided by policy P
    """
    try:
        if policy and spec:
            raise BadSpec("give --policy or --spec, not both")
        if until is not None and (policy or spec) and not verify:
            raise BadSpec("--until goes with --verify or alone; a replay under another "
                          "policy runs over the whole log")
        with _run_log(run_id, store) as log:
            chosen = (load_policy(policy) if policy else
                      load_spec(spec).policy if spec else None)
            if verify:
                report = debug.verify(log, run_id, chosen, until=until)
            elif chosen is not None:
                what_if = debug.counterfactual(log, run_id, chosen)
            else:
                last = log.last_seq(run_id)
                if until is not None and not 1 <= until <= last:
                    raise BadSpec(f"run {run_id!r} has events 1 to {last}; --until {until} "
                                  "is not one of them")
                book = ledger(log.read_recorded(run_id, until=until))
    except BatonError as error:
        _fail(error)
    if verify:
        _print_verification(report, as_json)
    if chosen is not None:
        _print_counterfactual(what_if, as_json)
    if as_json:
        _emit_json(book.as_dict())
    else:
        _print_ledger(book, show_all=False)


def _say(text: str = "") -> None:
    """Print plain text: no markup, no highlighting (logs hold brackets and numbers)."""
    out.print(text, highlight=False, markup=False)


def _print_verification(report: Verification, as_json: bool) -> NoReturn:
    if as_json:
        _emit_json(report.as_dict())
    else:
        for note in report.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
        if report.divergence is None:
            out.print(f"{report.run_id}: replayed {report.events} events; every decision "
                      "reproduced")
        else:
            out.print(f"{report.run_id}: replay diverges\n{report.divergence.describe()}",
                      highlight=False, markup=False)
    raise typer.Exit(EXIT_DONE if report.reproduced else EXIT_FAILED)


def _print_changes(changes: list[TaskChange], was: str, now: str) -> None:
    if changes:
        _say(f"\ntasks that end differently ({len(changes)}):")
    for change in changes[:CHANGES_SHOWN]:
        _say(f"  {change.task_id}: {was} {change.recorded}; {now} {change.replayed}")
    if len(changes) > CHANGES_SHOWN:
        _say(f"  … {len(changes) - CHANGES_SHOWN} more (--json lists them all)")


def _print_counterfactual(report: Counterfactual, as_json: bool) -> NoReturn:
    """Exit 0 when the policy decides as the record did, 1 when it parts from it."""
    if as_json:
        _emit_json(report.as_dict())
        raise typer.Exit(EXIT_DONE if report.same else EXIT_FAILED)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    _say(f"{report.run_id} replayed under {report.policy}, no worker called")
    if report.same:
        _say("it decides exactly as the record did")
    for parting in report.partings[:PARTINGS_SHOWN]:
        _say(f"\nafter seq {parting.seq} ({parting.stimulus}):")
        for text in parting.recorded:
            _say(f"  recorded  {text}")
        for text in parting.replayed:
            _say(f"  replayed  {text}")
        if not parting.replayed:
            _say("  replayed  (decides nothing)")
    if len(report.partings) > PARTINGS_SHOWN:
        _say(f"\n… {len(report.partings) - PARTINGS_SHOWN} more turns decided otherwise "
            "(--json lists them all)")
    if report.stopped:
        _say(f"\nstopped after seq {report.stopped_at}: {report.stopped}")
    changes = report.changed_tasks
    if report.stopped:  # what was still open when it stopped is unknown, not changed
        changes = [c for c in changes if not c.replayed.startswith(("in_flight", "queued",
                                                                    "blocked", "escalated"))]
        open_ = len(report.changed_tasks) - len(changes)
        if open_:
            _say(f"{open_} task(s) were still open where it stopped")
    _print_changes(changes, "recorded", "replayed")
    was, now = report.recorded_outcome, report.outcome
    _say(f"\noutcome: recorded {was['status']} ({was['accepted']} of {was['tasks']} "
        f"accepted); replayed {now['status']} ({now['accepted']} of {now['tasks']} accepted"
        + (", stopped early)" if report.stopped else ")"))
    if was["output"] != now["output"] and now["status"] == "completed":
        _say(f"  recorded output {readable.short(was['output'], 100)}")
        _say(f"  replayed output {readable.short(now['output'], 100)}")
    if report.unused:
        _say(f"recorded results the policy never asked for: {', '.join(report.unused[:10])}")
    raise typer.Exit(EXIT_DONE if report.same else EXIT_FAILED)


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to fork.")],
    at: Annotated[int, typer.Option(
        "--at", metavar="SEQ", help="Keep the parent's log up to this seq (the end of a "
        "turn: see baton log RUN).")],
    policy: Annotated[str | None, typer.Option(
        "--policy", metavar="MODULE:NAME", help="Decide the fork with this policy.")] = None,
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="SPEC", help="Run the fork with this spec's handlers (same "
        "names and capabilities) and policy (default: the parent's spec).")] = None,
    new_run_id: Annotated[str | None, typer.Option(
        "--run-id", metavar="ID", help="Name the fork (default: RUN-fork-SEQ).")] = None,
    note: Annotated[str, typer.Option("--note", metavar="TEXT", help="Why.")] = "",
    store: Store = None,
    address: Address = None,
    detach: Detach = False,
    as_json: AsJson = False,
) -> None:
    """Start a new run from a prefix of RUN's log and finish it live on Ray.

    The fork records where it came from, then a coordinator takes it up: work that was
    in flight at SEQ is dispatched again, and the rest is decided by the fork's policy.
    Typical use: fork just before a bad dispatch with a fixed handler (--spec) or rule
    (--policy), then compare: baton diff RUN FORK.
    """
    try:
        with _run_log(run_id, store) as log:
            made = debug.fork(log, run_id, at, new_run_id=new_run_id, spec=spec,
                              policy=policy, note=note)
    except BatonError as error:
        _fail(error)
    if not as_json:
        err.print(f"forked {run_id} at seq {at} into {made.run_id}, decided by "
                  f"{made.policy}", highlight=False)
    try:
        with _ProgressDisplay(enabled=not as_json and err.is_terminal) as display:
            result = resume_run(made.run_id, store, address, spec=made.spec, detach=detach,
                                on_progress=display.update)
    except BatonError as error:
        err.print(f"the fork {made.run_id} is recorded; once this is fixed, run it with: "
                  f"baton resume {made.run_id}", highlight=False)
        _fail(error)
    _finish(result, as_json, detach)


@app.command(name="diff")
def diff_(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="One run.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The other.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Show where two runs' logs part (a fork and its parent, or two runs of one plan)
    and how each ended. Exit 0 when they say the same, 1 when they differ."""
    try:
        with open_store(store_url(store)) as log:
            found = debug.diff_runs(log, run_a, run_b)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(found.as_dict())
        raise typer.Exit(EXIT_DONE if found.same else EXIT_FAILED)
    _say(f"{run_a} and {run_b} share their first {found.common} events")
    if found.same:
        _say("and nothing else: they are the same run")
        raise typer.Exit(EXIT_DONE)
    _say(f"then  {run_a}: {found.first_a or '(its log ends)'}")
    _say(f"      {run_b}: {found.first_b or '(its log ends)'}")
    _say(f"after that, {found.decisions_a} and {found.decisions_b} decisions")
    _print_changes(found.changed_tasks, run_a, run_b)
    for name, ended in ((run_a, found.outcome_a), (run_b, found.outcome_b)):
        _say(f"{name}: {ended['status']}, {ended['accepted']} of {ended['tasks']} accepted"
            + (f", error: {ended['error']}" if ended["error"] else ""))
    if found.outcome_a["output"] != found.outcome_b["output"]:
        _say(f"outputs differ:\n  {run_a}: {readable.short(found.outcome_a['output'], 100)}"
            f"\n  {run_b}: {readable.short(found.outcome_b['output'], 100)}")
    raise typer.Exit(EXIT_FAILED)


@app.command(name="trace")
def trace_(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    task: Annotated[str, typer.Argument(metavar="TASK", help="The task id.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Explain a task's outcome: synthesis <- validation <- output <- assignment <- plan.

    Each step names the rule that fired, the facts it read, and the state digest it
    looked at; the assignment shows its handler, routing reason, candidates weighed and
    the inputs it was given, so a wrong answer leads to the worker that gave it.
    """
    try:
        with _run_log(run_id, store) as log:
            steps = explain(log.read(run_id), task)
    except BatonError as error:
        _fail(error)
    if as_json:
        _emit_json(trace_dicts(steps))
        return
    for step in steps:
        rule = f"  [{step.rule}]" if step.rule else ""
        out.print(f"{step.seq:>6}  {step.type:<21} {step.what}{rule}", highlight=False,
                  markup=False)
        if step.state_digest:
            out.print(f"{'':8}state {step.state_digest}", highlight=False)
        for name, value in {**step.detail, **({"facts": step.facts} if step.facts else {}),
                            **({"candidates": step.candidates} if step.candidates else {})
                            }.items():
            out.print(f"{'':8}{name}: {readable.short(value, 110)}", highlight=False,
                      markup=False)


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
    if book.forked_from:
        parent, _, seq = book.forked_from.partition("@")
        out.print(f"forked from {parent} at seq {seq} (baton diff {parent} {book.run_id})",
                  highlight=False)
    shown = book.tasks if show_all or len(book.tasks) <= SHOW_ROWS else _worth_showing(book)
    out.print(_fitted_table(
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


def _fitted_table(
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
        table.add_row(first, _styled(status), *rest)
    return table


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


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def main() -> None:
    """Entry point of the `baton` console script."""
    app()
