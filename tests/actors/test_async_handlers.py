"""Handlers' limits on a real local Ray: an `async def` runs on an async worker, up to its
`concurrency` assignments at once on each replica, seen in the recorded start and end
times; timeouts and stuck-worker replacement keep their meaning; a rate limit holds
sends back; a duration budget stops a run through its recorded timer."""

from __future__ import annotations

import pytest
import ray

import baton
from baton import open_store
from baton.events.model import Execution
from baton.events.schema import (
    FailureReported,
    ResultReceived,
    TimerFired,
    WorkerReplaced,
)
from baton.events.store import arrow
from baton.projections.metrics import run_stats
from baton.replay import verify
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def _executions(store_url: str, run_id: str) -> list[Execution]:
    with open_store(store_url) as store:
        ran = [e.result.execution for e in store.read(run_id) if isinstance(e, ResultReceived)]
    assert all(e is not None for e in ran)
    return ran  # type: ignore[return-value]


def _most_at_once(ran: list[Execution]) -> int:
    """The most assignments running at one moment, by their recorded times."""
    edges = sorted([(e.started_at, 1) for e in ran] + [(e.ended_at, -1) for e in ran])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_an_async_handler_runs_its_concurrency_at_once_and_no_more(store_url: str) -> None:
    result = baton.run(ray_specs.waiting_spec(ray_specs.waits), store=store_url, run_id="w")
    assert result.ok and result.progress.accepted == 8
    assert {o["task"] for o in result.output.values()} == {f"w{i}" for i in range(8)}
    ran = _executions(store_url, "w")
    assert len({(e.pid, e.replica) for e in ran}) == 1  # one replica ran them all
    assert 2 <= _most_at_once(ran) <= ray_specs.waits.concurrency
    assert verify(open_store(store_url), "w").reproduced


def test_an_async_class_handler_runs_one_at_a_time_by_default(store_url: str) -> None:
    result = baton.run(ray_specs.waiting_spec(ray_specs.WaitsAlone, tasks=4, seconds=0.1),
                       store=store_url, run_id="alone")
    assert result.ok and result.progress.accepted == 4
    assert _most_at_once(_executions(store_url, "alone")) == 1


def test_a_hung_async_assignment_times_out_and_its_replica_is_replaced(
        store_url: str) -> None:
    """One of eight hangs on its first attempt: at its deadline the replica is replaced
    (a recorded decision), the attempt is retried, and the run completes; what else the
    replica was running is sent again, charged to no task."""
    spec = ray_specs.waiting_spec(ray_specs.waits, seconds=0.1, hang="w3")
    result = baton.run(spec, store=store_url, run_id="hung")
    assert result.ok, result.error
    assert all(result.output[f"w{i}"]["attempt"] == 1 for i in range(8) if i != 3)
    with open_store(store_url) as store:
        log = store.read("hung")
        [timer] = [e for e in log if isinstance(e, TimerFired)]
        assert timer.assignment_id == "w3#1"
        assert [e.assignment_id for e in log if isinstance(e, WorkerReplaced)] == ["w3#1"]
        # A retry sent as the old process was dying is lost with it, and sent again.
        assert {e.failure.kind for e in log if isinstance(e, FailureReported)} <= {
            "worker_lost"}
        assert result.output["w3"]["attempt"] >= 2
        assert verify(store, "hung").reproduced


def test_a_duration_budget_fires_through_a_recorded_timer(store_url: str) -> None:
    """Steps of half a second, one at a time, under a budget of one second: the limit
    passing is recorded (BudgetTimerFired), the step in flight finishes, nothing more
    is sent, and a person's raise lets a resume finish the run."""
    spec = ray_specs.stepping_spec()
    waiting = baton.run(spec, store=store_url, run_id="timed")
    assert waiting.status == "waiting" and 1 <= waiting.progress.accepted < 4
    [asked] = baton.inbox("timed", store=store_url)
    assert "ran for its 1s" in asked.question
    baton.answer(asked.escalation_id, "raise_budget", raise_by=60, store=store_url)
    assert baton.resume("timed", store=store_url, spec=spec).ok
    with open_store(store_url) as store:
        kinds = [e.type for e in store.read("timed")]
        assert verify(store, "timed").reproduced
    fired = kinds.index("BudgetTimerFired")
    assert kinds.count("BudgetTimerFired") == 1 and kinds[fired + 1] in (
        "EscalationRaised", "ResultReceived")


def test_a_restarted_coordinator_remembers_the_sends_of_the_one_before(
        store_url: str) -> None:
    """Three in six seconds, the coordinator killed once the first answers are in: the
    one Ray restarts counts the starts its workers reported, so by the recorded start
    times no six seconds hold more than three, across the restart."""
    killed: list[int] = []

    def kill_early(progress: baton.actors.progress.RunProgress) -> None:
        if not killed and progress.accepted >= 2:
            ray.kill(ray.get_actor("baton:slow-quota", namespace="baton"), no_restart=False)
            killed.append(progress.accepted)

    result = baton.run(ray_specs.slow_quota_spec(), store=store_url, run_id="slow-quota",
                       on_progress=kill_early, poll_s=0.05)
    assert killed and result.ok and result.progress.accepted == 7
    with open_store(store_url) as store:
        assert [e.type for e in store.read("slow-quota")].count("CoordinatorRestarted") == 1
    started = sorted(e.started_at for e in _executions(store_url, "slow-quota"))
    assert all(later - earlier >= 5.9
               for earlier, later in zip(started, started[3:], strict=False)), started


def test_a_rate_limit_is_never_passed_and_its_wait_is_queue_wait(store_url: str) -> None:
    """Four a second across two replicas: by the recorded start times, no second holds
    more than four starts; what was held back shows in stats as queue wait."""
    result = baton.run(ray_specs.quota_spec(), store=store_url, run_id="quota")
    assert result.ok and result.progress.accepted == 12
    started = sorted(e.started_at for e in _executions(store_url, "quota"))
    assert all(later - earlier >= 0.9 for earlier, later in zip(started, started[4:], strict=False))
    with open_store(store_url) as store:
        stats = run_stats(arrow.columns(store, "quota"))
    [handler] = stats.handlers
    assert handler.queue_wait_s.p95 is not None and handler.queue_wait_s.p95 > 1.0
