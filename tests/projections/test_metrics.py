"""baton stats' figures: per handler and per run, from a run's exported table."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from baton import HandlerInfo, Task, open_store
from baton.events.errors import BadInputError
from baton.events.model import Budget, Check, Execution, Usage
from baton.events.schema import CoordinatorRestarted, EscalationRaised, RunForked
from baton.events.store import arrow
from baton.projections.metrics import HandlerStats, Quantiles, RunStats, Spend, run_stats
from baton.testing import Scenario


def counting(task_id: str, attempts: int = 2) -> Task:
    return Task(id=task_id, capability="count", budget=Budget(attempts=attempts, timeout_s=30),
                done_when=(Check(field="count", op=">=", value=0),))


def ran(started_at: float) -> Execution:
    return Execution(node="n1", pid=7, replica=0, started_at=started_at,
                     ended_at=started_at + 0.1)


HANDLERS = [HandlerInfo(name="h", capabilities=("count",)),
            HandlerInfo(name="k", capabilities=("count",))]


def stats_of(store_url: str, run_id: str) -> RunStats:
    """The run's statistics as `baton stats` computes them: read back from the store."""
    with open_store(store_url) as store:
        return run_stats(arrow.table(store, [run_id]))


@pytest.fixture
def eventful(store_url: str) -> RunStats:
    """Four tasks on h and k from t=100: an acceptance, a rejection and its retry, a
    failure and its retry, a timeout reported by the worker, a deadline passing (the
    task reassigned to h) and the late answer it had. Latencies are 2, 4, 6, 8 s on h
    and 3, 5, 7, 34 s on k; h's worker reported starts 0.5, 1, 2, 4 s after dispatch."""
    with open_store(store_url) as store:
        run = Scenario([counting("a"), counting("b"), counting("c"), counting("d")],
                       HANDLERS, run_id="eventful", store=store, at=100.0)
        assert [(a.id, a.handler) for a in run.in_flight] == [
            ("a#1", "h"), ("b#1", "k"), ("c#1", "h"), ("d#1", "k")]
        run.succeed("a#1", {"count": 1}, at=102.0, execution=ran(100.5))
        run.succeed("b#1", {"count": -1}, at=103.0)  # rejected: b#2 on k at 103
        run.fail("c#1", "boom", at=104.0, execution=ran(101.0))  # c#2 on h at 104
        run.fail("d#1", "too slow", kind="timeout", at=105.0)  # d#2 on k at 105
        run.succeed("c#2", {"count": 3}, at=110.0, execution=ran(106.0))
        run.succeed("d#2", {"count": 4}, at=112.0)
        run.time_out("b#2", at=133.0)  # b#3 on h at 133
        run.succeed("b#2", {"count": 2}, at=137.0)  # too late: ignored
        run.succeed("b#3", {"count": 2}, at=141.0, execution=ran(137.0))
        assert run.state.status == "completed"
    return stats_of(store_url, "eventful")


def test_each_handler_counts_its_attempts_by_how_they_ended(eventful: RunStats) -> None:
    """A rejection, a failure, a timeout (the worker's or the deadline's) and a late
    answer are each counted once, for the handler of the attempt they end."""
    h, k = eventful.handlers
    assert (h.handler, h.assignments, h.accepted, h.rejected, h.failed, h.timed_out,
            h.ignored) == ("h", 4, 3, 0, 1, 0, 0)
    assert (k.handler, k.assignments, k.accepted, k.rejected, k.failed, k.timed_out,
            k.ignored) == ("k", 4, 1, 1, 0, 2, 1)


def test_latency_and_queue_wait_are_exact_percentiles_per_handler(eventful: RunStats) -> None:
    """Dispatch to the first answer, and dispatch to the worker's start where it said,
    interpolated linearly between the recorded values (as numpy does)."""
    h, k = eventful.handlers
    assert h.latency_s == Quantiles(count=4, p50=5.0, p95=pytest.approx(7.7),
                                    p99=pytest.approx(7.94))
    assert h.queue_wait_s == Quantiles(count=4, p50=1.5, p95=pytest.approx(3.7),
                                       p99=pytest.approx(3.94))
    # b#2 is timed to its late answer: 34 s after it was sent.
    assert k.latency_s == Quantiles(count=4, p50=6.0, p95=pytest.approx(29.95),
                                    p99=pytest.approx(33.19))
    assert k.queue_wait_s == Quantiles(count=0, p50=None, p95=None, p99=None)


