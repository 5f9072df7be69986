"""Decider scenarios, written as given / when / then. No Ray, no store, no sleep."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from baton import BadLogError, Budget, DefaultPolicy, HandlerInfo, Task, Verdict, from_task
from baton.events.decider import decide
from baton.events.model import Result, canonical_json, digest
from baton.events.schema import (
    AssignmentDispatched,
    CancelRequested,
    EscalationRaised,
    RecoveryChosen,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    WorkerReplaced,
    WorkerStuck,
    encode,
)
from baton.events.state import INITIAL_STATE, RunState, evolve, fold
from baton.events.store import Codec
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers


def types(decisions: list) -> list[str]:
    return [d.type for d in decisions]


def test_all_tasks_succeed_and_the_run_completes_with_every_output() -> None:
    """Every task accepted -> ResultsChecked, then RunCompleted with each task's output."""
    run = Scenario([counting("a"), counting("b"), counting("c", depends_on=("a",))],
                   handlers("h1", "h2"))
    assert types(run.first) == ["PlanChanged", "AssignmentDispatched", "AssignmentDispatched"]
    assert {a.task_id for a in run.in_flight} == {"a", "b"}

    run.succeed("a#1", {"count": 1})
    run.succeed("b#1", {"count": 2})
    last = run.succeed("c#1", {"count": 3})

    assert types(last) == ["ResultValidated", "ResultsChecked", "RunCompleted"]
    assert run.state.status == "completed"
    assert last[-1].output == {"a": {"count": 1}, "b": {"count": 2}, "c": {"count": 3}}


def test_routing_picks_the_least_loaded_handler_and_records_the_candidates() -> None:
    """Two ready tasks go to two handlers; ties break by name; candidates are recorded."""
    run = Scenario([counting("a"), counting("b")], handlers("zeta", "alpha"))
    first, second = [d for d in run.first if isinstance(d, AssignmentDispatched)]
    assert first.assignment.handler == "alpha"
    assert second.assignment.handler == "zeta"
    assert second.reason.rule == "route.least_loaded"
    assert second.reason.candidates == (
        {"handler": "alpha", "load": 1, "capacity": None, "failures_in_a_row": 0,
         "free": True},
        {"handler": "zeta", "load": 0, "capacity": None, "failures_in_a_row": 0,
         "free": True},
    )


def test_capacity_bounds_work_in_flight_and_a_finished_result_frees_a_slot() -> None:
    """A handler with capacity 1 holds one assignment; the next waits until it returns."""
    run = Scenario([counting("a"), counting("b"), counting("c")], handlers("h", capacity=1))
    assert [a.task_id for a in run.in_flight] == ["a"]
    after = run.succeed("a#1", {"count": 0})
    assert types(after) == ["ResultValidated", "AssignmentDispatched"]
    assert [a.task_id for a in run.in_flight] == ["b"]


def test_invalid_output_is_retried_with_the_feedback_in_the_instructions() -> None:
    """An output that breaks the schema or a check is rejected; the retry carries why."""
    run = Scenario([counting("a", instructions="Count the lines.")], handlers("h"))

    decisions = run.succeed("a#1", {"count": -4})

    rejected, recovery, retry = decisions
    assert isinstance(rejected, ResultValidated) and rejected.outcome == "rejected"
    assert rejected.verdict.problems == ("count must not be negative: got -4",)
    assert isinstance(recovery, RecoveryChosen) and recovery.action == "retry"
    assert recovery.reason.facts["budget_left"] == 1
    assert isinstance(retry, AssignmentDispatched)
    assert retry.assignment.id == "a#2" and retry.assignment.handler == "h"
    assert retry.assignment.feedback == ("count must not be negative: got -4",)
    assert "count must not be negative" in retry.assignment.instructions
    assert retry.assignment.instructions.startswith("Count the lines.")

    schema_break = run.succeed("a#2", {"count": "many"})
    assert "output does not match Count: count" in schema_break[0].verdict.problems[0]


