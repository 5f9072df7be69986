"""Nested runs on real Ray: an assignment that is a run of its own, with its own
coordinator and log, linked both ways to the parent's assignment."""

from __future__ import annotations

import pytest

import baton
from baton import open_store
from baton.events.schema import AssignmentDispatched, FailureReported, RunRequested
from baton.events.tree import ParentLink
from baton.replay import verify
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_a_subrun_is_a_child_run_whose_output_is_the_parents_result(store_url: str) -> None:
    """Each audit is a child run with its own log: its request names the parent's
    assignment, the parent's dispatch names the child, the child's output is the
    parent's accepted result, and every log verifies."""
    result = baton.run(ray_specs.nested_spec(), store=store_url, run_id="audit")
    assert result.ok, result.error
    assert result.output == {"pkg-a": {"text-0": {"words": 2}, "text-1": {"words": 3}},
                             "pkg-b": {"text-0": {"words": 1}}}
    with open_store(store_url) as store:
        sent = {e.assignment.task_id: e.reason.facts["child_run"] for e in store.read("audit")
                if isinstance(e, AssignmentDispatched)}
        assert sent == {"pkg-a": "audit.pkg-a-1", "pkg-b": "audit.pkg-b-1"}
        for task, child in sent.items():
            [request] = [e for e in store.read(child) if isinstance(e, RunRequested)]
            assert request.parent == ParentLink(run_id="audit", assignment_id=f"{task}#1")
            assert store.state(child).status == "completed"
            assert verify(store, child).reproduced
        assert verify(store, "audit").reproduced


def test_a_child_that_fails_fails_the_parents_attempt_and_a_retry_starts_another(
        store_url: str) -> None:
    """The child run fails: the parent's attempt fails as child_failed, naming the child
    and why; the parent's recovery rule retries, which starts a second child (a new
    attempt, a new run), and then asks a person. Every log verifies."""
    result = baton.run(ray_specs.doomed_spec(), store=store_url, run_id="doomed")
    assert result.status == "waiting"
    with open_store(store_url) as store:
        failures = [e.failure for e in store.read("doomed") if isinstance(e, FailureReported)]
        assert [f.kind for f in failures] == ["child_failed", "child_failed"]
        assert "child run doomed.pkg-1 failed: required task 't' was not accepted" in (
            failures[0].message)
        for child in ("doomed.pkg-1", "doomed.pkg-2"):
            assert store.state(child).status == "failed"
            assert verify(store, child).reproduced
