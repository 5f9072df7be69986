"""The ledger at any seq, read from the run's timeline (`baton.replay.ledger_at`): the
same answer as folding the log there (the conftest compares them on every run the suite
makes; these tests make the runs that need it most), kept once and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent

from baton import BadInputError, HandlerInfo, Task, open_store
from baton.events.model import from_task
from baton.events.store import timeline
from baton.events.store.sealing import KEY_ENV, new_key
from baton.replay import ledger_at
from baton.testing import Scenario
from tests.moments import assert_moments_match

ECHO = [HandlerInfo(name="echo", capabilities=("echo",), capacity=4),
        HandlerInfo(name="spare", capabilities=("echo",), capacity=4)]


def test_a_late_failure_of_an_attempt_given_up_is_not_its_task_s_outcome(
        store_url: str) -> None:
    """The first attempt times out and is retried; its failure arrives after the
    retry was sent. The ledger keeps "timed out" there, as the fold does."""
    with open_store(store_url) as store:
        run = Scenario([Task(id="a", capability="echo")], ECHO, run_id="late", store=store)
        first = run.assignment("a")
        run.time_out(first.id)
        second = run.assignment("a")
        run.fail(first.id, "too late to matter")
        assert ledger_at(store, "late").tasks[0].outcome == "timed out"
        run.succeed(second.id, {"ok": True})
        assert_moments_match(store, "late")
        [line] = ledger_at(store, "late").tasks
        assert (line.status, line.attempts, line.outcome) == ("accepted", 2, "accepted")


def test_tasks_wait_on_their_dependencies_as_the_fold_says(store_url: str) -> None:
    """Blocked until each dependency is accepted (named in depends_on, or through an
    input), then queued; compared with the fold at every seq."""
    plan = [Task(id="a", capability="echo"), Task(id="b", capability="echo"),
            Task(id="c", capability="echo", depends_on=("a", "b")),
            Task(id="d", capability="echo", inputs={"x": from_task("c")})]
    with open_store(store_url) as store:
        run = Scenario(plan, ECHO, run_id="dag", store=store)
        assert [t.status for t in ledger_at(store, "dag").tasks] == [
            "in_flight", "in_flight", "blocked", "blocked"]
        run.succeed(run.assignment("a").id, 1)
        run.fail(run.assignment("b").id, "flaky")
        run.succeed(run.assignment("b").id, 2)
        assert [t.status for t in ledger_at(store, "dag").tasks][2:] == ["in_flight", "blocked"]
        run.succeed(run.assignment("c").id, 3)
        run.succeed(run.assignment("d").id, 4)
        assert_moments_match(store, "dag")


def test_a_seq_outside_the_log_is_refused(store_url: str) -> None:
    with open_store(store_url) as store:
        Scenario([Task(id="a", capability="echo")], ECHO, run_id="short", store=store)
        last = store.last_seq("short")
        for wrong in (0, last + 1):
            with pytest.raises(BadInputError, match=f"has events 1 to {last}; seq {wrong}"):
                ledger_at(store, "short", wrong)


def test_the_timeline_of_an_ended_run_is_kept_once_and_read_back(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(store_url) as store:
        run = Scenario([Task(id="a", capability="echo")], ECHO, run_id="done", store=store)
        run.succeed(run.assignment("a").id, {"ok": True})
        first = ledger_at(store, "done")
        kept = store.columns.recorder.select_events(timeline.stream("done"))
        assert [piece.originator_version for piece in kept] == [1]

        def derive(*args: object) -> None:
            raise AssertionError("derived again: the piece kept was not read")

        monkeypatch.setattr(timeline, "derive", derive)
        again = ledger_at(store, "done")
    assert again.as_dict() == first.as_dict() and again.status == "completed"


def test_a_damaged_piece_costs_time_not_the_answer(store_url: str) -> None:
    with open_store(store_url) as store:
        run = Scenario([Task(id="a", capability="echo")], ECHO, run_id="hurt", store=store)
        run.succeed(run.assignment("a").id, {"ok": True})
        store.columns.recorder.insert_events([StoredEvent(
            timeline.stream("hurt"), 1, timeline.TOPIC, b"not an Arrow stream")])
        assert ledger_at(store, "hurt").status == "completed"
        assert_moments_match(store, "hurt")


def test_a_growing_run_is_read_from_its_pieces_and_the_events_after_them(
        store_url: str) -> None:
    """A run long enough that a piece is kept while it runs: what it records after that
    is derived on top, each time, until it ends."""
    tasks = [Task(id=f"t{i}", capability="echo") for i in range(1_500)]
    with open_store(store_url) as store:
        run = Scenario(tasks, ECHO, run_id="long", store=store)
        while len(run.log) < timeline.KEEP_FROM:
            run.succeed(run.in_flight[0].id, 1)
        ledger_at(store, "long")
        kept = store.columns.recorder.select_events(timeline.stream("long"))
        assert [piece.originator_version for piece in kept] == [1]
        run.fail(run.in_flight[0].id, "now and then")
        book = ledger_at(store, "long")
        assert book.events == len(run.log) and book.status == "running"
        while run.in_flight:
            run.succeed(run.in_flight[0].id, 1)
        assert ledger_at(store, "long").status == "completed"
        assert_moments_match(store, "long")


@pytest.mark.unverifiable("s")  # sealed with this test's own key
def test_a_sealed_store_keeps_its_timeline_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    with open_store(f"sqlite:///{tmp_path / 'sealed.db'}") as store:
        run = Scenario([Task(id="a", capability="echo")], ECHO, run_id="s", store=store)
        run.succeed(run.assignment("a").id, {"secret": "x"})
        assert ledger_at(store, "s").status == "completed"
        [piece] = store.columns.recorder.select_events(timeline.stream("s"))
        assert b"ARROW" not in piece.state and b"echo" not in piece.state
