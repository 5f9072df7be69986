"""Test helpers for users' own policies: drive the decider with scripted stimuli.

No Ray and no disk: a `Scenario` holds a run's log in memory (or appends it to a store
you pass), feeds it the stimuli you script, and shows you the decisions that follow.

    run = Scenario(tasks=[Task(id="a", capability="echo")],
                   handlers=[HandlerInfo(name="echo", capabilities=("echo",))])
    [a] = run.in_flight
    run.succeed(a.id, {"ok": True})
    assert run.state.status == "completed"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from baton.events.decider import decide_in_place
from baton.events.model import (
    NO_SCHEMAS,
    Assignment,
    Execution,
    Failure,
    FailureKind,
    HandlerInfo,
    Json,
    Result,
    RunBudget,
    Schemas,
    Task,
    Usage,
    schema_identity,
)
from baton.events.policy import DefaultPolicy, Policy
from baton.events.schema import (
    CancelRequested,
    CoordinatorRestarted,
    Decision,
    Envelope,
    FailureReported,
    HumanAction,
    HumanAnswered,
    ResultReceived,
    RunRequested,
    Stimulus,
    TimerFired,
)
from baton.events.state import RunState
from baton.events.store import EventStore
from baton.events.tree import ParentLink


class Scenario:
    """A run driven by hand: each call records one stimulus and returns its decisions."""

    def __init__(
        self,
        tasks: Sequence[Task],
        handlers: Sequence[HandlerInfo],
        policy: Policy | None = None,
        *,
        run_id: str = "run-1",
        goal: str = "",
        store: EventStore | None = None,
        at: float | None = None,
        schemas: Schemas = NO_SCHEMAS,
        budget: RunBudget | None = None,
        parent: ParentLink | None = None,
    ):
        self.run_id = run_id
        self.schemas = schemas  # for tasks given by topic rather than by class
        self.policy = policy or DefaultPolicy()
        self.state = RunState()
        self.log: list[Envelope] = []
        self.store = store
        kind = type(self.policy)
        self.first = self.stimulate(
            RunRequested, goal=goal, tasks=tuple(tasks), handlers=tuple(handlers),
            policy=f"{kind.__module__}:{kind.__qualname__}", recorded_at=at,
            schemas={topic: schema_identity(model) for topic, model in schemas.items()},
            budget=budget, parent=parent,
        )

    def stimulate(self, kind: type[Stimulus], **fields: Any) -> list[Decision]:
        """Record a stimulus of type `kind` and return the decisions that follow."""
        stimulus = kind(run_id=self.run_id, seq=self.state.seq + 1, **fields)
        expected = self.state.seq
        made = decide_in_place(self.state, stimulus, self.policy, schemas=self.schemas)
        decisions = cast(list[Decision], [event for event, _ in made[1:]])
        self.log.extend([stimulus, *decisions])
        if self.store is not None:
            self.store.append(self.run_id, [stimulus, *decisions], expected)
        return decisions

    @property
    def in_flight(self) -> list[Assignment]:
        """The assignments in flight now, in plan order."""
        records = (self.state.tasks[tid] for tid in self.state.in_flight.values())
        return [r.assignment for r in sorted(records, key=lambda r: r.index) if r.assignment]

    def assignment(self, task_id: str) -> Assignment:
        """The assignment of `task_id` in flight now."""
        found = self.state.tasks[task_id].assignment
        if found is None:
            raise KeyError(f"task {task_id!r} has no assignment in flight")
        return found

    def succeed(
        self, assignment_id: str, output: Json, *, at: float | None = None,
        execution: Execution | None = None, usage: Usage | None = None,
    ) -> list[Decision]:
        """A worker returns `output` for the assignment (recorded at `at`, run as
        `execution` says, having spent `usage`)."""
        result = Result(assignment_id=assignment_id, output=output, execution=execution,
                        usage=usage)
        return self.stimulate(ResultReceived, result=result, recorded_at=at)

    def fail(
        self, assignment_id: str, message: str = "", *, kind: FailureKind = "error",
        error_type: str = "", at: float | None = None, execution: Execution | None = None,
        usage: Usage | None = None,
    ) -> list[Decision]:
        """A worker reports that the assignment failed (recorded at `at`)."""
        failure = Failure(assignment_id=assignment_id, kind=kind, error_type=error_type,
                          message=message, execution=execution, usage=usage)
        return self.stimulate(FailureReported, failure=failure, recorded_at=at)

    def time_out(self, assignment_id: str, *, at: float | None = None) -> list[Decision]:
        """The assignment's deadline passes (recorded at `at`)."""
        return self.stimulate(TimerFired, assignment_id=assignment_id, recorded_at=at)

    def answer(
        self, escalation_id: str, action: HumanAction, *, handler: str | None = None,
        note: str = "", output: Json = None, answered_by: str = "",
        raise_by: float | None = None,
    ) -> list[Decision]:
        """A person answers an escalation."""
        return self.stimulate(HumanAnswered, escalation_id=escalation_id, action=action,
                              handler=handler, note=note, output=output,
                              answered_by=answered_by, raise_by=raise_by)

    def cancel(self, note: str = "") -> list[Decision]:
        return self.stimulate(CancelRequested, note=note)

    def restart(self) -> list[Decision]:
        return self.stimulate(CoordinatorRestarted)
