"""Nested runs on real Ray: an assignment that is a run of its own, with its own
coordinator and log, linked both ways to the parent's assignment."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

import baton
from baton import load_spec, open_store
from baton.actors.cluster import coordinator_alive
from baton.actors.inbox import request_cancel
from baton.cli import app
from baton.events.schema import (
    AssignmentDispatched,
    CancelRequested,
    FailureReported,
    ResultValidated,
    RunRequested,
)
from baton.events.tree import ParentLink
from baton.replay import fork, trace_down, verify, verify_tree
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


def test_the_parents_coordinator_killed_finds_its_child_and_starts_no_second(
        store_url: str) -> None:
    """The parent's coordinator is killed while its child runs: Ray restarts it, it
    sends the same attempt again, and the subrun finds the child already there and
    waits for it. One child, completed once; both logs verify."""
    killed: list[bool] = []

    def kill_once_the_child_runs(progress: baton.actors.progress.RunProgress) -> None:
        if killed:
            return
        with open_store(store_url) as store:
            if store.last_seq("slow.pkg-a-1") >= 3:  # the child has dispatched its work
                ray.kill(ray.get_actor("baton:slow", namespace="baton"), no_restart=False)
                killed.append(True)

    result = baton.run(ray_specs.slow_nested_spec(), store=store_url, run_id="slow",
                       on_progress=kill_once_the_child_runs, poll_s=0.1)
    assert killed and result.ok, result.error
    assert result.output == {"pkg-a": {"text-0": {"words": 2}, "text-1": {"words": 1}}}
    with open_store(store_url) as store:
        log = store.read("slow")
        assert [e.type for e in log].count("CoordinatorRestarted") == 1
        assert not store.last_seq("slow.pkg-a-2")  # no second child
        child = store.read("slow.pkg-a-1")
        assert [e.type for e in child].count("RunRequested") == 1
        assert store.state("slow.pkg-a-1").status == "completed"
        assert verify(store, "slow").reproduced and verify(store, "slow.pkg-a-1").reproduced


def test_a_childs_coordinator_killed_is_restarted_and_the_parent_only_waits(
        store_url: str) -> None:
    """The child's coordinator is killed mid-run: Ray restarts it, it takes its run up
    from its log, and the parent sees nothing but the delay."""
    killed: list[bool] = []

    def kill_the_childs_coordinator(progress: baton.actors.progress.RunProgress) -> None:
        if killed:
            return
        with open_store(store_url) as store:
            if store.last_seq("kid.pkg-a-1") >= 3:
                ray.kill(ray.get_actor("baton:kid.pkg-a-1", namespace="baton"),
                         no_restart=False)
                killed.append(True)

    result = baton.run(ray_specs.slow_nested_spec(), store=store_url, run_id="kid",
                       on_progress=kill_the_childs_coordinator, poll_s=0.1)
    assert killed and result.ok, result.error
    with open_store(store_url) as store:
        assert "CoordinatorRestarted" not in [e.type for e in store.read("kid")]
        child = [e.type for e in store.read("kid.pkg-a-1")]
        assert child.count("CoordinatorRestarted") == 1 and child[-1] == "RunCompleted"
        assert verify(store, "kid.pkg-a-1").reproduced


def test_cancel_of_a_parent_cancels_its_child_and_starts_no_other(store_url: str) -> None:
    """`baton cancel PARENT` while its child runs: the child's coordinator takes its
    cancel up, the parent's takes its own, and the subrun starts no child in the failed
    one's place. Both logs say why; both verify."""
    baton.run(ray_specs.slow_nested_spec(), store=store_url, run_id="stop", detach=True)
    with open_store(store_url) as store:
        until(lambda: store.last_seq("stop.pkg-a-1") >= 3)  # the child works
        code = CliRunner().invoke(app, ["cancel", "stop", "--store", store_url]).exit_code
        assert code == 0
        until(lambda: all(store.state(r).status == "failed" for r in ("stop", "stop.pkg-a-1")))
        assert not store.last_seq("stop.pkg-a-2")
        [asked] = [e for e in store.read("stop.pkg-a-1") if isinstance(e, CancelRequested)]
        assert asked.note == "run stop was cancelled (run stop.pkg-a-1 is under it)"
        until(lambda: not coordinator_alive("stop"))
        assert verify(store, "stop").reproduced and verify(store, "stop.pkg-a-1").reproduced