def test_a_failing_handler_is_retried_then_reassigned_then_escalated() -> None:
    """Attempts exhaust one handler, move to the other, then park the task for a person."""
    run = Scenario([counting("a", budget=Budget(attempts=2)), counting("other")],
                   handlers("h1", "h2"))
    assert run.assignment("a").handler == "h1"

    retry = run.fail("a#1", "boom", error_type="RuntimeError")
    assert [d.action for d in retry if isinstance(d, RecoveryChosen)] == ["retry"]
    reassign = run.fail("a#2", "boom again")
    [choice] = [d for d in reassign if isinstance(d, RecoveryChosen)]
    assert choice.action == "reassign" and choice.handler == "h2"
    assert choice.reason.facts["alternatives"] == ["h2"]
    assert run.assignment("a").handler == "h2" and run.assignment("a").attempt == 3

    run.fail("a#3", "no")
    escalated = run.fail("a#4", "still no")
    choice, raised = escalated
    assert isinstance(choice, RecoveryChosen) and choice.action == "escalate"
    assert choice.reason.facts["required"] is True
    assert choice.reason.facts["alternatives"] == []
    assert isinstance(raised, EscalationRaised) and raised.task_id == "a"
    assert "still no" in raised.question

    # The rest of the run goes on, then waits on the person without spinning.
    run.succeed(run.assignment("other").id, {"count": 1})
    assert run.state.status == "running" and run.state.waiting_on_people

    answer = run.answer(raised.escalation_id, "retry", note="the file moved; use /srv/data")
    assert types(answer) == ["RecoveryChosen", "AssignmentDispatched"]
    assert "the file moved" in answer[1].assignment.instructions
    done = run.succeed(answer[1].assignment.id, {"count": 7})
    assert isinstance(done[-1], RunCompleted)


def test_a_lost_worker_is_retried_once_without_spending_the_tasks_attempts() -> None:
    """The machine failed, not the task: the first loss is free, the facts say so."""
    run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"))

    [free] = [d for d in run.fail("a#1", "node gone", kind="worker_lost")
              if isinstance(d, RecoveryChosen)]
    assert (free.action, free.reason.rule) == ("retry", "recover.retry_worker_lost")
    assert free.reason.facts["kind"] == "worker_lost"
    assert free.reason.facts["workers_lost"] == 1

    # The retry still has the one attempt the task was given: an error spends it.
    [spent] = [d for d in run.fail("a#2", "boom") if isinstance(d, RecoveryChosen)]
    assert spent.action == "escalate"
    assert spent.reason.facts["workers_lost"] == 1
    assert spent.reason.facts["attempts_on_handler"] == 2


def test_a_second_lost_worker_counts_so_a_process_killing_task_cannot_loop() -> None:
    run = Scenario([counting("a", budget=Budget(attempts=2))], handlers("h"))
    run.fail("a#1", "gone", kind="worker_lost")
    [second] = [d for d in run.fail("a#2", "gone", kind="worker_lost")
                if isinstance(d, RecoveryChosen)]
    assert (second.action, second.reason.rule) == ("retry", "recover.retry")
    [third] = [d for d in run.fail("a#3", "gone", kind="worker_lost")
               if isinstance(d, RecoveryChosen)]
    assert third.action == "escalate" and third.reason.facts["workers_lost"] == 3


def test_a_policy_may_charge_a_lost_worker_like_any_failure() -> None:
    run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"),
                   DefaultPolicy(free_worker_losses=0))
    [choice] = [d for d in run.fail("a#1", "gone", kind="worker_lost")
                if isinstance(d, RecoveryChosen)]
    assert choice.action == "escalate"


def test_an_ordinary_failure_records_no_worker_losses() -> None:
    """Logs from before losses were a fact read the same: the key appears only when set."""
    run = Scenario([counting("a")], handlers("h"))
    [choice] = [d for d in run.fail("a#1", "boom") if isinstance(d, RecoveryChosen)]
    assert "workers_lost" not in choice.reason.facts


def test_an_optional_task_is_abandoned_and_so_are_the_tasks_that_need_it() -> None:
    """An optional task out of attempts and handlers is abandoned, with its dependents."""
    plan = [
        counting("must"),
        counting("nice", required=False, budget=Budget(attempts=1)),
        counting("after-nice", depends_on=("nice",), required=False),
    ]
    run = Scenario(plan, handlers("h"))

    decisions = run.fail("nice#1", "flaky")

    assert [(d.task_id, d.action, d.reason.rule) for d in decisions] == [
        ("nice", "abandon", "recover.abandon_optional"),
        ("after-nice", "abandon", "recover.dependency_abandoned"),
    ]
    final = run.succeed("must#1", {"count": 0})
    assert isinstance(final[-1], RunCompleted)
    assert final[-1].output == {"must": {"count": 0}}


