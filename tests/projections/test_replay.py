"""Verify and time travel over stored logs: divergences named at their seq, a tampered
SQLite file caught, the state at any seq."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Sequence

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from baton import BadInputError, DefaultPolicy, HandlerInfo, Task, Verdict, open_store
from baton.cli import app
from baton.events.policy import Candidate, Routing
from baton.events.state import RunState
from baton.replay import PolicyError, state_at, verify
from baton.testing import Scenario

runner = CliRunner()


class CallCounting(DefaultPolicy):
    """Names its routing rule after a counter kept between calls, across instances: a
    policy whose decisions depend on more than what the decider hands it."""

    calls = 0

    def route(self, task: Task, candidates: Sequence[Candidate]) -> Routing:
        CallCounting.calls += 1
        chosen = super().route(task, candidates)
        return Routing(chosen.handler, f"route.call_{CallCounting.calls}")


def three_tasks(store_url: str, policy: DefaultPolicy | None = None,
                run_id: str = "r") -> Scenario:
    plan = [Task(id=t, capability="count") for t in ("a", "b", "c")]
    handlers = [HandlerInfo(name="h1", capabilities=("count",), capacity=1),
                HandlerInfo(name="h2", capabilities=("count",), capacity=1)]
    with open_store(store_url) as store:
        run = Scenario(plan, handlers, policy, run_id=run_id, store=store)
        run.fail("a#1", "flaky")
        run.succeed("b#1", {"count": 2})
        run.succeed(run.assignment("c").id, {"count": 3})
        run.succeed(run.assignment("a").id, {"count": 1})
    assert run.state.status == "completed"
    return run


@pytest.mark.unverifiable("r")
def test_a_policy_with_hidden_state_is_caught_at_its_first_decision(store_url: str) -> None:
    """Replaying reaches different rule names from seq 3 on: verify names seq 3, shows
    both rules side by side with the state digest, and the CLI exits 1 saying so."""
    three_tasks(store_url, CallCounting())
    with open_store(store_url) as store:
        report = verify(store, "r", CallCounting())
    assert not report.reproduced and report.divergence is not None
    assert report.divergence.seq == 3 and report.divergence.kind == "decision"
    assert report.divergence.fields == ("reason",)
    text = report.divergence.describe()
    assert "seq 3: recorded AssignmentDispatched (rule route.call_1), replay decides " \
           "AssignmentDispatched (rule route.call_" in text
    assert "reason.rule:\n    recorded 'route.call_1'\n    replayed 'route.call_" in text
    assert f"state before it: {report.divergence.digest}" in text
    cli = runner.invoke(app, ["replay", "r", "--verify", "--store", store_url])
    assert cli.exit_code == 1 and "seq 3: recorded AssignmentDispatched" in cli.stdout


def test_verify_replays_with_the_recorded_policy_and_notes_another(store_url: str) -> None:
    """Without a policy, the recorded one is loaded by name and every decision is
    reproduced; given a different policy, the report says it is not the one that ran."""
    run = three_tasks(store_url)
    with open_store(store_url) as store:
        report = verify(store, "r")
        assert report.reproduced and report.events == len(run.log) and not report.notes
        other = verify(store, "r", CallCounting())
    assert other.notes and "decided by baton.events.policy:DefaultPolicy" in other.notes[0]
    assert "tests.projections.test_replay:CallCounting" in other.notes[0]


@pytest.mark.unverifiable("r")
def test_a_tampered_event_in_a_sqlite_file_is_detected(store_url: str) -> None:
    """Editing one stored result's bytes (b's count 2 -> 9) breaks the digest chain: verify
    names the next decision as where the log no longer hashes, and the CLI exits 1."""
    run = three_tasks(store_url)
    seq = next(e.seq for e in run.log if e.type == "ResultReceived" and "b#1" in str(e))
    path = store_url[len("sqlite:///"):]
    with sqlite3.connect(path) as db:
        [(blob,)] = db.execute("SELECT state FROM stored_events WHERE originator_id='r' AND "
                               "originator_version=?", (seq,)).fetchall()
        assert b'"count":2' in blob
        db.execute("UPDATE stored_events SET state=? WHERE originator_id='r' AND "
                   "originator_version=?", (blob.replace(b'"count":2', b'"count":9'), seq))
    with open_store(store_url) as store:
        report = verify(store, "r")
    assert report.divergence is not None and report.divergence.kind == "chain"
    assert report.divergence.seq == seq + 1
    assert f"an event before seq {seq + 1} was altered" in report.divergence.describe()
    cli = runner.invoke(app, ["replay", "r", "--verify", "--store", store_url])
    assert cli.exit_code == 1 and "altered" in cli.stdout


def test_verify_reports_a_gap_and_a_repeat_in_the_log() -> None:
    """A log missing an event, or holding one twice, is named as such, at its seq."""
    from baton.projections.verification import verify_log

    log = Scenario([Task(id="a", capability="count")],
                   [HandlerInfo(name="h", capabilities=("count",))]).log
    _, gap = verify_log([log[0], log[2]], DefaultPolicy())
    assert gap is not None and gap.kind == "gap" and gap.seq == 3
    assert "expected seq 2, found 3: the log has a gap" in gap.describe()
    _, repeat = verify_log([log[0], log[1], log[1]], DefaultPolicy())
    assert repeat is not None and repeat.kind == "repeat" and repeat.seq == 2


def test_verify_pauses_the_cyclic_collector_and_restores_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying a long log makes many long-lived objects and no cycles: with the
    collector on, its rescans cost verify a fifth of its time (replay.py)."""
    from baton.projections import verification as module

    seen: list[bool] = []
    real = module.decide_in_place

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "decide_in_place", watched)
    log = Scenario([Task(id="a", capability="count")],
                   [HandlerInfo(name="h", capabilities=("count",))]).log
    assert gc.isenabled()
    _, divergence = module.verify_log(log, DefaultPolicy())
    assert divergence is None and seen and not any(seen) and gc.isenabled()