def test_a_parent_that_fails_cancels_the_children_still_going(store_url: str) -> None:
    """The parent fails while its child still works (here, cancelled in its own inbox
    alone, as a person stopping it at its budget would end it): its coordinator cancels
    the child, which nothing would wait for now."""
    baton.run(ray_specs.slow_nested_spec(), store=store_url, run_id="orphan", detach=True)
    with open_store(store_url) as store:
        until(lambda: store.last_seq("orphan.pkg-a-1") >= 3)  # the child works
        request_cancel(store, "orphan", "stop here")
        until(lambda: store.state("orphan.pkg-a-1").status == "failed")
        [asked] = [e for e in store.read("orphan.pkg-a-1") if isinstance(e, CancelRequested)]
        assert asked.note == "its parent run orphan failed (run orphan.pkg-a-1 is under it)"
        assert store.state("orphan").status == "failed"
        until(lambda: not coordinator_alive("orphan.pkg-a-1"))
        assert verify(store, "orphan.pkg-a-1").reproduced


def test_resume_of_a_stalled_parent_resumes_its_stalled_child(store_url: str) -> None:
    """Parent and child both left without a coordinator (killed for good, as when a
    cluster goes away): `baton resume PARENT` sends the child's assignment again, and the
    subrun resumes the child from its log rather than starting another."""
    baton.run(ray_specs.slow_nested_spec(), store=store_url, run_id="halt", detach=True)
    with open_store(store_url) as store:
        until(lambda: store.last_seq("halt.pkg-a-1") >= 3)
        for run_id in ("halt", "halt.pkg-a-1"):
            ray.kill(ray.get_actor(f"baton:{run_id}", namespace="baton"), no_restart=True)
        result = baton.resume("halt", store=store_url, spec=ray_specs.slow_nested_spec())
        assert result.ok, result.error
        child = [e.type for e in store.read("halt.pkg-a-1")]
        assert child.count("CoordinatorRestarted") == 1 and child[-1] == "RunCompleted"
        assert not store.last_seq("halt.pkg-a-2")
        assert verify(store, "halt").reproduced and verify(store, "halt.pkg-a-1").reproduced


