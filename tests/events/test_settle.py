"""The check across results: a task sent back is done again with the check's feedback,
and the tasks that used its output are done again after it. No Ray, no store."""

from __future__ import annotations

from typing import Any

import pytest

from baton import DefaultPolicy, PolicyError, Task, Verdict, from_task
from baton.events.policy import PlanView, Recovery, RecoveryFacts
from baton.events.schema import AssignmentDispatched, RecoveryChosen, ResultsChecked
from baton.events.state import fold
from baton.projections.ledger import ledger
from baton.projections.trace import trace
from baton.projections.verification import verify_log
from baton.testing import Scenario
from tests.fixtures.policies import SendsBack
from tests.fixtures.specs import SCHEMAS, ExpandingPolicy, counting, handlers


class Agreeing(DefaultPolicy):
    """Sends back every task whose count differs from task a's, once a has one."""

    def check(self, plan: PlanView) -> Verdict:
        if "a" not in plan.outputs:
            return super().check(plan)
        expected = plan.outputs["a"]["count"]
        return Verdict.send_back({
            tid: f"your count {out['count']} contradicts a's {expected}"
            for tid, out in plan.outputs.items()
            if tid in ("b", "c") and out["count"] != expected})


def types(decisions: list[Any]) -> list[str]:
    return [d.type for d in decisions]


def test_a_task_sent_back_is_redone_with_the_feedback_and_the_run_completes() -> None:
    run = Scenario([counting("a"), counting("b")], handlers("h"), Agreeing())
    run.succeed("a#1", {"count": 2})
    settled = run.succeed("b#1", {"count": 5})

    assert types(settled) == ["ResultValidated", "ResultsChecked", "RecoveryChosen",
                              "AssignmentDispatched"]
    checked, recovery, redo = settled[1:]
    assert checked.reason.rule == "check.sent_back"
    assert checked.reason.facts["sent_back"] == ["b"]
    assert checked.verdict.sent_back == {"b": "your count 5 contradicts a's 2"}
    assert recovery.reason.facts["kind"] == "sent_back"
    assert (recovery.action, recovery.feedback) == ("retry", "your count 5 contradicts a's 2")
    assert redo.assignment.id == "b#2"
    assert "your count 5 contradicts a's 2" in redo.assignment.instructions
    assert run.state.accepted == 1 and run.state.open_tasks == 1
    assert run.state.tasks["b"].output is None  # set aside; the log keeps it

    done = run.succeed("b#2", {"count": 2})
    assert types(done) == ["ResultValidated", "ResultsChecked", "RunCompleted"]
    assert done[-1].output == {"a": {"count": 2}, "b": {"count": 2}}
    assert verify_log(run.log, Agreeing())[1] is None
    assert fold(run.log).digest == run.state.digest


def test_the_tasks_that_used_an_output_sent_back_are_done_again_after_it() -> None:
    tasks = [counting("a"), counting("b"),
             counting("w", inputs={"a": from_task("a"), "b": from_task("b")})]
    run = Scenario(tasks, handlers("h"), SendsBack(a="cite a source"))
    run.succeed("a#1", {"count": 1})
    run.succeed("b#1", {"count": 1})
    settled = run.succeed("w#1", {"count": 2})

    checked = next(d for d in settled if isinstance(d, ResultsChecked))
    assert checked.reason.facts["redone_after"] == ["w"]
    assert [a.id for a in run.in_flight] == ["a#2"]  # w waits for a's redo
    assert run.state.tasks["w"].status == "blocked"

    after = run.succeed("a#2", {"count": 7, "redone": True})
    again = next(d for d in after if isinstance(d, AssignmentDispatched))
    assert again.assignment.id == "w#2"
    assert again.assignment.inputs == {"a": {"count": 7, "redone": True}, "b": {"count": 1}}
    assert "cite a source" not in again.assignment.instructions  # w was not sent back

    done = run.succeed("w#2", {"count": 8})
    assert done[-1].type == "RunCompleted"
    assert verify_log(run.log, SendsBack(a="cite a source"))[1] is None


def test_a_task_sent_back_with_one_it_uses_waits_for_it_and_hears_why() -> None:
    tasks = [counting("a"), counting("w", inputs={"a": from_task("a")})]
    policy = SendsBack(a="wrong date", w="says nothing of a")
    run = Scenario(tasks, handlers("h"), policy)
    run.succeed("a#1", {"count": 1})
    settled = run.succeed("w#1", {"count": 1})

    recovered = [d.task_id for d in settled if isinstance(d, RecoveryChosen)]
    assert recovered == ["a"]  # w is redone because a is; the rule is asked about a only
    after = run.succeed("a#2", {"count": 3, "redone": True})
    redo = next(d for d in after if isinstance(d, AssignmentDispatched)).assignment
    assert redo.id == "w#2" and "says nothing of a" in redo.instructions
    assert run.succeed("w#2", {"count": 4, "redone": True})[-1].type == "RunCompleted"
    assert verify_log(run.log, policy)[1] is None