def test_abandoning_a_required_task_fails_the_coverage_check() -> None:
    """A person abandoning a required task means the run fails, naming that task."""
    run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"))
    raised = run.fail("a#1", "nope")[-1]
    final = run.answer(raised.escalation_id, "abandon", note="not worth it")
    assert types(final) == ["RecoveryChosen", "ResultsChecked", "RunFailed"]
    assert final[-1].error == "required task 'a' was not accepted"


def test_dependencies_wait_and_inputs_are_exactly_what_the_task_names() -> None:
    """A task waits for its dependencies and sees only its literals and named outputs."""
    plan = [
        counting("secret"),
        counting("named"),
        counting("user", depends_on=("secret",), inputs={"k": 3, "up": from_task("named")}),
    ]
    run = Scenario(plan, handlers("h"))
    assert "user" not in {a.task_id for a in run.in_flight}

    run.succeed("named#1", {"count": 5})
    assert "user" not in {a.task_id for a in run.in_flight}  # still waits for `secret`
    dispatched = run.succeed("secret#1", {"count": 99})[-1]

    assert isinstance(dispatched, AssignmentDispatched)
    assert dispatched.assignment.inputs == {"k": 3, "up": {"count": 5}}
    assert dispatched.assignment.context_digest == digest(canonical_json(
        {"k": 3, "up": {"count": 5}}))
    assert dispatched.reason.facts["inputs"] == ["k", "up"]


def test_a_late_result_for_a_superseded_attempt_is_recorded_and_ignored() -> None:
    """After a timeout and a retry, the first attempt's result is ignored, visibly."""
    run = Scenario([counting("a", budget=Budget(attempts=3, timeout_s=5))], handlers("h"))
    retry = run.time_out("a#1")
    assert retry[0].reason.facts["kind"] == "timeout"
    late = run.succeed("a#1", {"count": 1})
    [ignored] = late
    assert isinstance(ignored, ResultValidated) and ignored.outcome == "ignored"
    assert ignored.reason.facts == {"assignment": "a#1", "current": "a#2",
                                    "task_status": "in_flight"}
    assert run.state.tasks["a"].status == "in_flight"


def test_a_restarted_coordinator_redispatches_in_flight_work_under_the_same_ids() -> None:
    """Restart re-dispatches each in-flight attempt as itself; a duplicate counts once."""
    run = Scenario([counting("a"), counting("b")], handlers("h"))
    redispatched = run.restart()
    assert [d.assignment.id for d in redispatched] == ["a#1", "b#1"]
    assert run.state.load["h"] == 2

    run.succeed("a#1", {"count": 1})
    duplicate = run.succeed("a#1", {"count": 1})
    assert [d.outcome for d in duplicate] == ["ignored"]
    assert run.state.accepted == 1


def test_cancel_abandons_in_flight_work_and_fails_the_run() -> None:
    """CancelRequested abandons each in-flight attempt, recorded, then RunFailed."""
    run = Scenario([counting("a"), counting("b")], handlers("h"))
    decisions = run.cancel("operator asked")
    assert types(decisions) == ["RecoveryChosen", "RecoveryChosen", "RunFailed"]
    assert decisions[-1].reason.facts["abandoned"] == ["a#1", "b#1"]
    assert run.succeed("a#1", {"count": 1}) == []  # a finished run decides nothing more


def test_a_person_can_supply_the_output_of_an_escalated_task() -> None:
    """`accept` with an output validates it and accepts it as the task's result."""
    run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"))
    raised = run.fail("a#1", "nope")[-1]
    wrong = run.answer(raised.escalation_id, "accept", output={"count": -1})
    assert [d.outcome for d in wrong] == ["rejected"]
    assert run.state.escalations  # still open: a person's bad output is not retried
    final = run.answer(raised.escalation_id, "accept", output={"count": 3})
    assert final[-1].output == {"a": {"count": 3}}


def test_decide_leaves_the_state_exactly_as_it_was() -> None:
    """decide() returns the decisions decide_in_place() makes, and changes nothing it was
    given."""
    run = Scenario([counting("a"), counting("b", depends_on=("a",))], handlers("h"))
    state = run.state
    before = (state.seq, state.digest, dict(state.load), dict(state.in_flight),
              {t: (r.status, r.attempts, r.blockers) for t, r in state.tasks.items()},
              {c: list(q) for c, q in state.ready.items()})
    stimulus = ResultReceived(run_id="run-1", seq=state.seq + 1,
                              result=Result(assignment_id="a#1", output={"count": 2}))

    decisions = decide(state, stimulus, run.policy)

    after = (state.seq, state.digest, dict(state.load), dict(state.in_flight),
             {t: (r.status, r.attempts, r.blockers) for t, r in state.tasks.items()},
             {c: list(q) for c, q in state.ready.items()})
    assert after == before
    assert decisions == run.succeed("a#1", {"count": 2})


