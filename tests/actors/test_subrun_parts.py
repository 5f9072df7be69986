"""A subrun's own checks, without Ray: a run already in the store under a child's id
must be that child; a build that returns no Spec says so; a failure's kind is taken
from an exception only when it is one."""

from __future__ import annotations

from pathlib import Path

import pytest

import baton
from baton import Assignment, Spec, Task
from baton.actors.inbox import cancel_orphans, inbox_id
from baton.actors.subrun import ChildRunFailedError, RunContext, _outcome, _run_child
from baton.actors.worker import Worker
from baton.events.errors import BadSpecError
from baton.events.tree import ParentLink
from baton.testing import Scenario
from tests.fixtures.policies import GiveUpAtOnce
from tests.fixtures.specs import counting, handlers
from tests.fixtures.tree import TEAM

ASSIGNMENT = Assignment(id="b.c#1", task_id="b.c", attempt=1, handler="team",
                        capability="audit", instructions="", context_digest="-")


def test_a_run_under_the_childs_id_that_answers_another_parent_is_refused(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with baton.open_store(url) as store:  # a.b's task c: the same id as a's task b.c
        Scenario([counting("x")], handlers("h"), run_id="a.b.c-1", store=store,
                 parent=ParentLink(run_id="a.b", assignment_id="c#1"))
    spec = Spec(goal="g", tasks=[Task(id="x", capability="count")], handlers=[])
    with pytest.raises(BadSpecError, match=r"is not the child of b\.c#1 of run a"):
        _run_child(lambda a: spec, ASSIGNMENT, RunContext("a", url))


def test_a_build_that_returns_no_spec_fails_its_assignment_saying_so(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"returns the child's baton\.Spec, not dict"):
        _run_child(lambda a: {"goal": "g"}, ASSIGNMENT,
                   RunContext("a", f"sqlite:///{tmp_path / 'b.db'}"))


def test_a_failures_kind_comes_from_its_exception_only_when_it_is_one() -> None:
    class Odd(Exception):
        failure_kind = "exploded"

    @baton.handler(capabilities=["x"])
    def odd(assignment: Assignment) -> None:
        raise Odd("?")

    [failure] = Worker(odd).run([ASSIGNMENT])
    assert failure.kind == "error"


def test_the_outcome_of_a_child_is_read_from_its_last_event(tmp_path: Path) -> None:
    """A completed child gives its output; a failed one, ChildRunFailedError with why."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with baton.open_store(url) as store:
        done = Scenario([counting("x")], handlers("h"), run_id="p.a-1", store=store)
        done.succeed("x#1", {"count": 3})
        failed = Scenario([counting("x")], handlers("h"), GiveUpAtOnce(), run_id="p.a-2",
                          store=store)
        failed.fail("x#1", "no")
    assert _outcome("p.a-1", url) == {"x": {"count": 3}}
    with pytest.raises(ChildRunFailedError, match=r"child run p\.a-2 failed: required task"):
        _outcome("p.a-2", url)


def test_a_run_that_ends_cancels_the_child_of_an_attempt_it_gave_up(tmp_path: Path) -> None:
    """The first attempt timed out while its child still ran; the retry's child answered
    and the run completed. Its end cancels the first child (its answer no longer
    counts) and leaves the second as it was."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with baton.open_store(url) as store:
        for attempt in (1, 2):
            child = Scenario([counting("t")], handlers("h"), run_id=f"top.pkg-{attempt}",
                             store=store,
                             parent=ParentLink(run_id="top", assignment_id=f"pkg#{attempt}"))
        child.succeed("t#1", {"count": 1})
        top = Scenario([Task(id="pkg", capability="audit")], TEAM, run_id="top", store=store)
        top.time_out("pkg#1")
        top.succeed("pkg#2", child.state.output)
        assert top.state.status == "completed"
        cancel_orphans(store, top.state, alive=lambda run_id: False)
        assert store.state("top.pkg-1").status == "failed"
        [asked] = store.read(inbox_id("top.pkg-1"))
        assert asked.note == "its parent run top completed (run top.pkg-1 is under it)"
        assert store.state("top.pkg-2").status == "completed"
        assert store.read(inbox_id("top.pkg-2")) == []
