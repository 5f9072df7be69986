"""A run's ledger for reading: every task with its status, attempts, handler, outcome.

A pure fold of the run's log. `status` adds one reading the decider does not need:
a run still running whose only remaining work waits on people is `waiting`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from baton.events.schema import (
    Envelope,
    EscalationRaised,
    FailureReported,
    RecoveryChosen,
    ResultsChecked,
    ResultValidated,
    RunRequested,
    Stimulus,
    TimerFired,
)
from baton.events.state import RunState


@dataclass
class TaskLine:
    """One task as the ledger shows it."""

    id: str
    capability: str
    required: bool
    status: str
    attempts: int
    handler: str | None
    outcome: str
    output: Any = None


@dataclass
class Escalation:
    """An open question to a person."""

    id: str
    task_id: str
    question: str


@dataclass
class Ledger:
    """A run as its log tells it, ready to print."""

    run_id: str
    goal: str
    status: str
    tasks: list[TaskLine]
    output: Any
    error: str
    escalations: list[Escalation]
    events: int
    counts: dict[str, int] = field(default_factory=dict)
    requested_at: float | None = None
    last_recorded_at: float | None = None
    forked_from: str | None = None  # "PARENT@SEQ" for a fork
    parent: str | None = None  # "PARENT ASSIGNMENT" for a child run
    spent: str = ""  # what the work spent, in a line; empty when no answer reported any
    budget: str = ""  # what is left of each limit, in a line; empty with no budget

    @property
    def accepted(self) -> int:
        return sum(1 for t in self.tasks if t.status == "accepted")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ledger(log: Iterable[Envelope | tuple[Envelope, bytes]]) -> Ledger:
    """Fold a run's log (events, or (event, stored bytes) pairs) into its Ledger."""
    state = RunState()
    outcome: dict[str, str] = {}
    questions: dict[str, str] = {}
    counts: Counter[str] = Counter()
    requested_at = last_at = None
    for item in log:
        event, recorded = item if isinstance(item, tuple) else (item, None)
        state.apply(event, recorded)
        counts[type(event).__name__] += 1
        if isinstance(event, Stimulus) and event.recorded_at is not None:
            last_at = event.recorded_at
            if isinstance(event, RunRequested):
                requested_at = event.recorded_at
        if isinstance(event, ResultValidated) and event.outcome != "ignored":
            outcome[event.task_id] = ("accepted" if event.outcome == "accepted"
                                      else "rejected: " + "; ".join(event.verdict.problems))
        elif isinstance(event, FailureReported):
            task_id = state.in_flight.get(event.failure.assignment_id)
            if task_id:
                outcome[task_id] = event.failure.summary()
        elif isinstance(event, TimerFired):
            task_id = state.in_flight.get(event.assignment_id)
            if task_id:
                outcome[task_id] = "timed out"
        elif isinstance(event, RecoveryChosen) and event.action == "abandon":
            if event.reason.rule == "recover.dependency_abandoned":
                outcome[event.task_id] = f"needs {event.reason.facts['dependency']}, abandoned"
            elif event.reason.rule.startswith(("human.", "cancel.")):
                outcome[event.task_id] = event.reason.rule.replace(".", ": ", 1)
        elif isinstance(event, ResultsChecked) and event.verdict.sent_back:
            for task_id, why in event.verdict.sent_back.items():
                outcome[task_id] = f"sent back: {why}"
            for task_id in event.reason.facts.get("redone_after", ()):
                outcome[task_id] = "to be redone: a task it uses was sent back"
        elif isinstance(event, EscalationRaised):
            questions[event.escalation_id] = event.question
            if event.task_id:
                outcome[event.task_id] = (f"{event.escalation_id}: " +
                                          outcome.get(event.task_id, ""))
    lines = [
        TaskLine(
            id=task_id,
            capability=record.task.capability,
            required=record.task.required,
            status=record.status,
            attempts=record.attempts,
            handler=record.handler,
            outcome=outcome.get(task_id, ""),
            output=record.output,
        )
        for task_id, record in state.tasks.items()
    ]
    escalations = [
        Escalation(id=esc, task_id=task_id, question=questions[esc])
        for esc, task_id in sorted(state.escalations.items())
    ]
    if state.spend.escalation is not None:  # about the run's budget: no task
        esc = state.spend.escalation
        escalations.append(Escalation(id=esc, task_id="", question=questions[esc]))
    return Ledger(
        run_id=state.run_id,
        goal=state.goal,
        status=state.phase,
        tasks=lines,
        output=state.output,
        error=state.error,
        escalations=escalations,
        events=state.seq,
        counts=dict(counts),
        requested_at=requested_at,
        last_recorded_at=last_at,
        forked_from=f"{state.forked_from[0]}@{state.forked_from[1]}" if state.forked_from
        else None,
        parent=f"{state.parent.run_id} {state.parent.assignment_id}" if state.parent else None,
        spent=state.spend.summary() if state.spend.reported else "",
        budget=state.spend.left(),
    )

