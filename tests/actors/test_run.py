"""Runs on a real local Ray with a SQLite store: the coordinator, workers and launcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

import baton
from baton import Spec, open_store
from baton.actors import worker
from baton.events.policy import DefaultPolicy
from baton.events.schema import (
    AssignmentDispatched,
    FailureReported,
    RecoveryChosen,
    ResultReceived,
    ResultValidated,
    RunCompleted,
)
from baton.events.store import arrow
from baton.events.store.sealing import KEY_ENV, new_key
from baton.projections.verification import verify_log
from baton.replay import verify
from tests.fixtures import ray_specs
from tests.fixtures.specs import Count

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_a_run_completes_and_its_log_is_legal_and_replays(store_url: str) -> None:
    """Every task accepted; the log holds the decisions in a legal order and replays."""
    result = baton.run(ray_specs.echo_spec(), store=store_url, run_id="e2e")
    assert result.ok and result.progress.accepted == 3
    assert set(result.output) == {"a", "secret", "b"}

    with open_store(store_url) as store:
        log = store.read("e2e")
    kinds = [e.type for e in log]
    assert kinds[:2] == ["RunRequested", "PlanChanged"] and kinds[-1] == "RunCompleted"
    assert kinds[-2] == "ResultsChecked"
    dispatched_at = {e.assignment.id: e.seq for e in log if isinstance(e, AssignmentDispatched)}
    assert all(e.reason.rule == "route.least_loaded" and e.reason.candidates
               for e in log if isinstance(e, AssignmentDispatched))
    for event in log:
        if isinstance(event, ResultReceived):  # a result follows its dispatch...
            assert dispatched_at[event.result.assignment_id] < event.seq
        if isinstance(event, ResultValidated):  # ...and is judged right after it arrives
            assert log[event.cause - 1].type == "ResultReceived"
    assert all(e.recorded_at for e in log if e.type in ("RunRequested", "ResultReceived"))
    assert verify_log(log, DefaultPolicy())[1] is None


def test_results_are_recorded_in_the_order_they_finish(store_url: str) -> None:
    """A slow first task's result is recorded after a quick second task's."""
    spec = baton.Spec(goal="race", handlers=[ray_specs.echo], tasks=[
        baton.Task(id="slow", capability="echo", inputs={"sleep": 1.5}),
        baton.Task(id="quick", capability="echo", inputs={"sleep": 0}),
    ])
    baton.run(spec, store=store_url, run_id="race")
    with open_store(store_url) as store:
        received = [e.result.assignment_id for e in store.read("race")
                    if isinstance(e, ResultReceived)]
    assert received == ["quick#1", "slow#1"]


def test_an_assignment_sees_only_its_declared_inputs(store_url: str) -> None:
    """`b` waits for `secret` but sees only its literal and `a`'s output, not the secret."""
    result = baton.run(ray_specs.echo_spec(), store=store_url)
    seen = result.output["b"]["inputs"]
    assert seen == {"up": result.output["a"], "k": "v"}
    assert "hunter2" not in str(seen)


def test_handlers_never_run_in_the_coordinator_process(store_url: str) -> None:
    """Each handler ran in a worker process: not the coordinator's, not the driver's."""
    pids: set[int] = set()
    result = baton.run(ray_specs.echo_spec(), store=store_url,
                       on_progress=lambda p: pids.add(p.coordinator_pid))
    coordinator = result.progress.coordinator_pid
    handler_pids = {out["pid"] for out in result.output.values()}
    assert coordinator and coordinator not in handler_pids and os.getpid() not in handler_pids
    assert pids <= {coordinator}


def test_each_result_records_where_and_when_its_handler_ran(store_url: str) -> None:
    """Results and handler failures carry the node, worker pid, replica and the
    handler's own start and end: inside the span from dispatch to the result's record."""
    baton.run(ray_specs.echo_spec(), store=store_url, run_id="where")
    baton.run(ray_specs.misbehaving_spec(), store=store_url, run_id="where-fail",
              max_output_bytes=1_000)
    node = ray.get_runtime_context().get_node_id()
    with open_store(store_url) as store:
        log = store.read("where")
        failures = [e.failure for e in store.read("where-fail")
                    if isinstance(e, FailureReported)]
        exported = arrow.table(store, ["where"]).to_pylist()
        # The coordinator kept the run's query columns as it went: export read those.
        kept = store.column_chunks("where")
        assert sum(rows for _, rows, _ in kept) == len(exported) == store.last_seq("where")
    sent_at = {e.assignment.id: log[e.cause - 1].recorded_at for e in log
               if isinstance(e, AssignmentDispatched)}  # a decision's time is its cause's
    received = [e for e in log if isinstance(e, ResultReceived)]
    assert len(received) == 3
    for event in received:
        ran = event.result.execution
        assert ran is not None and ran.node == node and ran.replica in (0, 1)
        assert ran.pid == event.result.output["pid"]
        assert sent_at[event.result.assignment_id] <= ran.started_at <= ran.ended_at
        assert ran.ended_at <= event.recorded_at
    rows = [row for row in exported if row["type"] == "ResultReceived"]
    assert [(r["node"], r["pid"], r["replica"], r["started_at"], r["ended_at"]) for r in rows] == [
        (e.node, e.pid, e.replica, e.started_at, e.ended_at)
        for e in (event.result.execution for event in received) if e is not None]
    assert {f.kind for f in failures} == {"error", "unserializable", "too_large"}
    assert all(f.execution is not None and f.execution.node == node for f in failures)


