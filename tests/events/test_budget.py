"""A run budget, decided purely: what was spent is folded from the usage results and
failures recorded; a limit reached stops new dispatches and asks a person once; their
answer raises the limit or stops the run; the policy sees what is left."""

from __future__ import annotations

import json
from typing import Any

from baton.events.model import RunBudget, Task, Usage
from baton.events.policy import DefaultPolicy, Recovery, RecoveryFacts
from baton.events.schema import (
    AssignmentDispatched,
    BudgetRaised,
    EscalationRaised,
    RunFailed,
    encode,
)
from baton.projections.ledger import ledger
from baton.projections.verification import verify_log
from baton.testing import Scenario
from tests.fixtures.golden import budgeted
from tests.fixtures.specs import counting, handlers

PRICED = Usage(model="openai:gpt-4o", requests=1, input_tokens=100, output_tokens=10,
               cost_usd=0.4)


def spending(budget: RunBudget, policy: Any = None) -> Scenario:
    return Scenario([counting(t) for t in "abcd"], handlers("h", capacity=2),
                    policy, run_id="spending", budget=budget)


def test_a_cost_limit_reached_stops_dispatch_and_asks_once() -> None:
    run = spending(RunBudget(max_cost_usd=1.0))
    run.succeed("a#1", {"count": 1}, usage=PRICED)
    run.succeed("b#1", {"count": 1}, usage=PRICED)  # $0.80: c and d go out
    run.succeed("c#1", {"count": 1}, usage=PRICED)  # $1.20: over
    asked = run.succeed("d#1", {"count": 1}, usage=PRICED)
    escalations = [e for e in run.log if isinstance(e, EscalationRaised)]
    assert len(escalations) == 1 and escalations[0].task_id == ""
    assert "spent $1.2000 of its $1.0000 budget" in escalations[0].question
    assert not any(isinstance(e, AssignmentDispatched) for e in asked)
    assert run.state.status == "completed"  # nothing was left to dispatch


def test_work_in_flight_finishes_and_nothing_new_goes_out() -> None:
    run = spending(RunBudget(max_tokens=100))
    decided = run.succeed("a#1", {"count": 1}, usage=PRICED)  # 110 tokens: over
    assert [e.type for e in decided] == ["ResultValidated", "EscalationRaised"]
    decided = run.succeed("b#1", {"count": 2})  # b was in flight: accepted
    assert [e.type for e in decided] == ["ResultValidated"]
    assert run.state.phase == "waiting" and run.state.accepted == 2
    [asked] = [e for e in run.log if isinstance(e, EscalationRaised)]
    raised = run.answer(asked.escalation_id, "raise_budget", raise_by=1000)
    assert isinstance(raised[0], BudgetRaised) and raised[0].budget.max_tokens == 1100
    assert [e.assignment.task_id for e in raised[1:]] == ["c", "d"]
    assert raised[0].reason.facts["by"] == 1000 and raised[0].reason.facts["limit"] == "tokens"


def test_stop_fails_the_run_and_keeps_what_was_accepted() -> None:
    run = spending(RunBudget(max_tokens=50))
    run.succeed("a#1", {"count": 1}, usage=PRICED)
    run.succeed("b#1", {"count": 2})
    [asked] = [e for e in run.log if isinstance(e, EscalationRaised)]
    [ended] = run.answer(asked.escalation_id, "stop", answered_by="ops")
    assert isinstance(ended, RunFailed) and ended.reason.rule == "human.stop_at_budget"
    assert "spent 110 tokens of its 50" in ended.error
    assert run.state.status == "failed"
    assert run.state.outputs() == {"a": {"count": 1}, "b": {"count": 2}}


def test_the_policy_sees_the_spend_and_what_is_left() -> None:
    seen: list[RecoveryFacts] = []

    class Watching(DefaultPolicy):
        def recover(self, task: Task, facts: RecoveryFacts) -> Recovery:
            seen.append(facts)
            return super().recover(task, facts)

    run = spending(RunBudget(max_cost_usd=2.0, max_tokens=10_000), Watching())
    run.succeed("a#1", {"count": 1}, usage=PRICED)
    run.fail("b#1", "boom", usage=PRICED)
    [facts] = seen
    assert (facts.spent_usd, facts.spent_tokens) == (0.8, 220)
    assert (facts.cost_left_usd, facts.tokens_left) == (1.2, 9780)
    recovered = next(e for e in run.log if e.type == "RecoveryChosen")
    assert recovered.reason.facts["cost_left_usd"] == 1.2


def test_a_run_without_a_budget_records_no_spend_facts() -> None:
    run = Scenario([counting("a")], handlers("h"), run_id="free")
    run.fail("a#1", "boom", usage=PRICED)
    recovered = next(e for e in run.log if e.type == "RecoveryChosen")
    assert "spent_usd" not in recovered.reason.facts
    assert "budget" not in json.loads(encode(run.log[0]))  # bytes as before budgets


def test_a_budgeted_run_replays_exactly() -> None:
    run = budgeted()
    assert verify_log(run.log, DefaultPolicy())[1] is None
    assert run.state.status == "failed" and run.state.spend.tokens == 125


def test_a_raise_goes_to_the_limit_the_question_asked_about() -> None:
    """A token limit is asked about; work in flight then passes the cost limit too. The
    answer raises tokens, as the question said, and the cost limit asks next."""
    run = spending(RunBudget(max_tokens=100, max_cost_usd=0.5))
    run.succeed("a#1", {"count": 1}, usage=Usage(model="m", input_tokens=150, cost_usd=0.1))
    run.succeed("b#1", {"count": 1}, usage=Usage(model="m", cost_usd=0.6))  # in flight
    [asked] = [e for e in run.log if isinstance(e, EscalationRaised)]
    assert asked.reason.facts["limit"] == "tokens"
    raised = run.answer(asked.escalation_id, "raise_budget", raise_by=1000)
    assert isinstance(raised[0], BudgetRaised) and raised[0].budget.max_tokens == 1100
    assert raised[0].budget.max_cost_usd == 0.5
    assert isinstance(raised[1], EscalationRaised) and raised[1].reason.facts["limit"] == "cost"


def test_stop_abandons_what_is_in_flight_and_a_finished_run_asks_nothing() -> None:
    run = spending(RunBudget(max_tokens=50))
    run.succeed("a#1", {"count": 1}, usage=PRICED)  # b still in flight
    [asked] = [e for e in run.log if isinstance(e, EscalationRaised)]
    stopped = run.answer(asked.escalation_id, "stop")
    assert [(e.type, getattr(e, "assignment_id", None)) for e in stopped] == [
        ("RecoveryChosen", "b#1"), ("RunFailed", None)]
    assert run.state.spend.escalation is None and not run.state.in_flight
    assert ledger(run.log).escalations == []
    assert "spending:esc" not in asked.question  # a fork renumbers it: not in the text
