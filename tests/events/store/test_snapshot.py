"""Snapshots are data: a run's state round-trips through JSON, and a pickle is never run."""

from __future__ import annotations

import json
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from baton import BadLogError, open_store
from baton.events.record import TaskRecord
from baton.events.state import RunState
from baton.events.store import EventStore
from baton.events.store.snapshot import TOPIC, decode_state, encode_state
from baton.testing import Scenario
from tests.events.store.test_recorder import recorded_run
from tests.events.test_golden import golden_records
from tests.fixtures.specs import counting, handlers


def plain(state: RunState) -> dict[str, Any]:
    """Everything a state holds, its task records opened up, for comparing two states."""
    kept = dict(vars(state))
    kept["tasks"] = {tid: {name: getattr(r, name) for name in TaskRecord.__slots__}
                     for tid, r in state.tasks.items()}
    return kept


def test_every_state_of_the_golden_run_round_trips() -> None:
    """At every seq of the golden log (plans, retries, escalations, pins, the end), the
    decoded snapshot holds exactly the state that was encoded, down to tuples and queues."""
    state = RunState()
    for event, line in golden_records():
        state.apply(event, line)  # type: ignore[arg-type]
        again = decode_state(encode_state(state), run_id="golden", seq=state.seq)
        assert plain(again) == plain(state), f"seq {state.seq}"
        assert [type(q) for q in again.ready.values()] == [type(q) for q in state.ready.values()]


def test_lost_workers_round_trip_and_older_snapshots_without_them_still_load() -> None:
    run = Scenario([counting("a")], handlers("h"))
    run.fail("a#1", "gone", kind="worker_lost")
    again = decode_state(encode_state(run.state), run_id="run-1", seq=run.state.seq)
    assert again.tasks["a"].lost == (("h", 1),)
    older = json.loads(zlib.decompress(encode_state(run.state)))
    for record in older["tasks"].values():
        del record["lost"]
    before = decode_state(zlib.compress(json.dumps(older).encode()), run_id="run-1",
                          seq=run.state.seq)
    assert before.tasks["a"].lost == ()


def test_a_snapshot_of_another_place_or_shape_is_a_bad_log() -> None:
    """A snapshot filed under another run or seq, or not of the snapshot's shape, is
    refused naming the run and seq it was filed under."""
    state = RunState()
    for event, line in golden_records()[:5]:
        state.apply(event, line)  # type: ignore[arg-type]
    data = encode_state(state)
    with pytest.raises(BadLogError, match="run 'other' at seq 5: snapshot holds run 'golden'"):
        decode_state(data, run_id="other", seq=5)
    with pytest.raises(BadLogError, match="run 'golden' at seq 5: snapshot is malformed"):
        decode_state(zlib.compress(b'{"run_id": "golden"}'), run_id="golden", seq=5)
    with pytest.raises(BadLogError, match="run 'golden' at seq 5: snapshot is malformed: not zlib"):
        decode_state(b'{"run_id": "golden"}', run_id="golden", seq=5)


def test_a_large_state_is_written_in_chunks_and_reads_back_whole() -> None:
    """Past one chunk of task records, the spliced JSON still holds every record once."""
    run = Scenario([counting(f"t{i}") for i in range(2_500)], handlers("h"))
    again = decode_state(encode_state(run.state), run_id="run-1", seq=run.state.seq)
    assert plain(again) == plain(run.state)


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
        older = StoredEvent("run-1", 4, "baton.RunState:2", payload)
        store.repository.snapshots.insert_events([older])
        assert store.state("run-1").status == "completed"
        store.repository.snapshots.insert_events([StoredEvent("run-1", 6, TOPIC, payload)])
        with pytest.raises(BadLogError, match="run 'run-1' at seq 6: snapshot is malformed"):
            store.state("run-1")
    assert not marker.exists()
