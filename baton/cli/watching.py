"""How runs stand: status and wait, over a run and the runs under it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Annotated, Any, NoReturn

import typer

from baton.actors import inbox as people
from baton.events.errors import (
    EXIT_DONE,
    EXIT_FAILED,
    BatonError,
    ClusterUnavailableError,
    StoreFaultError,
    StoreUnavailableError,
    UnknownRunError,
)
from baton.events.schema import ENDINGS
from baton.events.store import EventStore, live, open_store, store_url
from baton.events.store.heartbeats import STALE_AFTER_S, Heartbeat, standing

from .common import (
    Address,
    AsJson,
    Store,
    app,
    emit_json,
    err,
    fail,
    out,
    refuse_missing,
    styled,
)
from .display import store_outage

GOING = ("running", "queued")  # how a run that may still end by itself stands
# How long `wait` gives a coordinator that stopped beating without saying it stopped to
# beat again: Ray restarts one whose node died on another node, which takes a while.
RESTART_GRACE_S = 90.0
FINE = ("completed", *GOING)  # what `baton status` exits 0 for
TREE_SHOWN = 10  # runs under a run that `baton status` names


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    store: Store = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """How a run stands now, from its log: status, tasks, work in flight, escalations.

    A nested run's counts include the runs under it, and each of them that has not
    completed is named, with how it stands. When the store cannot be read, the run's
    coordinator is asked instead (in the Ray cluster at --address, or this machine's):
    it says whether it is waiting for the store to come back.
    """
    try:
        report = status_of(run_id, store_url(store), tree=True)
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
        _print_tree(report["tree"])
    raise typer.Exit(EXIT_DONE if report["status"] in FINE else EXIT_FAILED)


def _print_tree(tree: dict[str, Any]) -> None:
    """The counts over a run and the runs under it, and each of those not completed."""
    if not tree["runs"]:
        return
    counts = ", ".join(f"{n} {status}" for status, n in sorted(tree["statuses"].items()))
    out.print(f"  with the {len(tree['runs'])} run(s) under it ({counts}): "
              f"{tree['accepted']} of {tree['tasks']} tasks accepted, "
              f"{tree['in_flight']} in flight", highlight=False)
    unfinished = [r for r in tree["runs"] if r["status"] != "completed"]
    for r in unfinished[:TREE_SHOWN]:
        why = f": {r['error']}" if r["error"] else \
            f"; baton inbox {r['run_id']}" if r["status"] == "waiting" else \
            f"; baton resume {r['run_id']}" if r["status"] == "stalled" else ""
        out.print(f"  {'  ' * r['depth']}└ {r['run_id']}  {styled(r['status'])}  (for "
                  f"{r['parent_assignment']}){why}", highlight=False)
    if len(unfinished) > TREE_SHOWN:
        out.print(f"  … and {len(unfinished) - TREE_SHOWN} more (--json lists them all)")


@app.command()
def wait(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SECONDS", help="Give up after this long (exit 1).")] = None,
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Wait until a run completes, fails, or waits on people; exit 0 only if it completed.

    The runs under it are waited for too (those of a cancelled or failed nested run are
    being cancelled), and a run whose work in flight is all children that wait on people
    waits with them. On PostgreSQL it is told of
    each event as it is recorded (LISTEN/NOTIFY); on SQLite it reads the log again four
    times a second. A run whose coordinator went quiet without stopping is given 90 s to
    come back (Ray may be restarting it on another node) before `wait` says it stalled.
    """
    url = store_url(store)
    deadline = None if timeout is None else time.monotonic() + timeout
    report = status_of(run_id, url, tree=True)
    if not _tree_settled(report):
        report = _wait_for_change(run_id, url, report, deadline)
    going = [r["run_id"] for r in report["tree"]["runs"] if r["status"] in GOING]
    if as_json:
        emit_json(report)
    elif not _tree_settled(report):
        err.print(f"{run_id} is still {report['status']} after {timeout or 0:g}s"
                  + (f"; so are the runs under it: {', '.join(going)}" if going else ""))
    elif report["status"] in GOING:  # held by children that wait on people, or stalled
        out.print(f"{run_id} waits on the runs under it: "
                  + ", ".join(f"{r['run_id']} {r['status']}" for r in report["tree"]["runs"]
                              if r["status"] in ("waiting", "stalled"))
                  + f"; see baton status {run_id}", highlight=False)
    else:
        out.print(f"{run_id} {styled(report['status'])}"
                  + (f": {report['error']}" if report["error"] else "")
                  + (f"; see baton inbox {run_id}" if report["status"] == "waiting" else "")
                  + (f"; {_no_coordinator(report)}; `baton resume {run_id}` continues it"
                     if report["status"] == "stalled" else ""), highlight=False)
    raise typer.Exit(EXIT_DONE if report["status"] == "completed" else EXIT_FAILED)


def _status_without_store(run_id: str, address: str | None, error: BatonError,
                          as_json: bool) -> NoReturn:
    """Report what the run's live coordinator says, the store being unreadable; or
    fail with the store's error when no coordinator answers."""
    from baton.actors.cluster import live_progress

    live = live_progress(run_id) if attached_and_alive(run_id, address) else None
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
    """Follow the run's log until it and the runs under it have stopped moving
    (`_tree_settled`), or the deadline."""
    with open_store(url) as log:
        seen = stale = report["events"]
        again = time.monotonic() + STALE_AFTER_S / 3
        for event in live.follow(log, run_id, after=seen, tick_s=0.5):
            if event is not None:
                seen = event.seq
            ended = event is not None and event.type in ENDINGS
            # Whether only people can move the run on shows in its state, not in one
            # event, and runs under it move in logs of their own: look again once things
            # have been quiet for a moment; and now and then.
            if ended or (event is None and (seen != stale or time.monotonic() > again)):
                report, stale = status_of(run_id, url, tree=True), seen
                again = time.monotonic() + STALE_AFTER_S / 3
                if _tree_settled(report):
                    return report
            if deadline is not None and time.monotonic() >= deadline:
                return report
    return report


def _tree_settled(report: dict[str, Any]) -> bool:
    """Have the run and every run under it stopped moving? A run whose work in flight
    is all children that have stopped (waiting on people, stalled) stops with them."""
    below = report["tree"]["runs"]
    child = {(r["parent"], r["parent_assignment"]): r for r in below}

    def still(run: dict[str, Any]) -> bool:
        held = [child.get((run["run_id"], a)) for a in run.get("in_flight_ids", ())]
        return _settled(run) or (run["status"] == "running" and bool(held) and all(
            c is not None and still(c) for c in held))

    return all(still(run) for run in [report, *below])


def _settled(report: dict[str, Any]) -> bool:
    """Has the run stopped moving, as far as waiting for it goes? Not while it runs or is
    queued; nor while it is stalled for less than RESTART_GRACE_S by a coordinator that
    did not say it stopped (Ray may be restarting it elsewhere)."""
    if report["status"] in GOING:
        return False
    beat = report["coordinator"]
    return not (report["status"] == "stalled" and beat is not None
                and beat["phase"] != "stopped" and time.time() - beat["at"] < RESTART_GRACE_S)


def attached_and_alive(run_id: str, address: str | None) -> bool:
    """Is a coordinator driving `run_id` in a reachable Ray cluster?"""
    from baton.actors.cluster import attach_ray, coordinator_alive

    try:
        attach_ray(address)
    except ClusterUnavailableError:
        return False
    return coordinator_alive(run_id)


def status_of(run_id: str, url: str, tree: bool = False) -> dict[str, Any]:
    """How the run stands: from its log, its inbox, and its coordinator's heartbeat;
    with `tree`, also how each run under it stands, and the counts over them all. A run
    with runs under it also lists its assignments in flight (`in_flight_ids`), to tell
    whether they are all children that wait."""
    refuse_missing(run_id, url)
    with open_store(url) as log:
        beats = log.heartbeats()
        family = log.tree(run_id) if tree else []
        parents = {info.parent for _, info in family}
        report = _standing(log, run_id, beats, ids=run_id in parents)
        if tree:
            below = [{**_standing(log, info.run_id, beats, output=False,
                                  ids=info.run_id in parents),
                      "depth": depth, "parent": info.parent,
                      "parent_assignment": info.parent_assignment}
                     for depth, info in family]
            whole = [report, *below]
            report["tree"] = {
                "runs": below,
                "statuses": dict(Counter(r["status"] for r in below)),
                **{k: sum(r[k] for r in whole) for k in ("tasks", "accepted", "in_flight")}}
    return report


def _standing(log: EventStore, run_id: str, beats: dict[str, Heartbeat], *,
              output: bool = True, ids: bool = False) -> dict[str, Any]:
    beat = beats.get(run_id)
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
            "error": state.error, **({"output": state.output} if output else {}),
            **({"in_flight_ids": sorted(state.in_flight)} if ids else {})}
