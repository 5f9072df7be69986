"""Operating a tree of runs through the CLI, from the logs alone: status counts the
runs under a run, cancel reaches them, wait waits for them."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from baton import open_store
from baton.actors.inbox import inbox_id, request_cancel
from baton.cli import app
from baton.events.model import Task
from baton.events.schema import CancelRequested, RunFailed
from baton.events.store.heartbeats import Heartbeat
from baton.events.tree import ParentLink
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers
from tests.fixtures.tree import TEAM
from tests.fixtures.tree import record_tree as three_levels

runner = CliRunner()
TREE = ("top", "top.a-1", "top.a-1.a-1")


def baton(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


def record_tree(url: str) -> None:
    """A run, its child and its grandchild, each with its one assignment in flight and
    no coordinator (as after a cluster that went away)."""
    with open_store(url) as store:
        for parent, run_id in zip((None, *TREE), TREE, strict=False):
            link = ParentLink(run_id=parent, assignment_id="a#1") if parent else None
            run = Scenario([counting("a")], handlers("h"), run_id=run_id, parent=link)
            store.append(run_id, run.log, 0)
        done = Scenario([counting("a")], handlers("h"), run_id="top.b-1",
                        parent=ParentLink(run_id="top", assignment_id="b#1"))
        done.succeed("a#1", {"count": 1})
        store.append("top.b-1", done.log, 0)


def test_status_counts_the_runs_under_a_run_and_names_those_not_completed(
        store_url: str) -> None:
    record_tree(store_url)
    code, shown = baton("status", "top", "--store", store_url)
    assert code == 1, shown  # stalled: nobody drives it
    assert "with the 3 run(s) under it (1 completed, 2 stalled): 1 of 4 tasks accepted, " \
           "3 in flight" in shown
    assert "└ top.a-1  stalled  (for a#1); baton resume top.a-1" in shown
    assert "    └ top.a-1.a-1  stalled" in shown and "top.b-1" not in shown
    code, shown = baton("status", "top", "--store", store_url, "--json")
    tree = json.loads(shown)["tree"]
    assert [(r["run_id"], r["depth"], r["status"]) for r in tree["runs"]] == [
        ("top.a-1", 1, "stalled"), ("top.a-1.a-1", 2, "stalled"), ("top.b-1", 1, "completed")]
    assert (tree["tasks"], tree["accepted"], tree["in_flight"]) == (4, 1, 3)


def test_cancel_reaches_every_run_under_it_still_going_each_in_its_own_log(
        store_url: str) -> None:
    record_tree(store_url)
    code, shown = baton("cancel", "top", "--note", "wrong input", "--store", store_url)
    assert code == 0 and "cancel recorded for top (now failed), and for the 2 run(s) " \
                         "under it still going" in shown, shown
    with open_store(store_url) as store:
        for run_id in TREE:
            assert isinstance(store.read(run_id)[-1], RunFailed), run_id
        (asked,) = store.read(inbox_id("top.a-1.a-1"))
        assert isinstance(asked, CancelRequested)
        assert asked.note == "run top was cancelled (run top.a-1.a-1 is under it)"
        assert store.read(inbox_id("top.b-1")) == []  # completed: left as it was
    code, shown = baton("wait", "top", "--store", store_url, "--json")
    assert code == 1 and {r["status"] for r in json.loads(shown)["tree"]["runs"]} == {
        "failed", "completed"}
    code, shown = baton("cancel", "top", "--store", store_url)
    assert code == 2 and "run top has already failed, and no run under it is still going: " \
                         "there is nothing to cancel" in shown


def test_trace_goes_down_the_tree_and_replay_verifies_it_whole(store_url: str) -> None:
    with open_store(store_url) as store:
        three_levels(store)
    code, shown = baton("trace", "top", "pkg", "mod", "t", "--store", store_url)
    assert code == 0, shown
    assert "  in child run top.pkg-1:" in shown and "    in child run top.pkg-1.mod-2:" in shown
    assert "t#1 -> counter" in shown
    code, shown = baton("trace", "top", "pkg", "--store", store_url)
    assert "mod#2 -> team" in shown
    assert "follow a task of a child run down: baton trace top pkg TASK" in shown
    code, shown = baton("replay", "top", "--verify", "--tree", "--store", store_url)
    assert code == 0, shown
    for run_id in ("top", "top.pkg-1", "top.pkg-1.mod-1", "top.pkg-1.mod-2"):
        assert f"{run_id}: replayed" in shown
    assert "every result taken from a child run is its output, byte for byte (3 run(s) " \
           "under top)" in shown
    code, shown = baton("replay", "top", "--tree", "--store", store_url)
    assert code == 2 and "--tree goes with --verify alone" in shown
    code, shown = baton("trace", "top", "pkg", "mod", "t", "u", "--store", store_url)
    assert code == 2 and "task 't' of run top.pkg-1.mod-2 started no child run" in shown


def test_replay_verify_tree_names_a_result_that_is_not_its_childs_output(
        store_url: str) -> None:
    with open_store(store_url) as store:
        three_levels(store, top_takes={"mod": {"t": {"count": 8}}})
    code, shown = baton("replay", "top", "--verify", "--tree", "--store", store_url, "--json")
    assert code == 1
    [broken] = json.loads(shown)["broken_links"]
    assert broken["child"] == "top.pkg-1" and "not the child's output" in broken["problem"]


def test_inbox_of_a_run_lists_the_questions_of_the_runs_under_it(store_url: str) -> None:
    """A child waiting on a person keeps its parent's assignment in flight: the parent's
    inbox shows the child's question, and status names the child as waiting."""
    with open_store(store_url) as store:
        Scenario([Task(id="pkg", capability="audit")], TEAM, run_id="top", store=store)
        child = Scenario([counting("t")], handlers("h"), run_id="top.pkg-1", store=store,
                         parent=ParentLink(run_id="top", assignment_id="pkg#1"))
        child.fail("t#1", "no")
        child.fail("t#2", "no again")
        assert child.state.escalations
    code, shown = baton("inbox", "top", "--store", store_url, "--json")
    assert code == 0 and [e["run_id"] for e in json.loads(shown)] == ["top.pkg-1"]
    code, shown = baton("status", "top", "--store", store_url)
    assert "└ top.pkg-1  waiting  (for pkg#1); baton inbox top.pkg-1" in shown, shown
    # The parent's coordinator is alive and waits: so does `baton wait`, no longer.
    with open_store(store_url) as store:
        store.beat(Heartbeat("top", time.time(), "running", 1, 0, "pid 1 on here"))
    started = time.monotonic()
    code, shown = baton("wait", "top", "--timeout", "30", "--store", store_url)
    assert code == 1 and time.monotonic() - started < 10, shown
    assert "top waits on the runs under it: top.pkg-1 waiting; see baton status top" in shown


def test_cancel_again_takes_in_the_request_a_dead_coordinator_left(store_url: str) -> None:
    """A child asked to cancel whose coordinator died first is cancelled in its log by
    the next `baton cancel`, with the one request it has."""
    record_tree(store_url)
    with open_store(store_url) as store:
        request_cancel(store, "top.a-1", "first try")
    assert baton("cancel", "top", "--store", store_url)[0] == 0
    with open_store(store_url) as store:
        assert isinstance(store.read("top.a-1")[-1], RunFailed)
        [asked] = store.read(inbox_id("top.a-1"))
        assert asked.note == "first try"
