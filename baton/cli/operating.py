"""Launching and operating runs: run, resume, inbox, answer, status, wait, cancel,
keygen."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from baton.actors import inbox as people
from baton.actors.outage import STORE_PATIENCE_S
from baton.actors.spec import load_spec
from baton.events.errors import (
    EXIT_DONE,
    EXIT_FAILED,
    BadInputError,
    BatonError,
    ClusterUnavailableError,
    RunInterrupted,
    StoreFaultError,
    StoreUnavailableError,
    UnknownRunError,
)
from baton.events.schema import ENDINGS
from baton.events.store import live, open_store, store_url
from baton.events.store.heartbeats import STALE_AFTER_S, standing
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
    fail,
    out,
    styled,
)
from .display import ProgressDisplay, finish, stopped, store_outage

GOING = ("running", "queued")  # how a run that may still end by itself stands
# How long `wait` gives a coordinator that stopped beating without saying it stopped to
# beat again: Ray restarts one whose node died on another node, which takes a while.
RESTART_GRACE_S = 90.0
FINE = ("completed", *GOING)  # what `baton status` exits 0 for


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
        metavar="[RUN]", help="One run (default: every unfinished run).")] = None,
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
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    store: Store = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """How a run stands now, from its log: status, tasks, work in flight, escalations.

    When the store cannot be read, the run's coordinator is asked instead (in the Ray
    cluster at --address, or this machine's): it says whether it is waiting for the
    store to come back.
    """
    try:
        report = _status(run_id, store_url(store))
    except (StoreUnavailableError, StoreFaultError) as error:
        _status_without_store(run_id, address, error, as_json)
    if as_json:
        emit_json(report)
    else:
        out.print(f"[bold]{run_id}[/]  {styled(report['status'])}  "
                  f"{report['accepted']} of {report['tasks']} tasks accepted, "
                  f"{report['in_flight']} in flight, {report['events']} events")
        if report["status"] == "stalled":
            out.print(f"  {_no_coordinator(report)}; `baton resume {run_id}` continues it",
                      highlight=False)
        if report["status"] == "queued":
            out.print(f"  waiting for the cluster to grant its workers ("
                      f"{report['coordinator']['coordinator']})", highlight=False)
        for esc in report["escalations"]:
            if esc in report["answered"]:
                out.print(f"  answered, for a coordinator to take up: {esc}")
            else:
                out.print(f"  waiting on a person: {esc}  (baton inbox {run_id})")
        if report["error"]:
            out.print(f"  [red]error:[/] {report['error']}", highlight=False)
    raise typer.Exit(EXIT_DONE if report["status"] in FINE else EXIT_FAILED)


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
    it reads the log again four times a second. A run whose coordinator went quiet
    without stopping is given 90 s to come back (Ray may be restarting it on another
    node) before `wait` says it stalled.
    """
    url = store_url(store)
    deadline = None if timeout is None else time.monotonic() + timeout
    report = _status(run_id, url)
    if not _settled(report):
        report = _wait_for_change(run_id, url, report, deadline)
    if as_json:
        emit_json(report)
    elif report["status"] in GOING:
        err.print(f"{run_id} is still {report['status']} after {timeout:g}s")
    else:
        out.print(f"{run_id} {styled(report['status'])}"
                  + (f": {report['error']}" if report["error"] else "")
                  + (f"; see baton inbox {run_id}" if report["status"] == "waiting" else "")
                  + (f"; {_no_coordinator(report)}; `baton resume {run_id}` continues it"
                     if report["status"] == "stalled" else ""), highlight=False)
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
    with open_store(url) as log:
        entry = people.request_cancel(log, run_id, note)
        if not _attached_and_alive(run_id, address):
            people.cancel_in_place(log, run_id, entry)
    report = _status(run_id, url)
    if as_json:
        emit_json(report)
    else:
        out.print(f"cancel recorded for {run_id} (now {report['status']})")


