"""Verify in pieces on Ray workers (`baton replay RUN --verify --parallel N`): the log is
cut at its snapshots, each piece verified from the snapshot it begins at; the same
report as a serial verify, reproduced or not."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from baton import HandlerInfo, Task, open_store
from baton.cli import app
from baton.events.store import repository, snapshot
from baton.parallel import cut_points
from baton.replay import verify
from baton.testing import Scenario

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def long_run(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Scenario:
    """A run of 40 tasks, one of them failing once, with a snapshot every few events (a
    full one now and then), as a coordinator keeps them."""
    monkeypatch.setattr(repository, "DELTA", 7)
    monkeypatch.setattr(repository, "FULL_EVERY", 30)
    with open_store(store_url) as store:
        run = Scenario([Task(id=f"t{i}", capability="count") for i in range(40)],
                       [HandlerInfo(name="h", capabilities=("count",), capacity=3)],
                       run_id="long", store=store)
        while run.in_flight:
            first = run.in_flight[0]
            if first.id == "t17#1":
                run.fail(first.id, "once")
            else:
                run.succeed(first.id, {"count": int(first.task_id[1:])})
            store.keep_state(run.state)
    return run


def test_a_log_verified_in_pieces_reproduces_as_it_does_whole(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run = long_run(store_url, monkeypatch)
    with open_store(store_url) as store:
        last = store.last_seq("long")
        assert len(cut_points(store, "long", last, 3)) == 2
        whole, pieces = verify(store, "long"), verify(store, "long", parallel=3)
    assert pieces.reproduced and pieces.events == whole.events == last == len(run.log)
    code = CliRunner().invoke(app, ["replay", "long", "--verify", "--parallel", "3",
                                    "--store", store_url])
    assert code.exit_code == 0 and f"replayed {last} events" in code.stdout


@pytest.mark.unverifiable("long")
def test_a_tampered_event_is_found_where_a_serial_verify_finds_it(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer edited in the last third of the log: the piece that holds it reports
    the same divergence, with the same account, as verifying the log whole."""
    run = long_run(store_url, monkeypatch)
    seq = next(e.seq for e in reversed(run.log) if e.type == "ResultReceived")
    with sqlite3.connect(store_url[len("sqlite:///"):]) as db:
        [(blob,)] = db.execute("SELECT state FROM stored_events WHERE originator_id='long' "
                               "AND originator_version=?", (seq,)).fetchall()
        db.execute("UPDATE stored_events SET state=? WHERE originator_id='long' AND "
                   "originator_version=?", (blob.replace(b'"count":', b'"count":1'), seq))
    with open_store(store_url) as store:
        whole, pieces = verify(store, "long"), verify(store, "long", parallel=3)
    assert whole.divergence is not None and pieces.divergence is not None
    assert pieces.divergence.as_dict() == whole.divergence.as_dict()
    assert pieces.events == whole.events


def test_pieces_that_do_not_join_are_verified_whole(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot that is not its log's state (its digest is another's) cannot begin a
    piece: the pieces do not join, and the log is verified in one, saying why."""
    long_run(store_url, monkeypatch)
    with open_store(store_url) as store:
        last = store.last_seq("long")
        [cut] = cut_points(store, "long", last, 2)
        wrong = store.state("long", until=cut)
        wrong.digest = "f" * 32
        topic, data = snapshot.encode(wrong)
    with sqlite3.connect(store_url[len("sqlite:///"):]) as db:
        db.execute("UPDATE stored_snapshots SET topic=?, state=? WHERE originator_id='long' "
                   "AND originator_version=?", (topic, data, cut))
    with open_store(store_url) as store:
        found = verify(store, "long", parallel=2)
    assert found.reproduced and found.events == last
    assert any(f"the snapshot at seq {cut} is not the state its log leads to" in note
               for note in found.notes)


def test_parallel_goes_with_a_whole_verify(store_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    long_run(store_url, monkeypatch)
    for args in (["--parallel", "2"], ["--verify", "--parallel", "2", "--until", "5"],
                 ["--verify", "--tree", "--parallel", "2"],
                 ["--verify", "--parallel", "-1"]):
        code = CliRunner().invoke(app, ["replay", "long", *args, "--store", store_url])
        assert code.exit_code == 2, (args, code.output)
        assert "Traceback" not in code.output
