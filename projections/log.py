"""A run's log, readable: one line per event, with the rule and facts behind decisions."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from baton.events.model import Execution, task_of
from baton.events.schema import (
    AssignmentDispatched,
    CancelRequested,
    CoordinatorRestarted,
    Decision,
    Envelope,
    EscalationRaised,
    FailureReported,
    HumanAnswered,
    PlanChanged,
    RecoveryChosen,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRequested,
    Stimulus,
    TimerFired,
    WorkerReplaced,
    WorkerStuck,
)


def short(value: Any, limit: int = 80) -> str:
    """Compact JSON of `value`, cut to `limit` characters."""
    # Every item of a dict or list takes a character at least, so its first `limit`
    # items already run past the cut: a run's output of many thousand entries is not
    # serialized whole to show 80 characters of it (a report does so once per task).
    if isinstance(value, dict) and len(value) > limit:
        value = dict(itertools.islice(value.items(), limit))
    elif isinstance(value, list | tuple) and len(value) > limit:
        value = value[:limit]
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(event: Envelope) -> str:
    """What happened, in a few words."""
    match event:
        case RunRequested():
            return (f"goal {event.goal!r}: {len(event.tasks)} tasks, handlers "
                    f"{', '.join(h.name for h in event.handlers)}")
        case RunForked():
            return (f"copied from {event.parent_run_id} up to seq {event.parent_seq}; "
                    f"decided from here by {event.policy or 'the same policy'}"
                    + (f" ({event.note})" if event.note else ""))
        case PlanChanged():
            added = "the requested tasks" if event.requested else ", ".join(
                t.id for t in event.added[:5]) + (" …" if len(event.added) > 5 else "")
            return f"added {added}"
        case AssignmentDispatched():
            a = event.assignment
            return f"{a.id} -> {a.handler}" + (f" (feedback: {len(a.feedback)})"
                                               if a.feedback else "")
        case ResultReceived():
            return (f"{event.result.assignment_id} returned {short(event.result.output, 60)}"
                    + _ran(event.result.execution))
        case FailureReported():
            return (f"{event.failure.assignment_id} {event.failure.summary()}"
                    + _ran(event.failure.execution))
        case TimerFired():
            return f"{event.assignment_id} timed out"
        case WorkerStuck():
            return f"{event.handler} still busy with {event.assignment_id}" + (
                f" ({event.note})" if event.note else "")
        case WorkerReplaced():
            return f"{event.handler}'s worker stuck on {event.assignment_id} is restarted"
        case ResultValidated():
            problems = "; ".join(event.verdict.problems)
            return f"{event.assignment_id} {event.outcome}" + (f": {problems}" if problems else "")
        case RecoveryChosen():
            target = f" on {event.handler}" if event.handler else ""
            return f"{event.task_id}: {event.action}{target}"
        case EscalationRaised():
            return f"{event.escalation_id} for {event.task_id}"
        case HumanAnswered():
            return (f"{event.escalation_id}: {event.action}"
                    + (f" ({event.note})" if event.note else ""))
        case CancelRequested() | CoordinatorRestarted():
            return event.note
        case ResultsChecked():
            problems = "; ".join(event.verdict.problems)
            sent = "sent back " if event.verdict.sent_back else ""
            return "ok" if event.verdict.accepted else sent + problems
        case RunCompleted():
            return f"output {short(event.output, 60)}"
        case RunFailed():
            return event.error
    return ""


def line(event: Envelope) -> str:
    """One line: seq, type, what happened, and for a decision its rule and facts."""
    text = f"{event.seq:>6}  {type(event).__name__:<21} {describe(event)}"
    if isinstance(event, Decision):
        text += f"  [{event.reason.rule}]"
        if event.reason.facts:
            text += f" {short(event.reason.facts, 100)}"
    return text


def _ran(execution: Execution | None) -> str:
    if execution is None:
        return ""
    took_ms = (execution.ended_at - execution.started_at) * 1e3
    return (f" ({took_ms:,.0f} ms on replica {execution.replica}, pid {execution.pid}"
            f"{', node ' + execution.node[:8] if execution.node else ''})")


def concerns(event: Envelope, task_id: str) -> bool:
    """Does `event` concern task `task_id`?"""
    return task_id in about_tasks(event)


def about_tasks(event: Envelope) -> tuple[str, ...]:
    """The tasks an event concerns, read off the event."""
    match event:
        case AssignmentDispatched():
            return (event.assignment.task_id,)
        case ResultReceived():
            return (task_of(event.result.assignment_id),)
        case FailureReported():
            return (task_of(event.failure.assignment_id),)
        case TimerFired() | WorkerStuck() | WorkerReplaced():
            return (task_of(event.assignment_id),)
        case ResultValidated() | RecoveryChosen() | EscalationRaised():
            return (event.task_id,)
        case PlanChanged():
            return tuple(t.id for t in event.added)
        case ResultsChecked():  # the tasks it sent back, and those redone after them
            return (*event.verdict.sent_back, *event.reason.facts.get("redone_after", ()))
    return ()


def turns(log: Sequence[Envelope]) -> list[tuple[Stimulus, tuple[Decision, ...]]]:
    """The log as turns: each stimulus with the decisions recorded after it."""
    found: list[tuple[Stimulus, list[Decision]]] = []
    for event in log:
        if isinstance(event, Stimulus):
            found.append((event, []))
        elif found and isinstance(event, Decision):
            found[-1][1].append(event)
    return [(stimulus, tuple(decided)) for stimulus, decided in found]


def gist(event: Envelope) -> str:
    """What an event says, apart from which run it belongs to: its JSON without the run
    id, the state digest (which chains over the run id), clock readings or inbox places,
    and with escalation ids (RUN:esc-N) not naming the run."""
    text = event.model_dump_json(exclude={"run_id", "state_digest", "recorded_at",
                                          "inbox_seq"})
    if isinstance(event, AssignmentDispatched) and "child_run" in event.reason.facts:
        text = text.replace(f'"child_run":"{event.reason.facts["child_run"]}"',
                            '"child_run":"(RUN\'s)"')  # the subrun's child of this run
    return text.replace(f'"{event.run_id}:esc-', '"RUN:esc-')
