"""Snapshots are data: a run's state round-trips through JSON and Arrow columns, full or
as a chain of deltas, its records decoded only when touched; a pickle is never run."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from baton import BadLogError, HandlerInfo, Task, open_store
from baton.events.record import TaskRecord
from baton.events.state import RunState
from baton.events.store import EventStore, repository, snapshot
from baton.events.store.records import Records, restore
from baton.testing import Scenario
from tests.events.store.test_recorder import recorded_run
from tests.events.test_golden import golden_records
from tests.fixtures.specs import counting, handlers


def plain(state: RunState) -> dict[str, Any]:
    """Everything a state holds that its decisions read, its task records opened up,
    for comparing two states. A queue is compared by its live entries: the stale ones a
    fold leaves behind are only ever skipped, and a state read back holds none."""
    kept = {name: value for name, value in vars(state).items() if name != "changed"}
    kept["tasks"] = {tid: {name: getattr(r, name) for name in TaskRecord.__slots__}
                     for tid, r in state.tasks.items()}
    for name in ("ready", "pinned"):
        kept[name] = {key: [entry for entry in queue if state.live(*entry)]
                      for key, queue in getattr(state, name).items()}
    kept["dependents"] = {task: list(them) for task, them in state.dependents.items()}
    return kept


def read_back(data: bytes, state: RunState) -> snapshot.Layer:
    return snapshot.decode(data, run_id=state.run_id, seq=state.seq)


def test_every_state_of_the_golden_run_round_trips_full_and_as_deltas() -> None:
    """At every seq of the golden log (plans, retries, escalations, pins, the end), a
    full snapshot, and a chain of a delta at every seq on the first one, each read back
    exactly the state that was kept, down to tuples and the queues' live entries."""
    state = RunState()
    state.changed = set()
    chain: list[snapshot.Layer] = []
    for event, line in golden_records():
        state.apply(event, line)  # type: ignore[arg-type]
        _, whole = snapshot.encode(state)
        assert plain(restore([read_back(whole, state)])) == plain(state), f"seq {state.seq}"
        if chain:
            base = (chain[0].seq, chain[-1].seq, chain[-1].head["tasks"])
            topic, delta = snapshot.encode(state, base)
            assert topic == snapshot.DELTA
            chain.append(read_back(delta, state))
        else:
            chain.append(read_back(whole, state))
        assert plain(restore(chain)) == plain(state), f"seq {state.seq}, as a chain"
        state.changed = set()


def test_records_are_decoded_only_when_touched() -> None:
    """A state read back decodes no record until one is looked up; a walk over them
    decodes the rest, in plan order."""
    run = Scenario([counting(f"t{i}") for i in range(2_500)], handlers("h"))
    _, data = snapshot.encode(run.state)
    again = restore([read_back(data, run.state)])
    assert isinstance(again.tasks, Records)
    assert dict.__len__(again.tasks) == 0 and len(again.tasks) == 2_500
    assert again.tasks["t2000"].index == 2000 and dict.__len__(again.tasks) == 1
    assert "t2499" in again.tasks and "t2500" not in again.tasks
    assert again.tasks.get("nope") is None and dict.__len__(again.tasks) == 1
    assert list(again.tasks)[:3] == ["t0", "t1", "t2"] and again.tasks.whole
    assert plain(again) == plain(run.state)


