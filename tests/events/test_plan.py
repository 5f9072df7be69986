"""Plans: checked when a run is requested and whenever a policy proposes more."""

from __future__ import annotations

import pytest

from baton import Budget, Task
from baton.events.schema import (
    PlanChanged,
    RunCompleted,
)
from baton.testing import Scenario
from tests.fixtures.specs import ExpandingPolicy, Listing, counting, handlers


def types(decisions: list) -> list[str]:
    return [d.type for d in decisions]


def test_a_planning_task_adds_tasks_mid_run_with_a_recorded_reason() -> None:
    """A planning output proposes tasks; PlanChanged records them and why; they run."""
    plan = [Task(id="plan", capability="plan", output_schema=Listing)]
    run = Scenario(plan, [*handlers("planner", capability="plan"), *handlers("counter")],
                   ExpandingPolicy())

    decisions = run.succeed("plan#1", {"names": ["x", "y"]})

    assert types(decisions) == ["ResultValidated", "PlanChanged", "AssignmentDispatched",
                                "AssignmentDispatched"]
    change = decisions[1]
    assert isinstance(change, PlanChanged)
    assert [t.id for t in change.added] == ["count-x", "count-y"]
    assert change.reason.rule == "expand.from_output"
    assert change.reason.facts == {"from_task": "plan", "assignment": "plan#1", "added": 2}
    assert decisions[2].assignment.inputs == {"name": "x", "listing": {"names": ["x", "y"]}}
    run.succeed("count-x#1", {"count": 1})
    final = run.succeed("count-y#1", {"count": 2})
    assert isinstance(final[-1], RunCompleted) and set(final[-1].output) == {
        "plan", "count-x", "count-y"}


def test_proposed_tasks_that_break_the_plan_reject_the_planning_output() -> None:
    """A proposal reusing a task id is refused; the planning task is retried with why."""
    plan = [Task(id="plan", capability="plan", output_schema=Listing), counting("count-x")]
    run = Scenario(plan, [*handlers("planner", capability="plan"), *handlers("counter")],
                   ExpandingPolicy())
    decisions = run.succeed("plan#1", {"names": ["x"]})
    assert decisions[0].outcome == "rejected"
    assert "task id 'count-x' is used twice" in decisions[0].verdict.problems[0]
    assert decisions[1].action == "retry"


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        ([counting("a"), counting("a")], "task id 'a' is used twice"),
        ([counting("a", capability="paint")], "needs capability 'paint', which no handler has"),
        ([counting("a", depends_on=("ghost",))], "depends on unknown task 'ghost'"),
        ([counting("a", depends_on=("b",)), counting("b", depends_on=("a",))],
         "dependency cycle: a -> b -> a"),
        ([counting("x"), counting("a", depends_on=("x", "b")), counting("b", depends_on=("a",)),
          counting("c", depends_on=("a",))], "dependency cycle: a -> b -> a"),
        ([Task(id="a", capability="count", output_schema="nowhere.module:Gone")],
         "output schema 'nowhere.module:Gone' is not known to this run"),
    ],
)
def test_a_plan_that_cannot_run_fails_before_anything_is_dispatched(plan, problem) -> None:
    """Duplicate ids, unknown capabilities or dependencies and cycles are named."""
    run = Scenario(plan, handlers("h"))
    assert types(run.first) == ["RunFailed"]
    assert problem in run.first[0].error
    assert run.state.status == "failed" and not run.state.in_flight


def test_a_proposed_task_that_needs_an_abandoned_task_is_refused() -> None:
    """Expansion cannot add work that waits on an abandoned task (it would never run)."""

    class NeedsTheAbandoned(ExpandingPolicy):
        def expand(self, task, output):  # type: ignore[no-untyped-def]
            return [counting("late", depends_on=("gone",))] if task.id == "plan" else []

    plan = [Task(id="plan", capability="plan", output_schema=Listing),
            counting("gone", required=False, budget=Budget(attempts=1))]
    run = Scenario(plan, [*handlers("planner", capability="plan"), *handlers("counter")],
                   NeedsTheAbandoned())
    run.fail("gone#1", "broken")
    judged = run.succeed("plan#1", {"names": []})[0]
    assert judged.outcome == "rejected"
    assert "depends on abandoned task 'gone'" in judged.verdict.problems[0]
