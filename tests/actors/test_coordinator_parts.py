"""The coordinator's parts that need no cluster: its deadlines, what it sends and how,
and what it counts. (The coordinator itself is tested through real runs on Ray.)"""

from __future__ import annotations

from typing import Any

import pytest

import baton
from baton import HandlerInfo, open_store
from baton.actors.deadlines import Deadlines
from baton.actors.pool import Pool, window
from baton.actors.ratelimit import RateLimit, Throttle, throttles
from baton.actors.runstats import RunStats
from baton.actors.sender import Sender
from baton.actors.spec import ImportedSchemas
from baton.events.errors import BadSpecError
from baton.events.model import Assignment, Execution, Verdict
from baton.events.schema import AssignmentDispatched, Reason, ResultValidated
from baton.testing import Scenario
from tests.fixtures.specs import Count, Listing, counting


def test_only_the_latest_deadline_of_an_assignment_counts() -> None:
    """An assignment sent again gets a new deadline; the old one passes unnoticed, and
    each passes once, soonest first."""
    clock = Deadlines()
    clock.set("a#1", 10.0)
    clock.set("b#1", 5.0)
    clock.set("a#1", 20.0)  # sent again
    assert clock.next_at() == 5.0
    assert clock.passed(15.0) == ["b#1"]
    assert clock.passed(15.0) == []
    assert clock.passed(20.0) == ["a#1"] and clock.next_at() is None


def test_an_overdue_assignment_stops_being_so_when_its_call_returns() -> None:
    clock = Deadlines()
    clock.ran_late("a#1")
    clock.ran_late("b#1")
    clock.returned(["a#1", "c#1"])
    assert clock.overdue == {"b#1"}


class Worker:
    """A stand-in for a worker actor's handle: the Sender only hands it to `send`."""

    def __init__(self, name: str):
        self.name = name


def assignment(task: str, attempt: int = 1, timeout_s: float | None = None,
               handler: str = "h") -> Assignment:
    return Assignment(id=f"{task}#{attempt}", task_id=task, attempt=attempt, handler=handler,
                      capability="c", instructions="", context_digest="", timeout_s=timeout_s)


def sender(replicas: int = 1, throttles: dict[str, Throttle] | None = None
           ) -> tuple[Sender, list[tuple[str, list[str]]]]:
    sent: list[tuple[str, list[str]]] = []

    def send(worker: Any, batch: list[Assignment]) -> int:
        sent.append((worker.name, [a.id for a in batch]))
        return len(sent)  # the call's ref

    pool = Pool({"h": [Worker(f"h{i}") for i in range(replicas)]})
    pool.ran("h", 0.0001)  # a fast handler: many assignments a call
    return Sender(pool, send, throttles), sent


def test_work_goes_in_batches_and_timed_work_and_retries_alone() -> None:
    """Untimed first attempts share a call; a timed one and a retry each get their own,
    and the timed one's clock starts as it goes. Nothing goes to a replica past its
    window of calls."""
    out, sent = sender(replicas=1)
    work = [assignment("a"), assignment("b"), assignment("t", timeout_s=5),
            assignment("r", attempt=2), assignment("c")]
    for a in work:
        out.queue(a)
    timed: list[str] = []
    out.send_waiting({a.id for a in work}, lambda a: timed.append(a.id))
    assert window(1) == 2  # then the replica's window is full: the retry and c wait
    assert sent == [("h0", ["a#1", "b#1"]), ("h0", ["t#1"])]
    assert timed == ["t#1"] and out.calls == 2
    assert out.carries({"r#2"}) and not out.carries({"x#1"})


def test_what_is_no_longer_in_flight_is_never_sent() -> None:
    """An assignment cancelled or timed out while it waited is dropped from its queue."""
    out, sent = sender()
    for a in (assignment("a"), assignment("b")):
        out.queue(a)
    out.send_waiting({"b#1"}, lambda a: None)
    assert sent == [("h0", ["b#1"])]


def test_idle_replicas_share_what_waits_and_a_dropped_replica_gives_its_work_back() -> None:
    """Two idle replicas take half the queue each; replacing one forgets its calls and
    names what they carried, to be queued again ahead of the rest."""
    out, sent = sender(replicas=2)
    work = [assignment(t) for t in "abcd"]
    for a in work:
        out.queue(a)
    out.send_waiting({a.id for a in work}, lambda a: None)
    assert sorted(sent) == [("h0", ["a#1", "b#1"]), ("h1", ["c#1", "d#1"])]
    replica = out.replica_of("c#1")
    assert replica is not None and out.running()[replica][0][0].ids == ("c#1", "d#1")
    assert out.dropped(replica) == ["c#1", "d#1"] and out.replica_of("c#1") is None
    out.queue(assignment("e"))
    out.queue_first("h", [work[2], work[3]])
    assert [a.id for a in out.waiting["h"]] == ["c#1", "d#1", "e#1"]