def test_a_fold_of_the_log_reaches_the_live_state_and_digest() -> None:
    """reduce(evolve, log, INITIAL_STATE) gives the state the live turns built."""
    run = Scenario([counting("a"), counting("b", depends_on=("a",))], handlers("h"))
    run.succeed("a#1", {"count": 1})
    run.succeed("b#1", {"count": 2})
    folded = fold(run.log)
    assert folded.digest == run.state.digest and folded.status == "completed"
    assert folded.outputs() == run.state.outputs()
    assert INITIAL_STATE.seq == 0 and INITIAL_STATE.frozen  # untouched by the fold


@pytest.mark.parametrize("edit", ["gap", "repeat", "other_run", "rerouted", "reworded"])
def test_the_fold_refuses_a_log_with_a_gap_a_repeat_or_an_edit(edit: str) -> None:
    """A gap or repeat in seq, a foreign event, or an edited decision raises BadLogError."""
    run = Scenario([counting("a")], handlers("h"))
    run.succeed("a#1", {"count": 1})
    log = list(run.log)
    if edit == "gap":
        del log[2]
    elif edit == "repeat":
        log.insert(2, log[1])
    elif edit == "other_run":
        log[2] = log[2].model_copy(update={"run_id": "run-2"})
    elif edit == "rerouted":  # names a handler the run never had
        dispatched = log[2]
        forged = dispatched.assignment.model_copy(update={"handler": "mallory"})
        log[2] = dispatched.model_copy(update={"assignment": forged})
    else:  # plausible, but the next decision's state digest gives it away
        dispatched = log[2]
        forged = dispatched.assignment.model_copy(update={"instructions": "leak it"})
        log[2] = dispatched.model_copy(update={"assignment": forged})
    with pytest.raises(BadLogError, match=r"run 'run-1' at seq \d+"):
        state = RunState()
        for event in log:
            state = evolve(state, event)


def test_a_failure_for_an_unknown_attempt_is_ignored_not_applied() -> None:
    """A failure naming an attempt that is not in flight is recorded and ignored."""
    run = Scenario([counting("a")], handlers("h"))
    [ignored] = run.fail("a#9", "stray")
    assert ignored.outcome == "ignored" and ignored.reason.rule == "failure.not_current"
    assert run.state.tasks["a"].status == "in_flight"


def test_a_late_result_after_a_timeout_is_recorded_and_ignored() -> None:
    """A worker that answers just after its deadline: the result is recorded, ignored."""
    run = Scenario([counting("a")], handlers("h"))
    run.time_out("a#1")
    [ignored] = run.succeed("a#1", {"count": 1})
    assert ignored.outcome == "ignored" and ignored.reason.rule == "result.not_current"
    assert run.state.tasks["a"].current == "a#2"


def test_a_stuck_worker_is_replaced_by_a_recorded_decision() -> None:
    """WorkerStuck is answered by WorkerReplaced, whatever the attempt's fate: the
    timer that follows decides that, and nothing else about the run changes."""
    run = Scenario([counting("a")], handlers("h"))
    before = run.state.tasks["a"].status
    [replaced] = run.stimulate(WorkerStuck, assignment_id="a#1", handler="h",
                               note="replica 0 still running it at its deadline")
    assert isinstance(replaced, WorkerReplaced)
    assert (replaced.assignment_id, replaced.handler) == ("a#1", "h")
    assert replaced.reason.rule == "recover.replace_stuck_worker"
    assert run.state.tasks["a"].status == before and "a#1" in run.state.in_flight
    [recovery, retry] = run.time_out("a#1")
    assert recovery.type == "RecoveryChosen" and retry.type == "AssignmentDispatched"


def test_a_second_run_request_in_one_run_is_refused() -> None:
    """RunRequested opens a run at seq 1 and nowhere else: later, it is a BadLogError."""
    from baton.events.schema import RunRequested

    run = Scenario([counting("a")], handlers("h"))
    with pytest.raises(BadLogError, match="RunRequested may only open a run"):
        run.stimulate(RunRequested, tasks=(counting("z"),),
                      handlers=(HandlerInfo(name="h", capabilities=("count",)),))
    assert run.state.tasks.keys() == {"a"}