def _status_without_store(run_id: str, address: str | None, error: BatonError,
                          as_json: bool) -> NoReturn:
    """Report what the run's live coordinator says, the store being unreadable; or
    fail with the store's error when no coordinator answers."""
    from baton.actors.cluster import live_progress

    live = live_progress(run_id) if _attached_and_alive(run_id, address) else None
    if live is None:
        fail(error)
    if as_json:
        emit_json({"run_id": run_id, "status": live.status, "store_error": str(error),
                   **{k: v for k, v in live.as_dict().items() if k != "output"}})
    else:
        line = f"[bold]{run_id}[/]  {styled(live.status)}  {live.accepted} of {live.tasks} " \
               f"tasks accepted, {live.in_flight} in flight (its coordinator's count)"
        out.print(line, highlight=False)
        outage = store_outage(live) if live.store_down_since else f"store: {error}"
        out.print(f"  [yellow]{outage}[/]", highlight=False)
    raise typer.Exit(EXIT_DONE if live.status in FINE else EXIT_FAILED)


def _no_coordinator(report: dict[str, Any]) -> str:
    """Why a run is stalled, from its coordinator's last heartbeat."""
    beat = report["coordinator"]
    if beat is None:
        return "no coordinator has reported for this run"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat["at"]))
    if beat["phase"] == "stopped":
        return f"its coordinator ({beat['coordinator']}) was stopped at {when}: its driver " \
               "was interrupted"
    return f"no live coordinator: the last ({beat['coordinator']}) reported at {when}"


def _wait_for_change(run_id: str, url: str, report: dict[str, Any],
                     deadline: float | None) -> dict[str, Any]:
    """Follow the run's log until its status is no longer running, or the deadline."""
    with open_store(url) as log:
        seen = stale = report["events"]
        again = time.monotonic() + STALE_AFTER_S / 3
        for event in live.follow(log, run_id, after=seen, tick_s=0.5):
            if event is not None:
                seen = event.seq
            ended = event is not None and event.type in ENDINGS
            # Whether only people can move the run on shows in its state, not in one
            # event: look again once things have been quiet for a moment; and now and
            # then, for a coordinator that has stopped reporting.
            if ended or (event is None and (seen != stale or time.monotonic() > again)):
                report, stale = _status(run_id, url), seen
                again = time.monotonic() + STALE_AFTER_S / 3
                if _settled(report):
                    return report
            if deadline is not None and time.monotonic() >= deadline:
                return report
    return report


def _settled(report: dict[str, Any]) -> bool:
    """Has the run stopped moving, as far as waiting for it goes? Not while it runs or is
    queued; nor while it is stalled for less than RESTART_GRACE_S by a coordinator that
    did not say it stopped (Ray may be restarting it elsewhere)."""
    if report["status"] in GOING:
        return False
    beat = report["coordinator"]
    return not (report["status"] == "stalled" and beat is not None
                and beat["phase"] != "stopped" and time.time() - beat["at"] < RESTART_GRACE_S)


def _attached_and_alive(run_id: str, address: str | None) -> bool:
    """Is a coordinator driving `run_id` in a reachable Ray cluster?"""
    from baton.actors.cluster import attach_ray, coordinator_alive

    try:
        attach_ray(address)
    except ClusterUnavailableError:
        return False
    return coordinator_alive(run_id)


def _status(run_id: str, url: str) -> dict[str, Any]:
    """How the run stands: from its log, its inbox, and its coordinator's heartbeat."""
    with open_store(url) as log:
        beat = log.heartbeats().get(run_id)
        try:
            state, phase, answered = people.run_phase(log, run_id)
        except UnknownRunError:
            if beat is None or standing("running", beat, time.time()) != "queued":
                raise
            # Launched, and waiting for the cluster to grant its workers: no log yet.
            return {"run_id": run_id, "status": "queued", "tasks": 0, "accepted": 0,
                    "in_flight": 0, "escalations": [], "answered": [], "events": 0,
                    "coordinator": asdict(beat), "error": "", "output": None}
    return {"run_id": run_id,
            "status": standing(phase, beat, time.time()),
            "tasks": len(state.tasks), "accepted": state.accepted,
            "in_flight": len(state.in_flight), "escalations": sorted(state.escalations),
            "answered": sorted(answered), "events": state.seq,
            "coordinator": asdict(beat) if beat else None,
            "error": state.error, "output": state.output}


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