def test_a_three_level_tree_survives_a_failing_grandchild_and_two_killed_coordinators(
        store_url: str) -> None:
    """Packages, their modules, their texts: a run, its children, their children. The
    flaky module's first grandchild fails and the child's retry starts another; a
    child's coordinator and then the top one are killed mid-run. The whole tree
    completes, every task accepted once in its log, the tree verifies, and the trace of
    a top-level figure names the grandchild handler that produced it."""
    kills: list[str] = []

    def kill(run_id: str) -> None:
        ray.kill(ray.get_actor(f"baton:{run_id}", namespace="baton"), no_restart=False)
        kills.append(run_id)

    def kill_mid_run(progress: baton.actors.progress.RunProgress) -> None:
        with open_store(store_url) as store:
            if not kills and store.last_seq("tree.pkg-a-1.mod-x-1") >= 3:
                kill("tree.pkg-a-1")  # a child's, while its grandchildren work
            elif kills == ["tree.pkg-a-1"] and store.last_seq("tree.pkg-b-1.mod-z-1") >= 3:
                kill("tree")  # the top one, while the other child's grandchild works

    result = baton.run(ray_specs.three_level_spec(), store=store_url, run_id="tree",
                       on_progress=kill_mid_run, poll_s=0.1)
    assert kills == ["tree.pkg-a-1", "tree"] and result.ok, (kills, result.error)
    assert result.output == {
        "pkg-a": {"mod-x": {"text-0": {"words": 2}, "text-1": {"words": 1}},
                  "mod-y": {"text-0": {"words": 3}}},
        "pkg-b": {"mod-z": {"text-0": {"words": 1}, "text-1": {"words": 2}}}}
    with open_store(store_url) as store:
        runs = {info.run_id: info.status for _, info in store.tree("tree")}
        assert runs == {"tree.pkg-a-1": "completed", "tree.pkg-a-1.mod-x-1": "completed",
                        "tree.pkg-a-1.mod-y-1": "failed", "tree.pkg-a-1.mod-y-2": "completed",
                        "tree.pkg-b-1": "completed", "tree.pkg-b-1.mod-z-1": "completed"}
        for run_id in ["tree", *runs]:
            log = store.read(run_id)
            accepted = Counter(e.assignment_id.rsplit("#", 1)[0] for e in log
                               if isinstance(e, ResultValidated) and e.outcome == "accepted")
            done = run_id != "tree.pkg-a-1.mod-y-1"  # (the grandchild that failed)
            assert accepted == Counter(list(store.state(run_id).tasks) if done else []), run_id
            restarted = [e.type for e in log].count("CoordinatorRestarted")
            assert restarted == (run_id in kills), run_id
        assert CliRunner().invoke(app, ["replay", "tree", "--verify", "--tree", "--store",
                                        store_url]).exit_code == 0
        steps = trace_down(store.read, "tree", ["pkg-a", "mod-y", "text-0"])
        [made] = [s for s in steps if s.depth == 2 and s.type == "AssignmentDispatched"]
        assert (made.run_id, made.detail["handler"]) == ("tree.pkg-a-1.mod-y-2",
                                                        "count_or_break")


def test_a_fork_of_a_parent_reuses_the_children_finished_before_it(store_url: str) -> None:
    """Forked after pkg-a's child answered and before pkg-b's did: resumed, the fork
    takes pkg-a's answer from its log and starts a child of its own for pkg-b only; its
    tree verifies, and its trace of pkg-b leads to its own child."""
    result = baton.run(ray_specs.uneven_nested_spec(), store=store_url, run_id="orig")
    assert result.ok, result.error
    with open_store(store_url) as store:
        log = store.read("orig")
        [a_in] = [e.seq for e in log if isinstance(e, ResultValidated)
                  and e.assignment_id == "pkg-a#1"]
        [b_in] = [e.seq for e in log if isinstance(e, ResultValidated)
                  and e.assignment_id == "pkg-b#1"]
        assert a_in < b_in
        made = fork(store, "orig", a_in, new_run_id="forked",
                    spec="tests.fixtures.ray_specs:uneven_nested_spec")
    again = baton.resume("forked", store=store_url, spec=made.spec)
    assert again.ok and again.output == result.output, again.error
    with open_store(store_url) as store:
        assert [info.run_id for _, info in store.tree("forked")] == ["forked.pkg-b-1"]
        assert not store.last_seq("forked.pkg-a-1")
        assert verify_tree(store, "forked").reproduced
        steps = trace_down(store.read, "forked", ["pkg-b", "text-0"])
        assert {s.run_id for s in steps if s.depth == 1} == {"forked.pkg-b-1"}


def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_nested_audit_example_runs_a_child_per_package(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/nested_audit.py, two packages: a child run each, linked to the parent's
    assignment, the parent's output ranking them; every log verifies."""
    monkeypatch.setenv("NESTED_AUDIT_PACKAGES", "json,http")
    spec = load_spec(str(EXAMPLES / "nested_audit.py"))
    result = baton.run(spec, store=store_url, run_id="nested")
    assert result.ok, result.error
    assert result.output["packages"] == 2 and result.output["files"] >= 8
    with open_store(store_url) as store:
        for child in ("nested.package-json-1", "nested.package-http-1"):
            state = store.state(child)
            assert state.status == "completed" and state.parent is not None
            assert state.output["files"] == len(state.tasks)
            assert verify(store, child).reproduced
        assert verify(store, "nested").reproduced
