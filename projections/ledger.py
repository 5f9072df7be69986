"""A run's ledger for reading: every task with its status, attempts, handler, outcome.

A pure fold of the run's log. `status` adds one reading the decider does not need:
a run still running whose only remaining work waits on people is `waiting`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc

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


class TaskTable(Sequence[TaskLine]):
    """A ledger's tasks held as columns (TaskLine's, outputs aside), each made a
    TaskLine only when read: a run of a million events has a third of a million tasks,
    and a moment of it must read at once (moment.py)."""

    def __init__(self, columns: pa.Table):
        self.columns = columns.combine_chunks()

    def __len__(self) -> int:
        rows: int = self.columns.num_rows
        return rows

    @overload
    def __getitem__(self, index: int) -> TaskLine: ...

    @overload
    def __getitem__(self, index: slice) -> list[TaskLine]: ...

    def __getitem__(self, index: int | slice) -> TaskLine | list[TaskLine]:
        if isinstance(index, slice):
            return list(self._lines(self.columns.take(range(len(self))[index])))
        [line] = self._lines(self.columns.slice(range(len(self))[index], 1))
        return line

    def __iter__(self) -> Iterator[TaskLine]:
        return self._lines(self.columns)

    def with_status(self, status: str) -> int:
        found: int = pc.sum(pc.equal(self.columns.column("status"), status)).as_py() or 0
        return found

    def worth_showing(self, rows: int) -> list[TaskLine]:
        """`Ledger.worth_showing`, read from the columns."""
        trouble = pc.or_(pc.not_equal(self.columns.column("status"), "accepted"),
                         pc.greater(self.columns.column("attempts"), 1))
        fine = pc.indices_nonzero(pc.invert(trouble)).slice(
            0, max(0, rows - (pc.sum(trouble).as_py() or 0)))
        chosen = pa.concat_arrays([pc.indices_nonzero(trouble), fine])
        return list(self._lines(self.columns.take(pc.take(chosen, pc.sort_indices(chosen)))))

    @staticmethod
    def _lines(columns: pa.Table) -> Iterator[TaskLine]:
        for batch in columns.to_batches():
            for row in batch.to_pylist():
                yield TaskLine(**row)


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
    tasks: Sequence[TaskLine]  # a list, or a TaskTable
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
        if isinstance(self.tasks, TaskTable):
            return self.tasks.with_status("accepted")
        return sum(1 for t in self.tasks if t.status == "accepted")

    def worth_showing(self, rows: int) -> list[TaskLine]:
        """Every task that is not simply accepted, then accepted ones up to `rows`, in
        plan order."""
        if isinstance(self.tasks, TaskTable):
            return self.tasks.worth_showing(rows)
        trouble = [t for t in self.tasks if t.status != "accepted" or t.attempts > 1]
        room = max(0, rows - len(trouble))
        fine = [t for t in self.tasks if t.status == "accepted" and t.attempts <= 1][:room]
        keep = {id(t) for t in trouble + fine}
        return [t for t in self.tasks if id(t) in keep]

    def as_dict(self) -> dict[str, Any]:
        tasks = [asdict(line) for line in self.tasks]
        return {**asdict(replace(self, tasks=[])), "tasks": tasks}


def ledger(log: Iterable[Envelope | tuple[Envelope, bytes]]) -> Ledger:
    """Fold a run's log (events, or (event, stored bytes) pairs) into its Ledger."""
    book = Book()
    for item in log:
        event, recorded = item if isinstance(item, tuple) else (item, None)
        book.apply(event, recorded)
    return book.ledger()


class Book:
    """A run's Ledger as its log is folded, an event at a time: `ledger()` gives it as
    it stands after the events applied so far."""

    def __init__(self) -> None:
        self.state = RunState()
        self.outcome: dict[str, str] = {}
        self.questions: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.requested_at: float | None = None
        self.last_at: float | None = None

    def apply(self, event: Envelope, recorded: bytes | None = None) -> None:
        state, outcome = self.state, self.outcome
        state.apply(event, recorded)
        self.counts[type(event).__name__] += 1
        if isinstance(event, Stimulus) and event.recorded_at is not None:
            self.last_at = event.recorded_at
            if isinstance(event, RunRequested):
                self.requested_at = event.recorded_at
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
            self.questions[event.escalation_id] = event.question
            if event.task_id:
                outcome[event.task_id] = (f"{event.escalation_id}: " +
                                          outcome.get(event.task_id, ""))

    def ledger(self) -> Ledger:
        state, questions = self.state, self.questions
        lines = [
            TaskLine(
                id=task_id,
                capability=record.task.capability,
                required=record.task.required,
                status=record.status,
                attempts=record.attempts,
                handler=record.handler,
                outcome=self.outcome.get(task_id, ""),
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
            counts=dict(self.counts),
            requested_at=self.requested_at,
            last_recorded_at=self.last_at,
            forked_from=f"{state.forked_from[0]}@{state.forked_from[1]}"
            if state.forked_from else None,
            parent=f"{state.parent.run_id} {state.parent.assignment_id}"
            if state.parent else None,
            spent=state.spend.summary() if state.spend.reported else "",
            budget=state.spend.left(),
        )
