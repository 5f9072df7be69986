"""Where one task stands in a run (TaskRecord), and the assignment its next attempt gets:
exactly the context its task names (invariant 4), nothing from the plan or its siblings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from .model import (
    Assignment,
    FromTask,
    Json,
    Task,
    assignment_id,
    canonical_json,
    digest,
)

TaskStatus = Literal["blocked", "queued", "in_flight", "accepted", "escalated", "abandoned"]
TERMINAL_TASK: frozenset[str] = frozenset({"accepted", "abandoned"})


class TaskRecord:
    """Where one task stands: status, attempts, handlers tried, feedback, output."""

    __slots__ = (
        "assignment",
        "attempts",
        "blockers",
        "escalation",
        "feedback",
        "handler",
        "index",
        "lost",
        "output",
        "pinned",
        "queued_at",
        "received",
        "status",
        "task",
        "token",
        "tried",
    )

    def __init__(self, task: Task, index: int, blockers: int):
        self.task = task
        self.index = index  # place in plan order
        self.status: TaskStatus = "blocked"
        self.blockers = blockers  # dependencies not yet accepted
        self.attempts = 0
        self.tried: tuple[tuple[str, int], ...] = ()  # (handler, attempts) in order tried
        self.lost: tuple[tuple[str, int], ...] = ()  # (handler, attempts whose worker died)
        self.handler: str | None = None
        self.assignment: Assignment | None = None  # the attempt in flight, if any
        self.feedback: tuple[str, ...] = ()
        self.pinned: str | None = None  # handler the next attempt must go to
        self.token = 0  # which queue entry is live; older entries are stale
        self.queued_at = 0  # the run's count of enqueues when this task last joined a queue
        self.received: Json = None  # output awaiting validation
        self.output: Json = None  # accepted output
        self.escalation: str | None = None

    @property
    def current(self) -> str | None:
        """The id of the attempt in flight, if any."""
        return self.assignment.id if self.status == "in_flight" and self.assignment else None

    def copy(self) -> TaskRecord:
        clone = TaskRecord.__new__(TaskRecord)
        for name in TaskRecord.__slots__:
            setattr(clone, name, getattr(self, name))
        return clone


def next_assignment(record: TaskRecord, handler: str, tasks: Mapping[str, TaskRecord]
                    ) -> Assignment:
    """The next attempt at `record`'s task, on `handler`: its literal inputs and the
    accepted outputs of the tasks it names (from `tasks`), the feedback earlier attempts
    left folded into its instructions, and a digest of what it is given to see."""
    task = record.task
    inputs: dict[str, Json] = {}
    for name, value in task.inputs.items():
        inputs[name] = tasks[value.from_task].output if isinstance(value, FromTask) else value
    attempt = record.attempts + 1
    instructions = task.instructions
    if record.feedback:
        earlier = "Earlier attempts were not accepted:\n" + "\n".join(
            f"- {f}" for f in record.feedback)
        instructions = f"{instructions}\n\n{earlier}" if instructions else earlier
    return Assignment(
        id=assignment_id(task.id, attempt),
        task_id=task.id,
        attempt=attempt,
        handler=handler,
        capability=task.capability,
        instructions=instructions,
        feedback=record.feedback,
        inputs=inputs,
        context_digest=digest(canonical_json(inputs)),
        output_schema=task.output_schema,
        timeout_s=task.budget.timeout_s,
    )


def reopened_by(sent_back: Collection[str], tasks: Mapping[str, TaskRecord],
                dependents: Mapping[str, Collection[str]]) -> list[str]:
    """The accepted tasks done again when `sent_back` are: those, and every accepted task
    that used their outputs, at any remove; in plan order."""
    found: set[str] = set()
    todo = [tid for tid in sent_back if tasks[tid].status == "accepted"]
    while todo:
        task_id = todo.pop()
        if task_id not in found:
            found.add(task_id)
            todo.extend(d for d in dependents.get(task_id, ())
                        if tasks[d].status == "accepted")
    return sorted(found, key=lambda tid: tasks[tid].index)


def reopen(sent_back: Mapping[str, str], tasks: Mapping[str, TaskRecord],
           dependents: Mapping[str, Collection[str]]) -> list[str]:
    """Open again the tasks a check sent back, and the accepted tasks that used their
    outputs: each blocked on the dependencies it waits for again, its output set aside
    (the log keeps it). A task sent back that waits on another is told why now; the
    recovery rule chooses what becomes of the others. The tasks reopened."""
    again = reopened_by(sent_back, tasks, dependents)
    for task_id in again:
        tasks[task_id].status, tasks[task_id].output = "blocked", None
    for task_id in again:
        record = tasks[task_id]
        record.blockers = sum(tasks[d].status != "accepted" for d in record.task.dependencies)
        if record.blockers and task_id in sent_back:
            record.feedback = (*record.feedback, sent_back[task_id])
    return again


_TALLIES: dict[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = {}


def shared_tally(tried: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """One tuple for each tally of handlers tried: nearly every task of a large run has
    the same one (one attempt, on one of a few handlers). The table stops growing at a
    size no run's handlers reach; past it, tallies are kept as they come."""
    if len(_TALLIES) < 4096:
        return _TALLIES.setdefault(tried, tried)
    return _TALLIES.get(tried, tried)
