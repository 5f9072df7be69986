"""A tree of runs as the logs record it: a child run names the parent assignment it
answers, and a dispatch to a subrun names the child it starts. No Ray."""

from __future__ import annotations

import pytest

from baton import HandlerInfo, Task
from baton.events.model import Failure, require_run_id
from baton.events.schema import AssignmentDispatched, RunRequested, encode
from baton.events.state import fold
from baton.events.store import Codec, open_store
from baton.events.tree import ParentLink, child_run_id
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers


def test_a_childs_id_is_the_same_for_a_dispatch_and_new_for_an_attempt() -> None:
    assert child_run_id("audit", "pkg-json#1") == "audit.pkg-json-1"
    assert child_run_id("audit", "pkg-json#1") == child_run_id("audit", "pkg-json#1")
    assert child_run_id("audit", "pkg-json#2") == "audit.pkg-json-2"


@pytest.mark.parametrize("task", ["analyze:json/decoder.py", "a/b", "a_b", "x" * 120,
                                  "ünïcode task"])
def test_a_childs_id_is_a_run_id_whatever_its_task_is_called(task: str) -> None:
    child = child_run_id("run-20261205-1", f"{task}#3")
    assert require_run_id(child) == child
    others = {child_run_id("run-20261205-1", f"{t}#3") for t in ("a/b", "a_b", "a:b")}
    assert len(others) == 3  # names that read alike stay apart


def test_a_tree_many_levels_deep_keeps_its_ids_valid_and_apart() -> None:
    level = ["run-" + "r" * 90]
    for depth in range(6):
        level = [child_run_id(parent, f"{'task-' * 8}{i}#1") for parent in level
                 for i in range(2)]
        assert all(require_run_id(child) == child for child in level), depth
        assert len(set(level)) == len(level)


def test_a_dispatch_to_a_subrun_names_the_child_and_a_plain_one_does_not() -> None:
    run = Scenario([counting("a"), counting("b", capability="audit")],
                   [*handlers("h"), HandlerInfo(name="team", capabilities=("audit",),
                                                subrun=True)], run_id="parent")
    sent = {d.assignment.task_id: d for d in run.first if isinstance(d, AssignmentDispatched)}
    assert sent["b"].reason.facts["child_run"] == "parent.b-1"
    assert "child_run" not in sent["a"].reason.facts
    failed = run.fail("b#1", "the child run failed: 2 tasks not accepted", kind="child_failed")
    retried = [d for d in failed if isinstance(d, AssignmentDispatched)]
    assert retried[0].reason.facts["child_run"] == "parent.b-2"  # a new attempt: a new child


def test_a_child_run_records_its_parent_and_keeps_it_through_a_snapshot() -> None:
    link = ParentLink(run_id="parent", assignment_id="b#1")
    with open_store("memory://") as store:
        run = Scenario([Task(id="x", capability="count")], handlers("h"),
                       run_id="parent.b-1", parent=link, store=store)
        assert run.state.parent == link and fold(run.log).parent == link
        store.save_snapshot(run.state)
        assert store.state("parent.b-1").parent == link
    [request] = [e for e in run.log if isinstance(e, RunRequested)]
    assert Codec().decode(encode(request), run_id="parent.b-1", seq=1) == request


def test_runs_and_handlers_outside_a_tree_are_stored_as_before() -> None:
    run = Scenario([counting("a")], handlers("h"))
    assert b'"parent"' not in encode(run.log[0]) and b'"subrun"' not in encode(run.log[0])
    assert run.state.parent is None
    assert Failure(assignment_id="a#1", kind="child_failed").kind == "child_failed"
