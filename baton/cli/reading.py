"""Reading and debugging runs: runs, show, log, replay, fork, diff, trace."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, NoReturn

import typer

from baton import replay as debug
from baton.actors.spec import load_policy, load_spec
from baton.events.errors import EXIT_DONE, EXIT_FAILED, BadInputError, BatonError
from baton.events.schema import ENDINGS, EVENT_TYPES, Event
from baton.events.store import EventStore, live, masked_url, open_store, store_url
from baton.events.store.heartbeats import standing
from baton.events.store.index import tree_order
from baton.projections import log as readable
from baton.projections.counterfactual import Counterfactual, TaskChange
from baton.projections.ledger import Ledger
from baton.projections.trace import as_dicts as trace_dicts
from baton.projections.trace import transcript_lines
from baton.projections.tree import TreeVerification, trace_down
from baton.projections.verification import Verification

from .common import (
    Address,
    AsJson,
    Detach,
    Store,
    app,
    emit_json,
    err,
    fail,
    out,
    run_log,
    say,
)
from .display import SHOW_ROWS, ProgressDisplay, finish, fitted_table, print_ledger

PARTINGS_SHOWN = 5
CHANGES_SHOWN = 10


@app.command()
def runs(store: Store = None, as_json: AsJson = False) -> None:
    """List the runs in a store, newest first, with their status.

    A nested run's children (the runs its subrun assignments started) are listed under
    it, indented, and theirs under them. Read from the store's runs index, which takes
    in what was recorded since it was last read; it stays fast with many thousands of
    runs.
    """
    url = store_url(store)
    with open_store(url) as log:
        listed, beats = tree_order(log.runs()), log.heartbeats()
    # The index knows how a run ended; its coordinator's heartbeat, how one still going
    # stands (waiting, stalled) and how many tasks its plan has now.
    now = time.time()
    rows = [(depth, i, standing(i.status, beats.get(i.run_id), now, exact=False),
             beats.get(i.run_id)) for depth, i in listed]
    if as_json:
        emit_json([{"run_id": i.run_id, "status": status, "goal": i.goal,
                    "tasks": beat.tasks if beat else i.tasks, "events": i.events,
                    "requested_at": i.requested_at,
                    "last_heartbeat": beat.at if beat else None,
                    "parent": i.parent, "parent_assignment": i.parent_assignment,
                    "depth": depth}
                   for depth, i, status, beat in rows])
        return
    if not listed:
        out.print(f"no runs in {masked_url(url)} yet; start one with: baton run SPEC")
        return
    out.print(fitted_table(
        ("run", "status", "requested", "tasks", "events"), "goal", 12,
        [("  " * (depth - 1) + "└ " * bool(depth) + i.run_id, status, _when(i.requested_at),
          str(beat.tasks if beat else i.tasks), str(i.events), i.goal)
         for depth, i, status, beat in rows]))


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
    with run_log(run_id, store) as log:
        book = debug.ledger_at(log, run_id)
        shown = _with_outputs(log, book) if as_json else None
    if shown is not None:
        emit_json(shown)
    else:
        print_ledger(book, show_all)
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

    if unknown:
        raise BadInputError(f"unknown event type {', '.join(unknown)}; the types are "
                            f"{', '.join(sorted(EVENT_TYPES))}")
    with run_log(run_id, store) as log:
        if follow:
            _follow(log, run_id, since, wanted, as_json)
            return
        events = [e for e in log.read(run_id, after=since) if wanted(e)]
    if as_json:
        emit_json([e.model_dump(mode="json") for e in events])
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
    tree: Annotated[bool, typer.Option(
        "--tree", help="With --verify: every run under RUN too (each with its own recorded "
        "policy), and each result a parent took from a child run byte for byte the child's "
        "output.")] = False,
    parallel: Annotated[int, typer.Option(
        "--parallel", metavar="N", min=0, help="With --verify: cut the log at its snapshots "
        "into N pieces, verified at once on Ray workers (see --address), each from the "
        "snapshot it begins at; the pieces must join. The same report as a serial verify.")
    ] = 0,
    address: Address = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Show a run's state at a seq, verify its decisions, or replay it under another policy.

    \b
    baton replay RUN --until 120       the ledger as it stood after seq 120 (read at
                                       once from the run's timeline, however long)
    baton replay RUN --verify          every decision reproduced? (exit 1 if not)
    baton replay RUN --verify --tree   and every run under it, and their links
    baton replay RUN --verify --parallel 4   in 4 pieces at once, on Ray
    baton replay RUN --policy f.py:P   the same facts, decided by policy P
    """
    if policy and spec:
        raise BadInputError("give --policy or --spec, not both")
    if parallel and (not verify or tree):
        raise BadInputError("--parallel goes with --verify (of one run, not --tree)")
    if tree:
        if not verify or policy or spec or until is not None:
            raise BadInputError("--tree goes with --verify alone: each run of the tree is "
                                "verified whole, with the policy it recorded")
        with run_log(run_id, store) as log:
            _print_tree_verification(debug.verify_tree(log, run_id), as_json)
    if until is not None and (policy or spec) and not verify:
        raise BadInputError("--until goes with --verify or alone; a replay under another "
                            "policy runs over the whole log")
    shown: dict[str, object] | None = None
    with run_log(run_id, store) as log:
        chosen = (load_policy(policy) if policy else
                  load_spec(spec).policy if spec else None)
        if verify:
            report = debug.verify(log, run_id, chosen, until=until, parallel=parallel,
                                  address=address)
        elif chosen is not None:
            what_if = debug.counterfactual(log, run_id, chosen)
        else:
            book = debug.ledger_at(log, run_id, until)
            shown = _with_outputs(log, book) if as_json else None
    if verify:
        _print_verification(report, as_json)
    if chosen is not None:
        _print_counterfactual(what_if, as_json)
    if shown is not None:
        emit_json(shown)
    else:
        print_ledger(book, show_all=False)


