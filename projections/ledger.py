"""A run's ledger for reading: every task with its status, attempts, handler, outcome.

A pure fold of the run's log. `status` adds one reading the decider does not need:
a run still running whose only remaining work waits on people is `waiting`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from baton.events.model import Usage
from baton.events.schema import (
    Envelope,
    EscalationRaised,
    FailureReported,
    RecoveryChosen,
    ResultReceived,
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
class Spent:
    """What a run's work spent on models, summed over the usage its answers reported;
    `unpriced` of them had no price, so `cost_usd` is at least what was spent."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, usage: Usage) -> None:
        self.requests += usage.requests
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if usage.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += usage.cost_usd

    def describe(self) -> str:
        cost = f"${self.cost_usd:,.4f}" + (f" and {self.unpriced} answer(s) unpriced"
                                           if self.unpriced else "")
        return (f"spent {self.requests:,} model requests, {self.input_tokens:,} tokens in, "
                f"{self.output_tokens:,} out; {cost}")


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
    spent: Spent | None = None  # None when no answer reported usage

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
    spent = Spent()
    for item in log:
        event, recorded = item if isinstance(item, tuple) else (item, None)
        state.apply(event, recorded)
        counts[type(event).__name__] += 1
        answer = (event.result if isinstance(event, ResultReceived) else
                  event.failure if isinstance(event, FailureReported) else None)
        if answer is not None and answer.usage is not None:
            spent.add(answer.usage)
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
        spent=spent if spent != Spent() else None,
    )

