"""Property: for any plan and any stimuli, the log re-decides to itself, exactly."""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton import Budget, DefaultPolicy, HandlerInfo, Task, Verdict, from_task
from baton.events.decider import decide
from baton.events.policy import PlanView
from baton.events.record import TaskRecord
from baton.events.schema import Decision, Stimulus
from baton.events.state import RunState
from baton.projections.verification import verify_log
from baton.testing import Scenario
from tests.fixtures.specs import NOT_NEGATIVE, Count

CAPABILITIES = ("p", "q")


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[Task], list[HandlerInfo]]:
    tasks: list[Task] = []
    for i in range(draw(st.integers(1, 7))):
        earlier = [t.id for t in tasks]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        by_input = draw(st.booleans())
        tasks.append(Task(
            id=f"t{i}",
            capability=draw(st.sampled_from(CAPABILITIES)),
            inputs={f"in_{d}": from_task(d) for d in deps} if by_input else {"i": i},
            depends_on=() if by_input else tuple(deps),
            required=draw(st.booleans()),
            output_schema=Count if draw(st.booleans()) else None,
            done_when=(NOT_NEGATIVE,),
            budget=Budget(attempts=draw(st.integers(1, 2))),
        ))
    handlers = [
        HandlerInfo(
            name=f"h{j}",
            capabilities=tuple(draw(st.lists(st.sampled_from(CAPABILITIES), min_size=1,
                                             max_size=2, unique=True))),
            capacity=draw(st.one_of(st.none(), st.integers(1, 2))),
        )
        for j in range(draw(st.integers(1, 3)))
    ]
    return tasks, handlers


def drive(run: Scenario, data: st.DataObject, steps: int) -> None:
    """Feed the run stimuli chosen by hypothesis until it ends or `steps` run out."""
    issued: list[str] = []
    for _ in range(steps):
        state = run.state
        if state.status != "running":
            return
        issued.extend(a.id for a in run.in_flight if a.id not in issued)
        choices = []
        if run.in_flight:
            choices += ["ok", "bad", "fail", "timeout"]
        if issued:
            choices.append("stale")
        if state.escalations:
            choices.append("answer")
        choices += ["restart", "cancel"] if data.draw(st.integers(0, 9)) == 0 else []
        if not choices:
            return
        kind = data.draw(st.sampled_from(choices))
        if kind in ("ok", "bad", "fail", "timeout"):
            aid = data.draw(st.sampled_from([a.id for a in run.in_flight]))
            if kind == "ok":
                run.succeed(aid, {"count": data.draw(st.integers(0, 3))})
            elif kind == "bad":
                run.succeed(aid, data.draw(st.sampled_from([{"count": -1}, {"n": 1}, "x"])))
            elif kind == "fail":
                run.fail(aid, "boom", kind=data.draw(st.sampled_from(["error", "worker_lost"])))
            else:
                run.time_out(aid)
        elif kind == "stale":
            run.succeed(data.draw(st.sampled_from(issued)), {"count": 1})
        elif kind == "answer":
            escalation = data.draw(st.sampled_from(sorted(state.escalations)))
            action = data.draw(st.sampled_from(["retry", "reassign", "abandon", "accept"]))
            handler = data.draw(st.sampled_from(sorted(state.handlers)))
            output = {"count": data.draw(st.integers(-1, 2))}
            run.answer(escalation, action, handler=handler, output=output)
        elif kind == "restart":
            run.restart()
        else:
            run.cancel("enough")


class Picky(DefaultPolicy):
    """Sends back every accepted output that counts 3 (so runs also reopen tasks and the
    tasks that used them)."""

    def check(self, plan: PlanView) -> Verdict:
        return Verdict.send_back({tid: "not 3" for tid, out in plan.outputs.items()
                                  if isinstance(out, dict) and out.get("count") == 3})


def fingerprint(state: RunState) -> Any:
    """Everything the state holds, its queues and task records opened up."""

    def opened(value: Any) -> Any:
        if isinstance(value, TaskRecord):
            return {name: getattr(value, name) for name in TaskRecord.__slots__}
        if isinstance(value, deque):
            return list(value)
        if isinstance(value, dict):
            return {key: opened(item) for key, item in value.items()}
        return value

    return {name: opened(value) for name, value in vars(state).items() if name != "frozen"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), data=st.data())
def test_refolding_and_redeciding_reproduces_every_decision(plan: Any, data: Any) -> None:
    """Fold the recorded log; decide() on each stimulus gives exactly the recorded
    decisions (digests included) and leaves the folded state untouched."""
    tasks, handlers = plan
    policy = Picky() if data.draw(st.booleans()) else DefaultPolicy()
    run = Scenario(tasks, handlers, policy)
    drive(run, data, steps=60)

    state = RunState()
    log = run.log
    i = 0
    while i < len(log):
        stimulus = log[i]
        assert isinstance(stimulus, Stimulus)
        j = i + 1
        while j < len(log) and isinstance(log[j], Decision):
            j += 1
        before = fingerprint(state)
        assert decide(state, stimulus, policy) == log[i + 1 : j]
        assert fingerprint(state) == before  # decide changed nothing
        for event in log[i:j]:
            state.apply(event)
        i = j

    assert fingerprint(state) == fingerprint(run.state)  # folded and live: one state
    assert verify_log(log, policy)[1] is None