def test_run_stats_count_turns_and_the_decisions_a_person_watches() -> None:
    stats = RunStats()
    dispatched = AssignmentDispatched(run_id="r", seq=2, cause=1, state_digest="d",
                                      reason=Reason(rule="route"), assignment=assignment("a"))
    rejected = ResultValidated(run_id="r", seq=4, cause=3, state_digest="d",
                               reason=Reason(rule="validate.rejected"), assignment_id="a#1",
                               task_id="a", outcome="rejected", verdict=Verdict.of(["no"]))
    stats.took([dispatched], 0.5, 0.25)
    stats.took([rejected, dispatched], 0.5, 0.25)
    fields = stats.progress_fields()
    assert (fields["turns"], fields["dispatched"], fields["rejections"]) == (2, 2, 1)
    assert (fields["deciding_s"], fields["appending_s"]) == (1.0, 0.5)


def test_a_coordinator_finds_schemas_its_spec_did_not_name() -> None:
    """A restarted coordinator folds tasks a policy added with a schema the spec's own
    tasks did not use: its table imports that one by topic, and says why one it cannot
    import is missing."""
    table = ImportedSchemas({"tests.fixtures.specs:Listing": Listing})
    assert table.get("tests.fixtures.specs:Count") is Count
    assert table.get("nowhere.module:Gone") is None
    assert "cannot be imported" in table.missing["nowhere.module:Gone"]


def test_a_rate_limit_holds_sends_back_until_its_period_lets_them_go() -> None:
    """Three a second: of five assignments queued, three go (in one call), the rest
    wait; the sender says when the next may go; a second later two more do."""
    clock = [100.0]
    throttle = Throttle(RateLimit.parse("3/s"), now=lambda: clock[0])
    out, sent = sender(replicas=1, throttles={"h": throttle})
    work = [assignment(t) for t in "abcde"]
    for a in work:
        out.queue(a)
    out.send_waiting({a.id for a in work}, lambda a: None)
    assert [ids for _, ids in sent] == [["a#1", "b#1", "c#1"]]
    assert out.next_send_in() == 1.0
    out.answered(next(iter(out.pending)))
    out.send_waiting({a.id for a in work}, lambda a: None)
    assert len(sent) == 1  # the window is free, the limit is not
    clock[0] += 1.0
    out.send_waiting({a.id for a in work}, lambda a: None)
    assert [ids for _, ids in sent][1] == ["d#1", "e#1"] and out.next_send_in() is None


def test_a_run_taken_up_again_remembers_the_starts_of_the_last_period() -> None:
    """Starts at wall times 0, 50 and 70 under '2/min', read back at wall time 100: the
    two within the minute count (on this process's clock), so none may go until the one
    at 50 is a minute old; a handler with no limit, or a fresh run, remembers nothing."""
    with open_store("memory://") as store:
        run = Scenario([counting(t) for t in "abc"], [
            HandlerInfo(name="h", capabilities=("count",), capacity=1)], store=store)
        for aid, at in (("a#1", 0.0), ("b#1", 50.0), ("c#1", 70.0)):
            run.succeed(aid, {"count": 1}, execution=Execution(
                node="n", pid=1, replica=0, started_at=at, ended_at=at + 1))
        made = throttles({"h": RateLimit.parse("2/min")}, store, "run-1",
                         now=lambda: 1000.0, wall=lambda: 100.0)
    assert list(made["h"].sent) == [950.0, 970.0]
    assert made["h"].room() == 0 and made["h"].next_in() == 10.0
    assert list(throttles({"h": RateLimit.parse("2/min")}, None)["h"].sent) == []
    assert throttles(None) == {}


@pytest.mark.parametrize(("written", "expected"), [
    ("60/min", (60, 60.0)), ("10/s", (10, 1.0)), ("1000/h", (1000, 3600.0)),
    ("5/10s", (5, 10.0)), ("2/hours", (2, 3600.0))])
def test_a_rate_limit_is_written_as_people_say_it(written: str,
                                                  expected: tuple[int, float]) -> None:
    limit = RateLimit.parse(written)
    assert (limit.count, limit.period_s) == expected


@pytest.mark.parametrize("written", ["0/s", "ten/min", "5/day", "5/0s", "60"])
def test_a_rate_limit_that_is_not_one_is_refused_saying_how_to_write_it(written: str) -> None:
    with pytest.raises(BadSpecError, match=r"rate_limit .* (is not one; write N/s, N/min "
                                           r"or N/h|has no period)"):
        baton.handler(capabilities=["x"], rate_limit=written)(lambda assignment: {})