def test_state_at_any_seq_is_the_fold_of_the_log_to_there(store_url: str) -> None:
    """state_at(seq) matches folding the first seq events, from a snapshot or not; a seq
    outside the log is refused with the range it has."""
    run = three_tasks(store_url)
    with open_store(store_url) as store:
        store.save_snapshot(_folded(run.log[:6]))
        for seq in range(1, len(run.log) + 1):
            state = state_at(store, "r", seq)
            expected = _folded(run.log[:seq])
            assert (state.seq, state.digest, state.outputs(), sorted(state.in_flight),
                    state.status) == (expected.seq, expected.digest, expected.outputs(),
                                      sorted(expected.in_flight), expected.status)
        assert state_at(store, "r").status == "completed"
        with pytest.raises(BadInputError, match=f"events 1 to {len(run.log)}"):
            state_at(store, "r", len(run.log) + 1)
    code = runner.invoke(app, ["replay", "r", "--until", "4", "--store", store_url,
                               "--json"])
    assert code.exit_code == 0 and '"events": 4' in code.stdout


def _folded(log: Sequence[object]) -> RunState:
    state = RunState()
    for event in log:
        state.apply(event)  # type: ignore[arg-type]
    return state


def test_verify_up_to_a_seq_inside_a_turn_checks_only_that_far(store_url: str) -> None:
    """--until may stop mid-turn: the decisions after it are not counted as missing."""
    three_tasks(store_url)
    with open_store(store_url) as store:
        for until in (1, 2, 3):
            report = verify(store, "r", until=until)
            assert report.reproduced and report.events == until
        with pytest.raises(BadInputError, match="events 1 to"):
            verify(store, "r", until=0)


class Raising(DefaultPolicy):
    """A policy with a bug: it raises on the first result it judges."""

    def validate(self, task: Task, output: object) -> Verdict:
        raise ZeroDivisionError("division by zero")


def test_a_policy_that_raises_is_named_not_a_traceback(store_url: str) -> None:
    """Replaying with a broken policy says which policy error, at which seq; exit 1."""
    run = three_tasks(store_url)
    first = next(e.seq for e in run.log if e.type == "ResultReceived")
    with open_store(store_url) as store, \
            pytest.raises(PolicyError, match=f"follows seq {first} \\(ResultReceived\\)"):
        verify(store, "r", Raising())
    cli = runner.invoke(app, ["replay", "r", "--verify", "--policy",
                              "tests.projections.test_replay:Raising", "--store", store_url])
    assert cli.exit_code == 1
    assert "the policy raised ZeroDivisionError: division by zero" in cli.stderr


@pytest.mark.unverifiable("r")
def test_a_gap_in_a_stored_log_is_reported_by_verify(store_url: str) -> None:
    """A record missing from the SQLite file is a finding of verify (exit 1, saying
    'gap'), not a crash."""
    run = three_tasks(store_url)
    path = store_url[len("sqlite:///"):]
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM stored_events WHERE originator_id='r' AND "
                   "originator_version=5")
    with open_store(store_url) as store:
        report = verify(store, "r")
    assert report.divergence is not None and report.divergence.kind == "gap"
    assert report.divergence.seq == 6 and report.events == 4
    assert report.divergence.describe() == "seq 6: expected seq 5, found 6: the log has a gap"
    cli = runner.invoke(app, ["replay", "r", "--verify", "--store", store_url])
    assert cli.exit_code == 1 and "the log has a gap" in cli.stdout
    assert len(run.log) > 6


def test_a_snapshot_an_earlier_baton_wrote_is_passed_over(store_url: str) -> None:
    """A snapshot filed under an older RunState layout is not loaded (its state would
    lack what the run recorded about its policy); the log is folded instead."""
    from eventsourcing.persistence import StoredEvent

    three_tasks(store_url)
    with open_store(store_url) as store:
        assert store.repository.snapshots is not None
        store.repository.snapshots.insert_events([StoredEvent("r", 6, "baton.RunState:1", b"old")])
        state = state_at(store, "r", 7)
    assert state.seq == 7 and state.policy == "baton.events.policy:DefaultPolicy"


@pytest.mark.unverifiable("s")
def test_verify_says_which_output_schema_changed_or_does_not_load(store_url: str) -> None:
    """A run records a digest of each output schema's JSON Schema; replayed where one
    class now accepts other outputs and another does not import, the report diverges and
    its notes name both schemas."""

    class Then(BaseModel):
        count: str

    plan = [Task(id="a", capability="count", output_schema="tests.fixtures.specs:Count"),
            Task(id="b", capability="count", output_schema="nowhere.module:Gone")]
    handlers = [HandlerInfo(name="h", capabilities=("count",))]
    with open_store(store_url) as store:
        Scenario(plan, handlers, run_id="s", store=store,
                 schemas={"tests.fixtures.specs:Count": Then, "nowhere.module:Gone": Then})
        report = verify(store, "s", DefaultPolicy())
    assert not report.reproduced
    missing, changed = sorted(report.notes)
    assert missing.startswith("output schema nowhere.module:Gone does not load here")
    assert changed.startswith("output schema tests.fixtures.specs:Count changed since the run")
