"""Explain a task's outcome by walking its log back to the decisions that made it.

From the end to the start: the synthesis that used the task's output, the validation
that accepted it (or the failures and recoveries that ended it), the output as the
worker returned it, the assignment (handler, routing rule, candidates weighed, the
inputs it was given and their digest), and the plan change that created the task —
each step with the state digest the decision looked at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from baton.events.errors import UnknownTaskError
from baton.events.schema import (
    AssignmentDispatched,
    Decision,
    Envelope,
    FailureReported,
    PlanChanged,
    RecoveryChosen,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunRequested,
)

from .log import concerns, describe


@dataclass
class Step:
    """One link of a trace: the event, what it says, and why it was decided."""

    seq: int
    type: str
    what: str
    rule: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    state_digest: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""  # the run whose log it is in
    depth: int = 0  # 0 in the run traced; 1 in a child run it started, and so on


def trace(log: Iterable[Envelope], task_id: str) -> list[Step]:
    """The chain of events behind `task_id`'s outcome, newest first."""
    events = list(log)
    about = [e for e in events if concerns(e, task_id)]
    request = next((e for e in events if isinstance(e, RunRequested)), None)
    created = next((e for e in events if isinstance(e, PlanChanged) and (
        any(t.id == task_id for t in e.added)
        or (e.requested and request is not None
            and any(t.id == task_id for t in request.tasks)))), None)
    if created is None:
        raise UnknownTaskError(f"run {events[0].run_id if events else '?'} has no task "
                               f"{task_id!r}; `baton show RUN` lists its tasks")
    accepted = [e for e in about if isinstance(e, ResultValidated) and e.outcome == "accepted"]
    checks = [e for e in about if isinstance(e, ResultsChecked)]
    if accepted and checks and checks[-1].seq > accepted[-1].seq:
        accepted = []  # sent back (or a task it uses was) since: not accepted as it stands
    steps: list[Step] = []
    ending = next((e for e in reversed(events) if isinstance(e, RunCompleted | RunFailed)), None)
    if accepted:
        judged = accepted[-1]
        if isinstance(ending, RunCompleted):
            steps.append(step_of(ending, detail=_uses(ending.output, task_id)))
        steps.append(step_of(judged))
        received = next((e for e in events if isinstance(e, ResultReceived)
                         and e.result.assignment_id == judged.assignment_id
                         and e.seq < judged.seq), None)
        if received is not None:
            steps.append(step_of(received, detail={"output": received.result.output,
                                                 **_transcript(received.result.transcript)}))
        chosen = [judged.assignment_id]
        # Why it was done again after an accepted attempt: a check sent it (or a task it
        # uses) back.
        steps += [step_of(e) for e in checks]
    else:
        # Not accepted: how it ended, and every attempt that led there.
        steps += [step_of(e, detail=_failed(e)) for e in reversed(about)
                  if isinstance(e, RecoveryChosen | ResultValidated | FailureReported
                                | ResultsChecked)
                  or type(e).__name__ in ("TimerFired", "EscalationRaised")]
        chosen = [e.assignment.id for e in about if isinstance(e, AssignmentDispatched)]
    dispatches = [e for e in about if isinstance(e, AssignmentDispatched)
                  and e.assignment.id in chosen]
    if accepted:  # the routing decision itself, not a restart's re-send of it
        dispatches = dispatches[:1]
    for event in dispatches:
        a = event.assignment
        steps.append(step_of(event, detail={
            "handler": a.handler, "attempt": a.attempt, "inputs": a.inputs,
            "context_digest": a.context_digest, "feedback": list(a.feedback)}))
    steps.sort(key=lambda s: -s.seq)
    steps.append(step_of(created))
    return steps


def _failed(event: Envelope) -> dict[str, Any]:
    """Where a failed attempt's handler raised: the traceback its worker reported, and
    an agent's transcript."""
    if not isinstance(event, FailureReported):
        return {}
    found = {"traceback": event.failure.traceback} if event.failure.traceback else {}
    return {**found, **_transcript(event.failure.transcript)}


def _transcript(messages: Any) -> dict[str, Any]:
    return {} if messages is None else {"transcript": messages}


def transcript_lines(messages: Any, width: int = 100) -> list[str]:
    """An agent's transcript in short: a line per part of each message, what kind it is
    and how it starts (`--json` gives it whole)."""
    lines: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        kind = message.get("kind", "?") if isinstance(message, dict) else "?"
        parts = message.get("parts", []) if isinstance(message, dict) else []
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            said = part.get("content", part.get("args", ""))
            text = " ".join((said if isinstance(said, str) else json.dumps(said)).split())
            name = part.get("part_kind", "part")
            lines.append(f"{kind} {name}: {text[:width]}{'…' if len(text) > width else ''}")
    return lines or ["(no messages)"]


def _uses(output: Any, task_id: str) -> dict[str, Any]:
    """What the final output holds under the task's id, when it is keyed by task."""
    if isinstance(output, dict) and task_id in output:
        return {"used": output[task_id]}
    return {"used": "not under this task's id: the synthesis combined the outputs "
                    "(the accepted output below is what it was given)"}


def step_of(event: Envelope, detail: dict[str, Any] | None = None) -> Step:
    """The event as a step of a trace, with the reason it was decided for, if any."""
    step = Step(seq=event.seq, type=type(event).__name__, what=describe(event),
                detail=detail or {}, run_id=event.run_id)
    if isinstance(event, Decision):
        step.rule = event.reason.rule
        step.facts = dict(event.reason.facts)
        step.candidates = [dict(c) for c in event.reason.candidates]
        step.state_digest = event.state_digest
    return step


def as_dicts(steps: list[Step]) -> list[dict[str, Any]]:
    return [asdict(s) for s in steps]
