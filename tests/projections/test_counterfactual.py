"""Counterfactual replay: a run's recorded facts fed to another policy, no worker called."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from baton import DefaultPolicy, HandlerInfo, Task, open_store
from baton.cli import app
from baton.replay import counterfactual
from baton.testing import Scenario
from tests.fixtures.policies import GiveUpAtOnce, OnlyH2
from tests.projections.test_replay import three_tasks

runner = CliRunner()


def test_a_changed_routing_rule_shows_its_changed_dispatches(store_url: str) -> None:
    """Routing everything to h2 parts from the record at the first turn (a#1 went to h1),
    and stops there: no worker ever ran a#1 on h2, so no recording answers it."""
    three_tasks(store_url)
    with open_store(store_url) as store:
        report = counterfactual(store, "r", OnlyH2())
    [parting] = report.partings
    assert parting.seq == 1 and parting.stimulus.startswith("RunRequested")
    assert "AssignmentDispatched a#1 -> h1  [route.least_loaded]" in parting.recorded
    assert "AssignmentDispatched a#1 -> h2  [route.only_h2]" in parting.replayed
    assert report.stopped_at == 1
    assert report.stopped == ("the new policy dispatches a#1 to h2, but the run's a#1 differed "
                              "in handler (it went to h1), so no recording answers it")
    assert report.outcome["status"] == "running" and report.outcome["in_flight"] == ["a#1"]

    cli = runner.invoke(app, ["replay", "r", "--policy", "tests.fixtures.policies:OnlyH2",
                              "--store", store_url])
    assert cli.exit_code == 1
    assert "replayed  AssignmentDispatched a#1 -> h2  [route.only_h2]" in cli.stdout
    assert "stopped after seq 1: the new policy dispatches a#1 to h2" in cli.stdout


def test_a_changed_recovery_rule_runs_on_recordings_to_a_different_outcome(
    store_url: str,
) -> None:
    """Abandoning a#1's failure instead of retrying needs no new work: b#1 is the same
    assignment as recorded, so the replay runs to its end on recordings; the run fails
    its check, and a#2's result goes unused."""
    plan = [Task(id="a", capability="count"), Task(id="b", capability="count")]
    with open_store(store_url) as store:
        run = Scenario(plan, [HandlerInfo(name="h1", capabilities=("count",), capacity=1)],
                       run_id="r", store=store)
        run.fail("a#1", "flaky")
        run.succeed("a#2", {"count": 1})
        run.succeed("b#1", {"count": 2})
    assert run.state.status == "completed"
    failed = next(e.seq for e in run.log if e.type == "FailureReported")
    with open_store(store_url) as store:
        report = counterfactual(store, "r", GiveUpAtOnce())
    assert not report.stopped
    assert report.partings[0].seq == failed
    assert report.partings[0].recorded[0] == "RecoveryChosen a: retry on h1  [recover.retry]"
    assert report.partings[0].replayed[0] == "RecoveryChosen a: abandon  [recover.give_up]"
    assert report.unused == ["a#2"]
    assert report.recorded_outcome["status"] == "completed"
    assert report.outcome["status"] == "failed"
    assert "required task 'a' was not accepted" in report.outcome["error"]
    [change] = report.changed_tasks
    assert change.task_id == "a" and change.recorded.startswith("accepted after 2")
    assert change.replayed.startswith("abandoned after 1")

    cli = runner.invoke(app, ["replay", "r", "--policy", "tests.fixtures.policies:GiveUpAtOnce",
                              "--store", store_url, "--json"])
    assert cli.exit_code == 1 and json.loads(cli.stdout)["outcome"]["status"] == "failed"


def test_the_recorded_policy_decides_as_the_record_did(store_url: str) -> None:
    """The same rules, fed the same facts, part nowhere: exit 0."""
    three_tasks(store_url)
    with open_store(store_url) as store:
        report = counterfactual(store, "r", DefaultPolicy())
    assert report.same and report.outcome == report.recorded_outcome and not report.unused
    cli = runner.invoke(app, ["replay", "r", "--policy", "baton.events.policy:DefaultPolicy",
                              "--store", store_url])
    assert cli.exit_code == 0 and "it decides exactly as the record did" in cli.stdout


def test_a_policy_reference_that_does_not_load_is_bad_input(store_url: str) -> None:
    """A typo in --policy is exit 2 with what to write, not a traceback."""
    three_tasks(store_url)
    for ref, says in (("tests.fixtures.policies", "write module:Name"),
                      ("tests.fixtures.policies:Nope", "has no `Nope`"),
                      ("tests.fixtures.specs:Count", "not a policy")):
        cli = runner.invoke(app, ["replay", "r", "--policy", ref, "--store", store_url])
        assert cli.exit_code == 2 and says in cli.stderr, (ref, cli.stderr)