def test_the_run_counts_decisions_by_rule_and_rates_over_its_makespan(
        eventful: RunStats) -> None:
    """Makespan is first to last recorded time; every decision counts for its rule."""
    assert (eventful.run_id, eventful.events, eventful.makespan_s) == ("eventful", 31, 41.0)
    assert (eventful.assignments, eventful.accepted) == (8, 4)
    assert eventful.assignments_per_s == pytest.approx(8 / 41)
    assert eventful.accepted_per_s == pytest.approx(4 / 41)
    assert dict(eventful.decisions_by_rule) == {
        "plan.initial": 1, "route.least_loaded": 4, "validate.accepted": 4,
        "validate.rejected": 1, "recover.retry": 3, "dispatch.retry": 3,
        "recover.reassign": 1, "dispatch.reassign": 1, "result.not_current": 1,
        "check.all_settled": 1, "run.completed": 1}
    assert [rule for rule, _ in eventful.decisions_by_rule] == sorted(
        dict(eventful.decisions_by_rule))


def test_as_dict_is_plain_json_for_machines(eventful: RunStats) -> None:
    """`--json` output: nested plain values, rules as an object, JSON without NaN."""
    shown = eventful.as_dict()
    assert json.loads(json.dumps(shown, allow_nan=False)) == shown
    assert shown["decisions_by_rule"]["validate.rejected"] == 1
    k = shown["handlers"][1]
    assert k["handler"] == "k" and k["timed_out"] == 2
    assert k["queue_wait_s"] == {"count": 0, "p50": None, "p95": None, "p99": None}
    assert k["latency_s"]["p50"] == 6.0


@pytest.mark.parametrize(("at", "makespan"), [(100.0, 0.0), (None, None)])
def test_a_run_still_waiting_for_answers_has_no_latencies(
        store_url: str, at: float | None, makespan: float | None) -> None:
    """While nothing has come back, counts are zero and every time is None, never NaN;
    so are the rates when no time has passed (or none was recorded)."""
    with open_store(store_url) as store:
        Scenario([counting("a"), counting("b")], HANDLERS, run_id="running", store=store,
                 at=at)
    stats = stats_of(store_url, "running")
    assert (stats.events, stats.makespan_s, stats.assignments, stats.accepted) == (
        4, makespan, 2, 0)
    assert stats.assignments_per_s is None and stats.accepted_per_s is None
    nothing = Quantiles(count=0, p50=None, p95=None, p99=None)
    unspent = Spend(answers=0, requests=0, input_tokens=0, output_tokens=0, cost_usd=0.0,
                    unpriced=0)
    assert stats.handlers == tuple(
        HandlerStats(handler=name, assignments=1, accepted=0, rejected=0, failed=0,
                     timed_out=0, ignored=0, latency_s=nothing, queue_wait_s=nothing,
                     spend=unspent)
        for name in ("h", "k"))
    assert stats.spend == unspent
    json.dumps(stats.as_dict(), allow_nan=False)


def test_an_attempt_sent_again_after_a_restart_is_one_timed_from_the_resend(
        store_url: str) -> None:
    """A restarted coordinator re-dispatches the same attempt: it is still one
    assignment, and its latency runs from the re-dispatch its answer came to."""
    with open_store(store_url) as store:
        run = Scenario([counting("a")], HANDLERS, run_id="restarted", store=store, at=0.0)
        run.stimulate(CoordinatorRestarted, recorded_at=10.0)
        run.succeed("a#1", {"count": 1}, at=12.5)
    stats = stats_of(store_url, "restarted")
    [h] = stats.handlers
    assert (h.assignments, h.accepted, h.latency_s.p50) == (1, 1, 2.5)
    assert dict(stats.decisions_by_rule)["restart.redispatch_same_attempt"] == 1


def test_a_persons_acceptance_counts_for_the_run_but_no_handler(store_url: str) -> None:
    """An answer a person accepts (after escalation) was no handler's work."""
    with open_store(store_url) as store:
        run = Scenario([counting("a", attempts=1)], HANDLERS[:1], run_id="escalated",
                       store=store, at=0.0)
        [raised] = [d for d in run.fail("a#1", "boom", at=1.0)
                    if isinstance(d, EscalationRaised)]
        run.answer(raised.escalation_id, "accept", output={"count": 5})
        assert run.state.status == "completed"
    stats = stats_of(store_url, "escalated")
    [h] = stats.handlers
    assert (h.assignments, h.accepted, h.failed) == (1, 0, 1)
    assert stats.accepted == 1