def test_a_handler_failing_again_and_again_is_quarantined_by_routing() -> None:
    """After 3 failures in a row, routing stops choosing a handler and says so; its
    own retries move to the healthy one; a success ends the quarantine."""
    plan = [counting(f"t{i}", budget=Budget(attempts=5)) for i in range(6)]
    run = Scenario(plan, handlers("broken", "fine", capacity=1))
    assert run.assignment("t0").handler == "broken"
    run.fail("t0#1", "boom")              # broken: 1 in a row; retried on broken
    run.fail("t0#2", "boom")              # 2 in a row
    decisions = run.fail("t0#3", "boom")  # 3 in a row: quarantined
    [moved] = [d for d in decisions if isinstance(d, RecoveryChosen)]
    assert moved.action == "reassign" and moved.handler == "fine"
    assert moved.reason.facts["handler_failures_in_a_row"] == 3

    freed = run.succeed(run.assignment("t1").id, {"count": 1})  # `fine` finishes t1
    [dispatch] = [d for d in freed if isinstance(d, AssignmentDispatched)]
    assert (dispatch.assignment.id, dispatch.reason.rule) == ("t0#4", "dispatch.reassign")
    assert "broken" not in {a.handler for a in run.in_flight}  # idle, but shunned

    after = run.succeed("t0#4", {"count": 2})
    [fresh] = [d for d in after if isinstance(d, AssignmentDispatched)]
    assert fresh.assignment.handler == "fine"
    assert fresh.reason.rule == "route.least_loaded_avoiding_quarantined"
    assert fresh.reason.facts["quarantined"] == ["broken"]
    assert {"handler": "broken", "load": 0, "capacity": 1, "failures_in_a_row": 3,
            "free": True} in fresh.reason.candidates


def test_when_every_handler_is_quarantined_work_still_goes_to_the_least_bad() -> None:
    """Quarantine never strands work: with all handlers failing, the least-failing is
    chosen, under a rule that says so."""
    plan = [counting("a", budget=Budget(attempts=9)), counting("b")]
    run = Scenario(plan, handlers("only", capacity=1))
    for attempt in range(1, 4):
        run.fail(f"a#{attempt}", "boom")
    decisions = run.succeed("a#4", {"count": 1})
    [dispatch] = [d for d in decisions if isinstance(d, AssignmentDispatched)]
    assert dispatch.assignment.task_id == "b"
    assert dispatch.reason.rule == "route.least_loaded"  # a success ended the quarantine


def test_an_event_type_this_version_does_not_know_is_named_as_such() -> None:
    """Folding an event of a type the schema does not list is a BadLogError that says so
    (not a missing key reported as an unknown task), and the decider refuses a stimulus
    of such a type outright."""

    class Rumour(ResultsChecked):
        pass

    run = Scenario([counting("a")], handlers("h"))
    state = fold(run.log)
    odd = Rumour(run_id="run-1", seq=state.seq + 1, cause=1, state_digest=state.digest,
                 reason=run.log[-1].reason, verdict=Verdict.of([]))
    with pytest.raises(BadLogError, match="Rumour is not an event type of this version"):
        state.apply(odd)

    class Whisper(CancelRequested):
        pass

    with pytest.raises(TypeError, match="decide\\(\\) takes a stimulus"):
        decide(state, Whisper(run_id="run-1", seq=state.seq + 1), DefaultPolicy())


def test_decide_with_other_schemas_decides_by_them_and_leaves_the_state_alone() -> None:
    """Tasks read back from a log carry no schema class; decide() judges by the classes
    it is handed, each time, and binds none of them to the caller's state."""

    class Loose(BaseModel):
        count: int

    class Strict(BaseModel):
        count: int
        note: str

    topic = "somewhere:Out"
    run = Scenario([Task(id="a", capability="c", output_schema=topic)],
                   [HandlerInfo(name="h", capabilities=("c",))], schemas={topic: Loose})
    state = fold(Codec().decode(encode(e), run_id="run-1", seq=e.seq) for e in run.log)
    result = ResultReceived(run_id="run-1", seq=state.seq + 1,
                            result=Result(assignment_id="a#1", output={"count": 1}))
    assert decide(state, result, DefaultPolicy(), {topic: Loose})[0].outcome == "accepted"
    assert state.tasks["a"].task.schema_model() is None
    [strict, *_] = decide(state, result, DefaultPolicy(), {topic: Strict})
    assert strict.outcome == "rejected" and "note" in strict.verdict.problems[0]
