"""A tree of runs read across its logs: the trace that follows a result down, and the
verification of every log and every link."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from baton import open_store
from baton.events.errors import UnknownTaskError
from baton.events.model import Task
from baton.events.schema import Envelope
from baton.events.store import EventStore
from baton.events.tree import ParentLink
from baton.replay import trace_down, verify_tree
from baton.testing import Scenario
from tests.fixtures.policies import GiveUpAtOnce
from tests.fixtures.specs import counting, handlers
from tests.fixtures.tree import RUNS, TEAM, record_tree


@pytest.fixture
def store() -> Iterator[EventStore]:
    with open_store("memory://") as opened:
        yield opened


def test_a_trace_follows_a_result_down_to_the_grandchild_handler_that_produced_it(
        store: EventStore) -> None:
    record_tree(store)
    steps = trace_down(store.read, "top", ["pkg", "mod", "t"])
    where = [(s.depth, s.run_id, s.type) for s in steps]
    assert where[:2] == [(0, "top", "RunCompleted"), (0, "top", "ResultValidated")]
    # The child's chain sits under the dispatch that started it, the grandchild's under
    # the child's, each step naming its run.
    produced = [s for s in steps if s.depth == 2 and s.type == "AssignmentDispatched"]
    assert [(s.run_id, s.what) for s in produced] == [("top.pkg-1.mod-2", "t#1 -> counter")]
    assert produced[0].detail["handler"] == "counter"
    dispatch = next(i for i, s in enumerate(steps) if s.depth == 0
                    and s.type == "AssignmentDispatched")
    assert {s.depth for s in steps[dispatch - 1:dispatch]} == {1}
    assert steps[dispatch].facts["child_run"] == "top.pkg-1"
    # The first grandchild failed: not on the chain of the answer accepted.
    assert "top.pkg-1.mod-1" not in {s.run_id for s in steps}


def test_a_trace_that_stops_at_a_subrun_shows_its_child_in_short(store: EventStore) -> None:
    record_tree(store)
    steps = trace_down(store.read, "top", ["pkg"])
    below = [(s.run_id, s.type, s.what) for s in steps if s.depth == 1]
    assert below[0][:2] == ("top.pkg-1", "RunCompleted")
    assert ("top.pkg-1", "AssignmentDispatched", "mod#2 -> team (feedback: 1)") in below
    assert not [s for s in steps if s.depth > 1]
    with pytest.raises(UnknownTaskError, match=r"task 't' of run top\.pkg-1\.mod-2 started "
                                               "no child run"):
        trace_down(store.read, "top", ["pkg", "mod", "t", "deeper"])


def test_a_child_not_in_the_store_is_said_so_and_cannot_be_followed(
        store: EventStore) -> None:
    record_tree(store)

    def read(run_id: str) -> list[Envelope]:
        return [] if run_id == "top.pkg-1" else store.read(run_id)

    steps = trace_down(read, "top", ["pkg"])
    assert [s.what for s in steps if s.depth == 1] == ["child run top.pkg-1 is not in this store"]
    with pytest.raises(UnknownTaskError, match=r"child run top\.pkg-1 \(of task 'pkg' of run "
                                               r"top\) is not in this store"):
        trace_down(read, "top", ["pkg", "mod"])


def test_verify_tree_verifies_every_log_and_that_each_result_is_its_childs_output(
        store: EventStore) -> None:
    record_tree(store)
    report = verify_tree(store, "top")
    assert report.reproduced and not report.broken
    assert [r.run_id for r in report.reports] == list(RUNS)


def test_verify_tree_names_a_parent_result_that_is_not_its_childs_output() -> None:
    with open_store("memory://") as store:
        record_tree(store, top_takes={"mod": {"t": {"count": 8}}})
        report = verify_tree(store, "top")
    assert all(r.reproduced for r in report.reports) and not report.reproduced
    [broken] = report.broken
    assert (broken.run_id, broken.child) == ("top", "top.pkg-1")
    assert "is not the child's output" in broken.describe()


def test_a_trace_of_a_task_not_accepted_follows_its_last_attempts_child(
        store: EventStore) -> None:
    """Two attempts, two children, both failed: the path goes on down into the last
    attempt's child; the first is shown in short under its own dispatch."""
    for attempt in (1, 2):
        child = Scenario([counting("t")], handlers("counter"), GiveUpAtOnce(),
                         run_id=f"p.x-{attempt}", store=store,
                         parent=ParentLink(run_id="p", assignment_id=f"x#{attempt}"))
        child.fail("t#1", f"no count, take {attempt}")
    parent = Scenario([Task(id="x", capability="audit")], TEAM, run_id="p", store=store)
    for attempt in (1, 2):
        parent.fail(f"x#{attempt}", f"child run p.x-{attempt} failed", kind="child_failed")
    steps = trace_down(store.read, "p", ["x", "t"])
    first = [s for s in steps if s.run_id == "p.x-1"]
    last = [s for s in steps if s.run_id == "p.x-2"]
    assert [s.type for s in first] == ["RunFailed", "AssignmentDispatched"]
    assert "FailureReported" in [s.type for s in last]
    assert any("no count, take 2" in s.what for s in last)
    assert steps.index(last[0]) < steps.index(first[0])  # newest first