def _with_outputs(log: EventStore, book: Ledger) -> dict[str, object]:
    """The ledger as JSON, each task with its output as it stood then (the state at
    that seq has them; the ledger read from the timeline does not)."""
    state = debug.state_at(log, book.run_id, book.events)
    shown = book.as_dict()
    for task in shown["tasks"]:
        task["output"] = state.tasks[task["id"]].output
    return shown


def _print_verification(report: Verification, as_json: bool) -> NoReturn:
    if as_json:
        emit_json(report.as_dict())
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


def _print_tree_verification(report: TreeVerification, as_json: bool) -> NoReturn:
    if as_json:
        emit_json(report.as_dict())
    else:
        for run in report.reports:
            for note in run.notes:
                err.print(f"[yellow]note:[/] {run.run_id}: {note}", highlight=False)
            say(f"{run.run_id}: replayed {run.events} events; every decision reproduced"
                if run.divergence is None else
                f"{run.run_id}: replay diverges\n{run.divergence.describe()}")
        for link in report.broken:
            say(f"broken link: {link.describe()}")
        if not report.broken:
            say(f"every result taken from a child run is its output, byte for byte "
                f"({len(report.reports) - 1} run(s) under {report.reports[0].run_id})")
    raise typer.Exit(EXIT_DONE if report.reproduced else EXIT_FAILED)


def _print_changes(changes: list[TaskChange], was: str, now: str) -> None:
    if changes:
        say(f"\ntasks that end differently ({len(changes)}):")
    for change in changes[:CHANGES_SHOWN]:
        say(f"  {change.task_id}: {was} {change.recorded}; {now} {change.replayed}")
    if len(changes) > CHANGES_SHOWN:
        say(f"  … {len(changes) - CHANGES_SHOWN} more (--json lists them all)")


def _print_counterfactual(report: Counterfactual, as_json: bool) -> NoReturn:
    """Exit 0 when the policy decides as the record did, 1 when it parts from it."""
    if as_json:
        emit_json(report.as_dict())
        raise typer.Exit(EXIT_DONE if report.same else EXIT_FAILED)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    say(f"{report.run_id} replayed under {report.policy}, no worker called")
    if report.same:
        say("it decides exactly as the record did")
    for parting in report.partings[:PARTINGS_SHOWN]:
        say(f"\nafter seq {parting.seq} ({parting.stimulus}):")
        for text in parting.recorded:
            say(f"  recorded  {text}")
        for text in parting.replayed:
            say(f"  replayed  {text}")
        if not parting.replayed:
            say("  replayed  (decides nothing)")
    if len(report.partings) > PARTINGS_SHOWN:
        say(f"\n… {len(report.partings) - PARTINGS_SHOWN} more turns decided otherwise "
            "(--json lists them all)")
    if report.stopped:
        say(f"\nstopped after seq {report.stopped_at}: {report.stopped}")
    changes = report.changed_tasks
    if report.stopped:  # what was still open when it stopped is unknown, not changed
        changes = [c for c in changes if not c.replayed.startswith(("in_flight", "queued",
                                                                    "blocked", "escalated"))]
        open_ = len(report.changed_tasks) - len(changes)
        if open_:
            say(f"{open_} task(s) were still open where it stopped")
    _print_changes(changes, "recorded", "replayed")
    was, now = report.recorded_outcome, report.outcome
    say(f"\noutcome: recorded {was['status']} ({was['accepted']} of {was['tasks']} "
        f"accepted); replayed {now['status']} ({now['accepted']} of {now['tasks']} accepted"
        + (", stopped early)" if report.stopped else ")"))
    if was["output"] != now["output"] and now["status"] == "completed":
        say(f"  recorded output {readable.short(was['output'], 100)}")
        say(f"  replayed output {readable.short(now['output'], 100)}")
    if report.unused:
        say(f"recorded results the policy never asked for: {', '.join(report.unused[:10])}")
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
    with run_log(run_id, store) as log:
        made = debug.fork(log, run_id, at, new_run_id=new_run_id, spec=spec,
                          policy=policy, note=note)
    if not as_json:
        err.print(f"forked {run_id} at seq {at} into {made.run_id}, decided by "
                  f"{made.policy}", highlight=False)
    from baton.actors.launcher import resume as resume_run  # Ray: only to run the fork

    try:
        with ProgressDisplay(as_json) as display:
            result = resume_run(made.run_id, store, address, spec=made.spec, detach=detach,
                                on_progress=display.update)
    except BatonError as error:
        err.print(f"the fork {made.run_id} is recorded; once this is fixed, run it with: "
                  f"baton resume {made.run_id}", highlight=False)
        fail(error)
    finish(result, as_json, detach)