def test_two_threads_walking_the_records_see_the_same_whole() -> None:
    """A coordinator reads its state from two threads: walks that decode the records
    not yet touched, at once, keep what was touched and changed since."""
    run = Scenario([counting(f"t{i}") for i in range(3_000)], handlers("h"))
    _, data = snapshot.encode(run.state)
    again = restore([read_back(data, run.state)])
    touched = again.tasks["t7"]
    touched.feedback = ("changed since the snapshot",)
    walks: list[list[TaskRecord]] = []
    threads = [threading.Thread(target=lambda: walks.append(list(again.tasks.values())))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(walks) == 4 and all(len(walk) == 3_000 for walk in walks)
    assert all(walk[7] is touched for walk in walks)
    assert [r.index for r in walks[0]] == list(range(3_000))


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_outputs_that_are_empty_false_or_unusual_read_back_as_they_were() -> None:
    """Down to their types: an int stays an int (however big), a float a float; and
    nested deeper than pydantic's JSON reader goes, as the log reads them."""
    outputs = [0, "", [], {}, False, None, 1.5, {"a": [None, ""]}, 2**70, 1.0, 0.1, 1e300,
               "é ☃ \u2028 \"", {"k": {"deep": [1, 2.5, "x", True]}}, nested(230)]
    run = Scenario([Task(id=f"t{i}", capability="echo") for i in range(len(outputs))],
                   [HandlerInfo(name="echo", capabilities=("echo",), capacity=32)])
    for assignment, output in zip(run.in_flight, outputs, strict=True):
        run.succeed(assignment.id, output)
    _, data = snapshot.encode(run.state)
    again = restore([read_back(data, run.state)])
    assert [repr(again.tasks[f"t{i}"].output) for i in range(len(outputs))] == list(
        map(repr, outputs))
    assert plain(again) == plain(run.state)


def test_a_chain_keeps_deltas_between_full_snapshots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept as a coordinator keeps them (a delta every few events here, a full one when
    the chain has grown), the state at every seq is the fold's; a delta whose base is
    missing is not used, and the fold starts from the chain's last link instead."""
    monkeypatch.setattr(repository, "DELTA", 5)
    monkeypatch.setattr(repository, "FULL_EVERY", 40)
    with open_store(f"sqlite:///{tmp_path / 'chain.db'}") as store:
        run = Scenario([counting(f"t{i}") for i in range(30)], handlers("h"), store=store)
        run.state.changed = set()
        while run.in_flight:
            first = run.in_flight[0]
            if first.attempt == 1 and first.task_id.endswith("3"):
                run.fail(first.id, "once")
            else:
                run.succeed(first.id, {"count": 1})
            store.keep_state(run.state)
        topics = [s.topic for s in store.repository.snapshots.select_events("run-1")]
        assert topics.count(snapshot.FULL) >= 2 and topics.count(snapshot.DELTA) >= 10
        folded = RunState()
        for event in run.log:
            folded.apply(event)
            assert plain(store.state("run-1", until=folded.seq)) == plain(folded), folded.seq
        # A damaged delta inside the latest chain ends the chain there: the log is
        # folded on from the link before it.
        kept = store.repository.kept["run-1"]
        taken = {s.originator_version for s in store.repository.snapshots.select_events(
            "run-1")}
        inside = [seq for seq in range(kept.full + 1, kept.last) if seq not in taken]
        assert inside, "the latest chain holds deltas"
        store.repository.snapshots.insert_events([StoredEvent(
            "run-1", inside[len(inside) // 2], snapshot.DELTA, b"not a snapshot")])
        assert plain(store.state("run-1")) == plain(folded)
        taken = {s.originator_version for s in store.repository.snapshots.select_events(
            "run-1")}
        free = max(seq for seq in range(1, folded.seq + 1) if seq not in taken)
        stray = store.state("run-1", until=free)
        stray.changed = set(stray.tasks)
        _, data = snapshot.encode(stray, (1, 10**6, 0))  # a base no snapshot is at
        store.repository.snapshots.insert_events([StoredEvent(
            "run-1", free, snapshot.DELTA, data)])
        assert plain(store.state("run-1")) == plain(folded)


def test_a_snapshot_of_another_place_or_shape_is_a_bad_log() -> None:
    """A snapshot filed under another run or seq, or not of the snapshot's shape, is
    refused naming the run and seq it was filed under."""
    state = RunState()
    for event, line in golden_records()[:5]:
        state.apply(event, line)  # type: ignore[arg-type]
    _, data = snapshot.encode(state)
    with pytest.raises(BadLogError, match="run 'other' at seq 5: snapshot holds run 'golden'"):
        snapshot.decode(data, run_id="other", seq=5)
    for damaged in (data[:40], b'{"run_id": "golden"}', data[:-100]):
        with pytest.raises(BadLogError, match="run 'golden' at seq 5: snapshot is malformed"):
            snapshot.decode(damaged, run_id="golden", seq=5)


class Planted:
    """A pickle that, if it were ever loaded, would leave a file behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_pickle_planted_in_the_snapshot_table_is_never_unpickled(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A pickle in the snapshot table, under the old pickle topic or the current one,
    runs nothing: the old one is passed over (the log is folded), the current one is a
    BadLogError."""
    url = (f"sqlite:///{tmp_path / 'baton.db'}" if kind == "sqlite"
           else request.getfixturevalue("postgres_url"))
    marker = tmp_path / "marker"
    payload = pickle.dumps(Planted(marker))
    log = recorded_run()
    with open_store(url) as store:
        assert isinstance(store, EventStore) and store.repository.snapshots is not None
        store.append("run-1", log, 0)
        older = StoredEvent("run-1", 4, "baton.RunState:json2", payload)
        store.repository.snapshots.insert_events([older])
        assert store.state("run-1").status == "completed"
        store.repository.snapshots.insert_events([StoredEvent("run-1", 6, snapshot.FULL,
                                                              payload)])
        with pytest.raises(BadLogError, match="run 'run-1' at seq 6: snapshot is malformed"):
            store.state("run-1")
    assert not marker.exists()
