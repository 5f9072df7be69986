"""What people send a run: answers to escalations and requests to cancel.

Both are written to the run's inbox, a stream of its own in the store (`RUN~inbox`), so
sending one needs no Ray and no live coordinator. A live coordinator polls its inbox and
takes each entry into the run's log as a stimulus (HumanAnswered, CancelRequested); a
resumed one takes up whatever arrived while none was alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

from baton.events.decider import decide_in_place
from baton.events.errors import (
    BadAnswerError,
    BadLogError,
    BadSpecError,
    BatonError,
    ConcurrencyConflictError,
    EncryptionKeyError,
)
from baton.events.model import Json, Task, escalation_parts
from baton.events.policy import DefaultPolicy, schema_problems
from baton.events.schema import ENDINGS, CancelRequested, Event, HumanAction, HumanAnswered
from baton.events.state import RunState
from baton.events.store import EventStore
from baton.events.tree import child_run_id

from .spec import schema_of


def inbox_id(run_id: str) -> str:
    """The store stream holding `run_id`'s inbox."""
    return f"{run_id}~inbox"


@dataclass(frozen=True)
class OpenEscalation:
    """A question a run is waiting on a person to answer."""

    run_id: str
    escalation_id: str
    task_id: str
    capability: str
    question: str
    handlers: tuple[str, ...]  # who could take it on reassignment
    answered: bool  # an answer is in the inbox, not yet taken up by a coordinator


def pending(store: EventStore, run_id: str, after: int) -> list[Event]:
    """Inbox entries of `run_id` after position `after`, oldest first."""
    return store.read(inbox_id(run_id), after=after)


def open_escalations(
    store: EventStore, run_id: str | None = None,
    unreadable: Callable[[str, BatonError], None] | None = None,
) -> list[OpenEscalation]:
    """Open escalations of one run and the runs under it still going (a child waiting
    on people keeps its parent's assignment in flight), or of every run in the store
    that is not finished. Of those, one that cannot be read (a damaged log, another key)
    is passed to `unreadable` and skipped, when it is given; otherwise its error is
    raised (always, for the run asked about)."""
    run_ids = ([run_id, *(i.run_id for _, i in store.tree(run_id) if i.status == "running")]
               if run_id else [r.run_id for r in store.runs()])
    found: list[OpenEscalation] = []
    for rid in run_ids:
        try:
            found += _open_in(store, rid)
        except (BadLogError, EncryptionKeyError) as error:
            if unreadable is None or rid == run_id:
                raise
            unreadable(rid, error)
    return found


def _open_in(store: EventStore, rid: str) -> list[OpenEscalation]:
    """The open escalations of one run (none once it has ended)."""
    store.require_run(rid)
    last = store.last_event(rid)
    if last is not None and last.type in ENDINGS:
        return []
    state = store.state(rid)
    answered = {e.escalation_id for e in pending(store, rid, state.inbox_seen)
                if isinstance(e, HumanAnswered)}
    found: list[OpenEscalation] = []
    for esc, task_id in sorted(state.escalations.items()):
        task = state.tasks[task_id].task
        found.append(OpenEscalation(
            run_id=rid, escalation_id=esc, task_id=task_id, capability=task.capability,
            question=_question(store, rid, esc),
            handlers=state.by_capability.get(task.capability, ()), answered=esc in answered))
    about_budget = state.spend.escalation  # about the run: no task, no handler
    if about_budget is not None:
        found.append(OpenEscalation(
            run_id=rid, escalation_id=about_budget, task_id="", capability="",
            question=_question(store, rid, about_budget), handlers=(),
            answered=about_budget in answered))
    return found


def _question(store: EventStore, run_id: str, escalation_id: str) -> str:
    seq = escalation_parts(escalation_id)[1]  # type: ignore[index]  # (an open one's)
    [event] = store.read(run_id, after=seq - 1, until=seq)
    return str(getattr(event, "question", ""))


def answer(
    store: EventStore,
    escalation_id: str,
    action: HumanAction,
    *,
    handler: str | None = None,
    note: str = "",
    output: Json = None,
    answered_by: str = "",
    raise_by: float | None = None,
) -> HumanAnswered:
    """Record a person's answer to an open escalation in its run's inbox. A question
    about the run's budget takes "raise_budget" (by `raise_by`, in the unit of the limit
    reached) or "stop"; a question about a task, any other action."""
    named = escalation_parts(escalation_id)
    if named is None:
        raise BadAnswerError(f"{escalation_id!r} is not an escalation id (RUN:esc-N); "
                             "`baton inbox` lists the open ones")
    run_id = named[0]
    seen = store.last_seq(inbox_id(run_id))  # a second answer racing this one conflicts
    escalation = next((e for e in open_escalations(store, run_id)
                       if e.escalation_id == escalation_id), None)
    if escalation is None:
        raise BadAnswerError(f"escalation {escalation_id!r} is not open; `baton inbox {run_id}` "
                             "lists the open ones")
    if escalation.answered:
        raise BadAnswerError(f"escalation {escalation_id!r} is already answered; the answer "
                             "waits for the run's coordinator (`baton resume "
                             f"{run_id}` if none is alive)")
    about_budget = not escalation.task_id
    if about_budget != (action in ("raise_budget", "stop")):
        raise BadAnswerError(
            f"escalation {escalation_id!r} asks about the run's budget: answer with "
            "--raise-budget N or --stop" if about_budget else
            f"escalation {escalation_id!r} asks about task {escalation.task_id!r}: answer "
            "with --retry, --reassign HANDLER, --abandon or --accept-output FILE.json")
    if action == "raise_budget" and not (raise_by and raise_by > 0):
        raise BadAnswerError(f"--raise-budget needs an amount above 0, not {raise_by}")
    if action == "reassign" and handler not in escalation.handlers:
        raise BadAnswerError(f"--reassign needs one of the handlers with capability "
                             f"{escalation.capability!r}: {', '.join(escalation.handlers)}")
    if action == "accept":
        task = store.state(run_id).tasks[escalation.task_id].task
        problems = output_problems(task, output)
        if problems:
            raise BadAnswerError(f"the output offered for task {task.id!r} would be rejected: "
                                 f"{'; '.join(problems)}; nothing was recorded")
    return _post(store, run_id, lambda seq, rid: HumanAnswered(
        run_id=rid, seq=seq, recorded_at=time.time(), escalation_id=escalation_id,
        action=action, handler=handler, note=note, output=output, answered_by=answered_by,
        raise_by=raise_by if action == "raise_budget" else None), seen)