@app.command(name="diff")
def diff_(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="One run.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The other.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Show where two runs' logs part (a fork and its parent, or two runs of one plan)
    and how each ended. Exit 0 when they say the same, 1 when they differ."""
    with run_log(run_a, store) as log:
        found = debug.diff_runs(log, run_a, run_b)
    if as_json:
        emit_json(found.as_dict())
        raise typer.Exit(EXIT_DONE if found.same else EXIT_FAILED)
    say(f"{run_a} and {run_b} share their first {found.common} events")
    if found.same:
        say("and nothing else: they are the same run")
        raise typer.Exit(EXIT_DONE)
    say(f"then  {run_a}: {found.first_a or '(its log ends)'}")
    say(f"      {run_b}: {found.first_b or '(its log ends)'}")
    say(f"after that, {found.decisions_a} and {found.decisions_b} decisions")
    _print_changes(found.changed_tasks, run_a, run_b)
    for name, ended in ((run_a, found.outcome_a), (run_b, found.outcome_b)):
        say(f"{name}: {ended['status']}, {ended['accepted']} of {ended['tasks']} accepted"
            + (f", error: {ended['error']}" if ended["error"] else ""))
    if found.outcome_a["output"] != found.outcome_b["output"]:
        say(f"outputs differ:\n  {run_a}: {readable.short(found.outcome_a['output'], 100)}"
            f"\n  {run_b}: {readable.short(found.outcome_b['output'], 100)}")
    raise typer.Exit(EXIT_FAILED)


@app.command(name="trace")
def trace_(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    path: Annotated[list[str], typer.Argument(
        metavar="TASK...", help="The task id; then, for a task a subrun did, a task of "
        "the child run it started, and so on down.")],
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Explain a task's outcome: synthesis <- validation <- output <- assignment <- plan.

    Each step names the rule that fired, the facts it read, and the state digest it
    looked at; the assignment shows its handler, routing reason, candidates weighed and
    the inputs it was given, and an agent's answer its transcript (a line a message
    part; whole with --json), so a wrong answer leads to the prompt that produced it.
    A task done by a subrun shows the child run inside, under the dispatch that started
    it: `baton trace RUN TASK CHILD_TASK` follows one of the child's tasks on down."""
    with run_log(run_id, store) as log:
        steps = trace_down(log.read, run_id, path)
    if as_json:
        return emit_json(trace_dicts(steps))
    place = run_id
    for step in steps:
        pad = "  " * step.depth
        if step.run_id != place and step.depth:
            out.print(f"{pad}in child run {step.run_id}:", highlight=False, markup=False)
        place = step.run_id
        rule = f"  [{step.rule}]" if step.rule else ""
        seq = f"{step.seq:>6}" if step.seq else f"{'':>6}"
        out.print(f"{pad}{seq}  {step.type:<21} {step.what}{rule}", highlight=False,
                  markup=False)
        if step.state_digest:
            out.print(f"{pad}{'':8}state {step.state_digest}", highlight=False)
        for name, value in {**step.detail, **({"facts": step.facts} if step.facts else {}),
                            **({"candidates": step.candidates} if step.candidates else {})
                            }.items():
            if name in ("traceback", "transcript"):  # where to look: a line each
                out.print(f"{pad}{'':8}{name}:\n" + "\n".join(f"{pad}{'':10}{line}" for line in (
                    transcript_lines(value) if name == "transcript" else
                    str(value).rstrip().splitlines())), highlight=False, markup=False)
                continue
            out.print(f"{pad}{'':8}{name}: {readable.short(value, 110)}", highlight=False,
                      markup=False)
    if any(s.depth == len(path) for s in steps):
        say(f"\nfollow a task of a child run down: baton trace {run_id} {' '.join(path)} TASK")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"