def test_fast_work_goes_out_in_batches_and_slow_work_one_assignment_a_call(
    store_url: str
) -> None:
    """A handler that answers at once gets many assignments a Ray call, so Ray's cost
    per call is shared among them; one that takes 50 ms gets one a call, so no result
    waits on another's work. Either way every task is accepted once, and the log replays."""
    fast = baton.run(Spec(goal="fast", tasks=ray_specs.slow_plan(400, 0),
                          handlers=[ray_specs.echo]), store=store_url, run_id="fast")
    assert fast.ok and fast.progress.accepted == fast.progress.dispatched == 400
    assert fast.progress.calls <= 400 / 4, fast.progress
    with open_store(store_url) as store:
        ran = {e.result.execution.replica for e in store.read("fast")
               if isinstance(e, ResultReceived) and e.result.execution is not None}
    assert ran == {0, 1}  # the batches were shared between both replicas
    slow = baton.run(Spec(goal="slow", tasks=ray_specs.slow_plan(12, 0.05),
                          handlers=[ray_specs.echo]), store=store_url, run_id="slow")
    assert slow.ok and slow.progress.calls == slow.progress.dispatched == 12
    with open_store(store_url) as store:
        for run_id in ("fast", "slow"):
            assert verify_log(store.read(run_id), DefaultPolicy())[1] is None


def test_invalid_output_is_retried_with_feedback(store_url: str) -> None:
    """An impossible output is rejected; the retry carries why, and then succeeds."""
    result = baton.run(ray_specs.feedback_spec(), store=store_url, run_id="feedback")
    assert result.ok and Count.model_validate(result.output["c"]).count == 3
    with open_store(store_url) as store:
        log = store.read("feedback")
    [rejected] = [e for e in log if isinstance(e, ResultValidated) and e.outcome == "rejected"]
    [retry] = [e for e in log if isinstance(e, RecoveryChosen)]
    assert retry.action == "retry" and "count must not be negative" in retry.feedback
    second = [e.assignment for e in log if isinstance(e, AssignmentDispatched)][-1]
    assert second.id == "c#2" and second.feedback == rejected.verdict.problems


def test_handler_errors_and_unusable_outputs_become_failures(store_url: str) -> None:
    """A raise, a non-JSON output and an oversized one are recorded Failures; the run
    goes on and completes (those tasks are optional, so they are abandoned)."""
    result = baton.run(ray_specs.misbehaving_spec(), store=store_url, run_id="misbehave",
                       max_output_bytes=1_000)
    assert result.ok and set(result.output) == {"fine"}
    with open_store(store_url) as store:
        failures = {e.failure.assignment_id: e.failure for e in store.read("misbehave")
                    if isinstance(e, FailureReported)}
    assert failures["raise#1"].kind == "error"
    assert failures["raise#1"].error_type == "KeyError"
    assert "the key that was not there" in failures["raise#1"].traceback
    assert failures["object#1"].kind == "unserializable"
    assert failures["large#1"].kind == "too_large" and "limit is 1,000" in (
        failures["large#1"].message)


def test_an_unanswered_escalation_leaves_the_run_waiting_not_hanging(store_url: str) -> None:
    """When only a person can move a run on, run() returns with status `waiting`."""
    result = baton.run(ray_specs.escalating_spec(), store=store_url, run_id="waits")
    assert result.status == "waiting" and not result.ok
    assert result.progress.escalations == 1 and result.progress.accepted == 1
    with open_store(store_url) as store:
        assert not isinstance(store.last_event("waits"), RunCompleted)


def test_a_spec_the_cluster_cannot_host_is_refused_before_it_starts(store_url: str) -> None:
    """Replicas asking for more CPUs than the cluster has: a clear error, nothing run."""
    greedy = baton.handler(capabilities=["echo"], replicas=3, num_cpus=1, name="greedy")(
        ray_specs.echo.target)
    spec = baton.Spec(goal="too big", tasks=[baton.Task(id="t", capability="echo")],
                      handlers=[greedy])
    with pytest.raises(baton.ClusterUnavailableError, match=r"ask for 3 CPUs \(greedy: 3 x 1\)"):
        baton.run(spec, store=store_url, run_id="too-big")
    with open_store(store_url) as store:
        assert store.runs() == []


@pytest.mark.unverifiable("sealed")  # verified here, with the key
def test_a_run_with_a_key_is_sealed_by_its_coordinator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator, another process, seals with the launcher's key: the store's files
    hold no output, and with the key the run reads and verifies as any other."""
    key = new_key()
    monkeypatch.setenv(KEY_ENV, key)
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    secret = "payroll-2026-q4-9931"
    spec = baton.Spec(goal="sealed", handlers=[ray_specs.echo],
                      tasks=[baton.Task(id="s", capability="echo", inputs={"note": secret})])
    result = baton.run(spec, store=url, run_id="sealed")
    assert result.ok and result.output["s"]["inputs"] == {"note": secret}
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert secret.encode() not in raw
    with open_store(url) as store:
        assert verify(store, "sealed", None).reproduced


def test_assignments_a_full_return_left_unrun_are_sent_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a return budget of two outputs, batches come back short: the rest of each is
    sent again, every task is accepted once, and nothing is recorded as failed."""
    monkeypatch.setattr(worker, "RETURN_BUDGET_BYTES", 150_000)
    plan = [baton.Task(id=f"big{i}", capability="echo", inputs={"pad": "x" * 100_000})
            for i in range(24)]
    spec = Spec(goal="large outputs", tasks=plan, handlers=[ray_specs.echo])
    result = baton.run(spec, store=store_url, run_id="full")
    assert result.ok, result.error
    with open_store(store_url) as store:
        log = store.read("full")
    accepted = [e.task_id for e in log if isinstance(e, ResultValidated)]
    assert sorted(accepted) == sorted(t.id for t in plan)
    assert not [e for e in log if isinstance(e, FailureReported)]
    assert result.progress.calls >= 12  # no call brought back more than two
