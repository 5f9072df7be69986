"""Following a run as it is written: `baton log --follow` and `baton wait`, told of each
event by PostgreSQL's LISTEN/NOTIFY, and by polling on SQLite."""

from __future__ import annotations

import json
import threading
import time

import psycopg

from baton import open_store
from baton.events.store import EventStore
from baton.events.store.heartbeats import Heartbeat
from baton.testing import Scenario
from tests.cli.test_cli import baton
from tests.fixtures.specs import counting, handlers


def alive(store: EventStore, run_id: str) -> None:
    """Beat for the run as its coordinator would: someone is driving it."""
    store.beat(Heartbeat(run_id, time.time(), "running", 2, 0, "the test's writer"))


def write_slowly(url: str, run_id: str, started: threading.Event,
                 listening: list[bool]) -> None:
    """A run written a turn at a time, the first turn before `started` is set."""
    with open_store(url) as store:
        run = Scenario([counting("a"), counting("b", depends_on=("a",))], handlers("h"),
                       run_id=run_id, store=store)
        alive(store, run_id)
        started.set()
        time.sleep(0.5)  # the reader is following by now
        if url.startswith("postgresql"):
            with psycopg.connect(url.partition("?")[0]) as db:
                listening.append(bool(db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
                ).fetchone()[0]))  # type: ignore[index]
        run.succeed("a#1", {"count": 1})
        time.sleep(0.3)
        run.succeed("b#1", {"count": 2})


def test_log_follow_prints_each_event_until_the_run_ends(durable_store_url: str) -> None:
    """`log --follow --json` prints every event, one JSON object a line, as they are
    recorded, and returns when the run completes; on PostgreSQL it LISTENs."""
    started, listening = threading.Event(), []
    writer = threading.Thread(target=write_slowly,
                              args=(durable_store_url, "live", started, listening))
    writer.start()
    started.wait(10)
    code, out, _ = baton("log", "live", "--follow", "--json", "--store", durable_store_url)
    writer.join()
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "RunRequested" and events[-1]["type"] == "RunCompleted"
    if durable_store_url.startswith("postgresql"):
        assert listening == [True]


def test_wait_returns_when_the_run_completes(durable_store_url: str) -> None:
    """`wait` on a running run returns once it completes, with exit 0, gives up after
    --timeout with exit 1 on a run that does not move, and at once on one that no
    coordinator drives (stalled)."""
    started, listening = threading.Event(), []
    writer = threading.Thread(target=write_slowly,
                              args=(durable_store_url, "waited", started, listening))
    writer.start()
    started.wait(10)
    began = time.monotonic()
    code, out, _ = baton("wait", "waited", "--store", durable_store_url, "--json")
    writer.join()
    assert code == 0 and json.loads(out)["status"] == "completed"
    assert time.monotonic() - began < 10
    with open_store(durable_store_url) as store:
        Scenario([counting("x")], handlers("h"), run_id="stuck", store=store)
        alive(store, "stuck")
        Scenario([counting("x")], handlers("h"), run_id="orphan", store=store)
    code, _, err = baton("wait", "stuck", "--timeout", "1", "--store", durable_store_url)
    assert code == 1 and "still running after 1s" in err
    code, out, _ = baton("wait", "orphan", "--timeout", "30", "--store", durable_store_url)
    assert code == 1
    assert "orphan stalled; no coordinator has reported for this run; `baton resume " \
           "orphan` continues it" in out


def test_wait_gives_a_silent_coordinator_time_to_come_back(durable_store_url: str) -> None:
    """A coordinator that stopped beating 20 s ago without saying it stopped may be one
    Ray is restarting on another node: `wait` keeps waiting (here until its --timeout)
    rather than returning `stalled` at once."""
    with open_store(durable_store_url) as store:
        Scenario([counting("x")], handlers("h"), run_id="moving", store=store)
        store.beat(Heartbeat("moving", time.time() - 20, "running", 1, 0, "a lost node"))
    began = time.monotonic()
    code, out, _ = baton("wait", "moving", "--timeout", "3", "--store", durable_store_url,
                         "--json")
    assert code == 1 and json.loads(out)["status"] == "stalled"
    assert time.monotonic() - began >= 3