def output_problems(task: Task, output: Json) -> list[str]:
    """How `output` fails the task's own contract: its output schema (when this process
    can import it; the coordinator judges it all the same) and its `done_when` checks."""
    try:
        model = schema_of(task)
    except BadSpecError:
        model = None
    problems = schema_problems(task.carrying(model), output) if model is not None else []
    return problems or [p for check in task.done_when if (p := check.problem(output))]


def request_cancel(store: EventStore, run_id: str, note: str = "") -> CancelRequested:
    """Record a request to cancel `run_id` in its inbox."""
    store.require_run(run_id)
    return _post(store, run_id, lambda seq, rid: CancelRequested(
        run_id=rid, seq=seq, recorded_at=time.time(), note=note))


Entry = TypeVar("Entry", HumanAnswered, CancelRequested)


def _post(
    store: EventStore, run_id: str, make: Callable[[int, str], Entry], seen: int | None = None
) -> Entry:
    stream = inbox_id(run_id)
    last = store.last_seq(stream) if seen is None else seen
    entry = make(last + 1, stream)
    store.append(stream, [entry], last)
    return entry


def run_phase(store: EventStore, run_id: str) -> tuple[RunState, str, set[str]]:
    """The run's folded state, its phase as a reader should see it, and the escalations
    answered in its inbox that no coordinator has taken up yet. A run whose people have
    answered (or that was asked to cancel) is no longer waiting on them, only on its
    coordinator to take the entries up: `running`."""
    store.require_run(run_id)
    state = store.state(run_id)
    entries = pending(store, run_id, state.inbox_seen)
    answered = {e.escalation_id for e in entries if isinstance(e, HumanAnswered)}
    phase = state.phase
    return state, ("running" if phase == "waiting" and entries else phase), answered


def cancel(store: EventStore, run_id: str, note: str, alive: Callable[[str], bool]) -> None:
    """Cancel `run_id`: ask its coordinator (once: a request already there stands), or,
    when none is `alive`, cancel it in its log at once. Another canceller at the same
    moment (a parent's coordinator, a second `baton cancel`) is no error."""
    entry = requested(store, run_id)
    if entry is None:
        try:
            entry = request_cancel(store, run_id, note)
        except ConcurrencyConflictError:  # the other one asked first: theirs stands
            entry = requested(store, run_id)
    if entry is not None and not alive(run_id):
        with suppress(ConcurrencyConflictError):  # the other one took it in first
            cancel_in_place(store, run_id, entry)


def cancel_children(store: EventStore, run_id: str, why: str,
                    alive: Callable[[str], bool]) -> list[str]:
    """Cancel the runs under `run_id` that are still going, each in its own log, saying
    `why`. Top down, so that every parent is asked before its children end: one that
    ends, failed, would otherwise have its parent start another in its place."""
    going = [child.run_id for _, child in store.tree(run_id) if child.status == "running"]
    for child in going:
        cancel(store, child, f"{why} (run {child} is under it)", alive)
    return going


def cancel_orphans(store: EventStore, state: RunState, alive: Callable[[str], bool]) -> None:
    """Once run `state` has ended, cancel the runs its subruns started that are still
    going (children of attempts given up, or of the whole run when it failed): nothing
    waits for them now. Found from the run's own tasks, not the runs index (which a
    coordinator would have to bring up to date first); each child cancels its own in
    turn. A store that refuses leaves a child to `baton cancel`."""
    capable = {c for h in state.handlers.values() if h.subrun for c in h.capabilities}
    if state.status == "running" or not capable:
        return
    why = f"its parent run {state.run_id} {state.status}"
    for record in state.tasks.values():
        if record.task.capability not in capable:
            continue
        for attempt in range(1, record.attempts + 1):
            child = child_run_id(state.run_id, f"{record.task.id}#{attempt}")
            with suppress(BatonError):
                last = store.last_seq(child)
                if last and store.read(child, after=last - 1)[-1].type not in ENDINGS:
                    cancel(store, child, f"{why} (run {child} is under it)", alive)


def requested(store: EventStore, run_id: str) -> CancelRequested | None:
    """The request to cancel `run_id`, if anyone has made one (a cancelled run is never
    taken up again)."""
    return next((e for e in pending(store, run_id, 0) if isinstance(e, CancelRequested)), None)


def cancel_in_place(store: EventStore, run_id: str, entry: CancelRequested) -> None:
    """Take a cancel request into the log of a run no coordinator is driving: the
    in-flight work is abandoned and the run fails, recorded as a coordinator would."""
    state = store.state(run_id)
    if state.status != "running":
        return
    stimulus = entry.model_copy(update={"run_id": run_id, "seq": state.seq + 1,
                                        "inbox_seq": entry.seq})
    expected = state.seq
    # Cancelling consults no policy rule, so the default policy decides it exactly.
    events = decide_in_place(state, stimulus, DefaultPolicy())
    store.append(run_id, [e for e, _ in events], expected, [b for _, b in events])