def test_a_check_that_keeps_sending_a_task_back_ends_with_a_person() -> None:
    class Never(DefaultPolicy):
        def check(self, plan: PlanView) -> Verdict:
            return Verdict.send_back({"a": "still wrong"})

    run = Scenario([counting("a")], handlers("h"), Never())
    for attempt in (1, 2):  # its attempt budget
        last = run.succeed(f"a#{attempt}", {"count": attempt})
    assert types(last)[-2:] == ["RecoveryChosen", "EscalationRaised"]
    assert last[-2].reason.rule == "recover.escalate_required"
    assert run.state.phase == "waiting"

    [line] = [t for t in ledger(run.log).tasks if t.id == "a"]
    assert line.status == "escalated" and "sent back: still wrong" in line.outcome
    steps = trace(run.log, "a")  # not traced as accepted: it was sent back since
    assert steps[0].type == "EscalationRaised"
    assert "check.sent_back" in [step.rule for step in steps]

    answered = run.answer(last[-1].escalation_id, "accept", output={"count": 9})
    assert types(answered)[:2] == ["ResultValidated", "ResultsChecked"]  # checked again


def test_sending_back_an_optional_task_that_is_abandoned_abandons_its_users() -> None:
    class Dropping(SendsBack):
        def recover(self, task: Task, facts: RecoveryFacts) -> Recovery:
            if facts.kind == "sent_back":
                return Recovery("abandon", "test.abandon")
            return super().recover(task, facts)

    tasks = [counting("a", required=False), counting("w", inputs={"a": from_task("a")},
                                                     required=False)]
    run = Scenario(tasks, handlers("h"), Dropping(a="off topic"))
    run.succeed("a#1", {"count": 1})
    settled = run.succeed("w#1", {"count": 1})
    abandoned = [(d.task_id, d.reason.rule) for d in settled if isinstance(d, RecoveryChosen)]
    assert abandoned == [("a", "test.abandon"), ("w", "recover.dependency_abandoned")]
    assert settled[-1].type == "RunCompleted" and settled[-1].output == {}


def test_a_check_may_send_back_only_accepted_tasks_and_validate_none() -> None:
    class Unknown(DefaultPolicy):
        def check(self, plan: PlanView) -> Verdict:
            return Verdict.send_back({"nope": "?"})

    run = Scenario([counting("a")], handlers("h"), Unknown())
    with pytest.raises(PolicyError, match="sent back 'nope'"):
        run.succeed("a#1", {"count": 1})

    class Early(DefaultPolicy):
        def validate(self, task: Task, output: Any) -> Verdict:
            return Verdict.send_back({"a": "again"})

    run = Scenario([counting("a")], handlers("h"), Early())
    with pytest.raises(PolicyError, match="only check"):
        run.succeed("a#1", {"count": 1})


def test_a_verdict_without_tasks_sent_back_is_stored_as_before() -> None:
    assert Verdict.send_back({}) == Verdict(accepted=True)
    assert Verdict.of(["x"]).model_dump_json() == '{"accepted":false,"problems":["x"]}'


def test_a_planner_sent_back_adds_only_the_tasks_it_did_not_add_before() -> None:
    class Replanning(ExpandingPolicy, SendsBack):
        pass

    policy = Replanning(p="plan for y too")
    tasks = [Task(id="p", capability="plan")]
    run = Scenario(tasks, [*handlers("planner", capability="plan"), *handlers("h")], policy,
                   schemas=SCHEMAS)
    run.succeed("p#1", {"names": ["x"]})
    settled = run.succeed("count-x#1", {"count": 1})
    assert [a.id for a in run.in_flight] == ["p#2"]
    assert next(d for d in settled if isinstance(d, ResultsChecked)).reason.facts[
        "redone_after"] == ["count-x"]  # it reads the plan's output

    replanned = run.succeed("p#2", {"names": ["x", "y"], "redone": True})
    [added] = [d.added for d in replanned if d.type == "PlanChanged"]
    assert [t.id for t in added] == ["count-y"]  # count-x is in the plan already
    assert sorted(a.id for a in run.in_flight) == ["count-x#2", "count-y#1"]
    run.succeed("count-x#2", {"count": 2})
    assert run.succeed("count-y#1", {"count": 3})[-1].type == "RunCompleted"
    assert verify_log(run.log, policy, schemas=SCHEMAS)[1] is None


def test_tasks_sent_back_are_recorded_in_plan_order_whatever_order_the_check_gave() -> None:
    class Backwards(DefaultPolicy):
        def check(self, plan: PlanView) -> Verdict:
            redo = [tid for tid, out in reversed(plan.outputs.items()) if out["count"] < 5]
            return Verdict.send_back({tid: f"{tid} is too low" for tid in redo})

    run = Scenario([counting("a"), counting("b")], handlers("h"), Backwards())
    run.succeed("a#1", {"count": 1})
    [checked] = [d for d in run.succeed("b#1", {"count": 2}) if isinstance(d, ResultsChecked)]
    assert list(checked.verdict.sent_back) == ["a", "b"]
    assert checked.verdict.problems == ("a: a is too low", "b: b is too low")
