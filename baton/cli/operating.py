"""Launching and operating runs: run, resume, inbox, answer, cancel, keygen."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from baton.actors import inbox as people
from baton.actors.outage import STORE_PATIENCE_S
from baton.actors.spec import load_spec
from baton.events.errors import (
    BadInputError,
    BatonError,
    RunInterrupted,
)
from baton.events.schema import ENDINGS
from baton.events.store import open_store, store_url
from baton.events.store.sealing import KEY_ENV, new_key

from .common import (
    Address,
    AsJson,
    Detach,
    Model,
    Store,
    StorePatience,
    app,
    emit_json,
    err,
    out,
    run_log,
)
from .display import ProgressDisplay, finish, stopped


@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="path/to/spec.py or package.module:spec")],
    store: Store = None,
    address: Address = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", metavar="ID", help="Name the run (default: run-DATE-TIME-XXXX).")] = None,
    detach: Detach = False,
    store_patience: StorePatience = STORE_PATIENCE_S,
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """Run a spec to its end on Ray, showing progress, then summarise it.

    The spec is checked before anything starts: a missing file, no `spec` in the
    module, an unknown capability, a dependency cycle or a duplicate task id is refused
    with exit code 2. While other runs hold the cluster, the run waits for all its
    workers at once (queued). Without a terminal, progress is a line every 5 s. Ctrl-C
    stops the run, recorded so far: `baton resume RUN` continues it (exit 130).
    """
    try:
        loaded = load_spec(spec)
        loaded.validate()
        from baton.actors.launcher import run as launch  # Ray: only for what runs work

        with ProgressDisplay(as_json) as display:
            result = launch(loaded, store, address, run_id=run_id, detach=detach,
                            on_progress=display.update, store_patience_s=store_patience,
                            model=model)
    except RunInterrupted as interrupted:
        stopped(interrupted)
    except KeyboardInterrupt:
        stopped(RunInterrupted("interrupted before the run began; nothing was recorded"))
    finish(result, as_json, detach)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to continue.")],
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="SPEC", help="The spec to resume with (default: the one the run "
        "was started from).")] = None,
    store: Store = None,
    address: Address = None,
    detach: Detach = False,
    store_patience: StorePatience = STORE_PATIENCE_S,
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """Continue a run from its log: after its driver died, or once people answered.

    A new coordinator folds the log, records CoordinatorRestarted, takes up answers that
    arrived meanwhile, and re-dispatches the work that was in flight under the same ids.
    """
    try:
        loaded = load_spec(spec) if spec else None
        from baton.actors.launcher import resume as resume_run

        with ProgressDisplay(as_json) as display:
            result = resume_run(run_id, store, address, spec=loaded, detach=detach,
                                on_progress=display.update, store_patience_s=store_patience,
                                model=model)
    except RunInterrupted as interrupted:
        stopped(interrupted)
    except KeyboardInterrupt:
        stopped(RunInterrupted(f"interrupted before run {run_id} was taken up; "
                               "nothing more was recorded"))
    finish(result, as_json, detach)


@app.command()
def inbox(
    run_id: Annotated[str | None, typer.Argument(
        metavar="[RUN]", help="One run and the runs under it (default: every unfinished "
        "run).")] = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """List the open escalations: questions runs are waiting on a person to answer."""
    url = store_url(store)

    def skipped(run: str, error: BatonError) -> None:
        err.print(f"skipped run {run}, which cannot be read: {error}", highlight=False,
                  markup=False)

    with open_store(url) as log:
        found = people.open_escalations(log, run_id, unreadable=skipped)
    if as_json:
        emit_json([asdict(e) for e in found])
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
        "output. It is checked against the task's schema and done_when checks before it "
        "is recorded (exit 2 naming what does not fit), and validated like any output.")
    ] = None,
    raise_budget: Annotated[float | None, typer.Option(
        "--raise-budget", metavar="N", help="A budget question: raise the limit reached "
        "by N of its unit (dollars, tokens or seconds, as the question says) and go on.")
    ] = None,
    stop: Annotated[bool, typer.Option(
        "--stop", help="A budget question: stop the run (it fails; what was accepted "
        "stays recorded).")] = False,
    note: Annotated[str, typer.Option("--note", metavar="TEXT",
                                      help="Added to the task's instructions.")] = "",
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who answers.")] = "",
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Answer an escalation: about a task, exactly one of --retry, --reassign, --abandon,
    --accept-output; about the run's budget, --raise-budget N or --stop.

    The answer is recorded in the run's inbox: a live coordinator takes it up within a
    second; otherwise `baton resume RUN` does.
    """
    chosen = [name for name, on in (("retry", retry), ("reassign", reassign is not None),
                                    ("abandon", abandon), ("accept", accept_output),
                                    ("raise_budget", raise_budget is not None),
                                    ("stop", stop))
              if on]
    if len(chosen) != 1:
        raise BadInputError("give exactly one of --retry, --reassign HANDLER, --abandon, "
                            "--accept-output FILE.json (a task's question), or "
                            "--raise-budget N, --stop (a budget's)")
    output = None
    if accept_output is not None:
        try:
            output = json.loads(accept_output.read_text())
        except (OSError, ValueError) as problem:
            raise BadInputError(f"--accept-output {accept_output}: {problem}") from None
    with open_store(store) as log:
        entry = people.answer(log, escalation_id, chosen[0],  # type: ignore[arg-type]
                              handler=reassign, note=note, output=output, answered_by=by,
                              raise_by=raise_budget)
    run_id = escalation_id.rpartition(":esc-")[0]
    if as_json:
        emit_json({"run_id": run_id, "escalation_id": escalation_id, "action": chosen[0],
                    "inbox_seq": entry.seq})
    else:
        out.print(f"recorded: {chosen[0]} for {escalation_id}. A live coordinator takes it "
                  f"up within a second; if none is alive: baton resume {run_id}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run to stop.")],
    note: Annotated[str, typer.Option("--note", metavar="TEXT", help="Why.")] = "",
    store: Store = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a run: in-flight work is abandoned and the run fails, recorded so.

    The runs its subruns started that are still going are cancelled too, each recorded
    in its own log (those of a run that has ended, alone). A live coordinator takes the
    request up within a second; a run nobody is driving is cancelled in its log at once.
    """
    from .watching import attached_and_alive, status_of  # (registered after these)

    url = store_url(store)
    with run_log(run_id, url) as log:
        def alive(run: str) -> bool:
            return attached_and_alive(run, address)

        last = log.last_seq(run_id)
        ended = ENDINGS.get(log.read(run_id, after=last - 1)[-1].type)
        if ended is None:
            people.cancel(log, run_id, note, alive)
        children = people.cancel_children(log, run_id, f"run {run_id} was cancelled", alive)
        if ended is not None and not children:
            raise BadInputError(f"run {run_id} has already {ended}, and no run under it is "
                                "still going: there is nothing to cancel")
    report = status_of(run_id, url)
    if as_json:
        emit_json({**report, "children_cancelled": children})
    else:
        out.print(f"cancel recorded for {run_id} (now {report['status']})"
                  + (f", and for the {len(children)} run(s) under it still going"
                     if children else ""))


@app.command()
def keygen(as_json: AsJson = False) -> None:
    """Print a new key for encryption at rest.

    With BATON_ENCRYPTION_KEY set to it, everything a run records (outputs, inputs,
    reasons, snapshots) is encrypted before it reaches the store; run ids, seqs and event
    types stay readable. Set it wherever runs are launched or read. Keep it safe: without
    it the runs it sealed cannot be read, by anyone.
    """
    key = new_key()
    if as_json:
        emit_json({"key": key, "env": KEY_ENV})
        return
    sys.stdout.write(f"{key}\n")
    err.print(f"export {KEY_ENV}={key}", highlight=False)