def test_a_table_that_is_not_one_runs_events_is_refused(store_url: str) -> None:
    """No rows, two runs' rows, or a table without the export's columns: BadSpecError,
    saying what to pass instead."""
    with open_store(store_url) as store:
        for run_id in ("one", "two"):
            Scenario([counting("a")], HANDLERS, run_id=run_id, store=store)
        both = arrow.table(store, ["one", "two"])
    with pytest.raises(BadInputError, match="holds no events"):
        run_stats(both.slice(0, 0))
    with pytest.raises(BadInputError, match="holds runs 'one', 'two': statistics are of one run"):
        run_stats(both)
    with pytest.raises(BadInputError, match="not a Baton export: no rule column"):
        run_stats(both.drop_columns(["rule"]))
    one = run_stats(both.filter(pc.equal(both.column("run_id"), "one")))
    assert (one.run_id, one.events) == ("one", 3)


def test_a_forks_makespan_and_rates_run_from_its_fork(store_url: str) -> None:
    """A fork's copied prefix keeps its parent's times; its makespan and rates run from
    its RunForked (an hour later here), not from its parent's start."""
    with open_store(store_url) as store:
        run = Scenario([counting("a"), counting("b")], HANDLERS, run_id="fork", store=store,
                       at=100.0)
        run.succeed("a#1", {"count": 1}, at=102.0)
        run.stimulate(RunForked, parent_run_id="parent", parent_seq=4,
                      parent_digest="0" * 32, policy="baton.events.policy:DefaultPolicy",
                      recorded_at=3700.0)
        # The coordinator taking the fork up sends what was in flight again.
        run.stimulate(CoordinatorRestarted, note="took the fork up", recorded_at=3701.0)
        [again] = [a.id for a in run.in_flight]
        run.succeed(again, {"count": 2}, at=3704.0)
    stats = stats_of(store_url, "fork")
    assert stats.makespan_s == 4.0
    assert stats.accepted == 2 and stats.accepted_per_s == 1 / 4.0
    assert stats.assignments_per_s == 1 / 4.0  # the one dispatched again at the fork
    # b's latency runs from its dispatch again (3701), not its parent's (100).
    assert sorted(h.latency_s.p99 for h in stats.handlers) == [2.0, 3.0]


def test_what_the_work_spent_is_the_sum_over_the_logs_answers(store_url: str) -> None:
    """Per handler and for the run: requests and tokens summed over every result and
    failure that reported usage (a retried attempt's failure too); dollars over those
    the price table knew, the rest counted as unpriced, not as free."""
    with open_store(store_url) as store:
        run = Scenario([counting("a"), counting("b"), counting("c")], HANDLERS,
                       run_id="spent", store=store, at=1.0)
        on = {a.task_id: a.id for a in run.in_flight}
        run.succeed(on["a"], {"count": 1}, usage=Usage(model="openai:gpt-4o", requests=2,
                                                        input_tokens=1000, output_tokens=100,
                                                        cost_usd=0.0035))
        run.fail(on["b"], "boom", usage=Usage(model="acme:x", requests=1, input_tokens=10))
        run.succeed(run.assignment("b").id, {"count": 2},
                    usage=Usage(model="openai:gpt-4o", requests=1, input_tokens=500,
                                output_tokens=50, cost_usd=0.002))
        run.succeed(on["c"], {"count": 3})
        log = run.log
    stats = stats_of(store_url, "spent")
    usages = [e.result.usage if e.type == "ResultReceived" else e.failure.usage
              for e in log if e.type in ("ResultReceived", "FailureReported")]
    reported = [u for u in usages if u is not None]
    assert stats.spend.answers == len(reported) == 3
    assert stats.spend.requests == sum(u.requests for u in reported) == 4
    assert stats.spend.input_tokens == sum(u.input_tokens for u in reported) == 1510
    assert stats.spend.output_tokens == 150
    assert stats.spend.cost_usd == pytest.approx(0.0055) and stats.spend.unpriced == 1
    by_handler = {h.handler: h.spend for h in stats.handlers}
    assert sum(s.input_tokens for s in by_handler.values()) == 1510
