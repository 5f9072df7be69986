"""One store contract, run against every backend (memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from baton import BadLogError, ConcurrencyConflictError, open_store
from baton.events.schema import Envelope
from baton.events.store import EventStore
from baton.events.store.index import TABLE, TRACKED_AS
from baton.events.tree import ParentLink, child_run_id
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers


def recorded_run(run_id: str = "run-1", parent: ParentLink | None = None) -> list[Envelope]:
    run = Scenario([counting("a"), counting("b", depends_on=("a",))], handlers("h"),
                   run_id=run_id, goal=f"goal of {run_id}", parent=parent)
    run.succeed("a#1", {"count": 1})
    run.succeed("b#1", {"count": 2})
    return run.log


class StoreContract(ABC):
    """Behaviour every backend must have. Subclasses say how to open one."""

    @abstractmethod
    def open(self) -> EventStore:
        """A fresh, empty store of the backend under test."""

    @pytest.fixture
    def store(self) -> EventStore:
        with self.open() as store:
            yield store

    def test_appended_events_read_back_equal_and_in_order(self, store: EventStore) -> None:
        """What is appended is what is read, whole or by seq range."""
        log = recorded_run()
        store.append("run-1", log[:4], 0)
        store.append("run-1", log[4:], 4)
        assert store.read("run-1") == log
        assert store.read("run-1", after=2, until=5) == log[2:5]
        assert store.last_seq("run-1") == len(log)
        assert store.last_seq("no-such-run") == 0 and store.read("no-such-run") == []

    def test_a_conflicting_writer_gets_the_concurrency_error(self, store: EventStore) -> None:
        """Appending at a stale expected seq raises ConcurrencyConflictError and writes nothing."""
        log = recorded_run()
        store.append("run-1", log[:3], 0)
        with pytest.raises(ConcurrencyConflictError,
                           match="expected the log to end at seq 2, but it ends at seq 3"):
            store.append("run-1", log[2:6], 2)
        assert store.read("run-1") == log[:3]

    def test_a_batch_is_one_transaction(self, store: EventStore) -> None:
        """When one event of a batch collides, none of the batch is written."""
        log = recorded_run()
        store.append("run-1", log[:3], 0)
        encode = store.mapper.codec.encode
        stored = [StoredEvent("run-1", e.seq, e.type, encode(e)) for e in log[3:6]]
        clash = StoredEvent("run-1", 3, "X", b"{}")
        with pytest.raises(IntegrityError):
            store.recorder.insert_events([*stored, clash])
        assert store.last_seq("run-1") == 3

    def test_an_append_out_of_sequence_is_refused(self, store: EventStore) -> None:
        """Events must continue the run's seq and belong to the run they are appended to."""
        log = recorded_run()
        with pytest.raises(BadLogError, match="expected run 'run-1' seq 1"):
            store.append("run-1", log[1:3], 0)
        with pytest.raises(BadLogError, match="expected run 'other' seq 1"):
            store.append("other", log[:1], 0)

    def test_runs_are_listed_newest_first(self, store: EventStore) -> None:
        """runs() lists each run once, with its goal, task count, status and length,
        newest first."""
        for run_id in ("first", "second"):
            log = recorded_run(run_id)
            store.append(run_id, log, 0)
        runs = store.runs()
        assert [r.run_id for r in runs] == ["second", "first"]
        assert runs[0].goal == "goal of second" and runs[0].tasks == 2
        assert (runs[0].status, runs[0].events) == ("completed", len(recorded_run()))

    @pytest.mark.unverifiable("later")  # cut mid-run on purpose
    def test_the_runs_index_takes_in_each_event_once_and_resumes(
        self, store: EventStore
    ) -> None:
        """The index follows runs as they grow and end, from where it last read, and
        takes in a page only once however many readers catch it up."""
        log = recorded_run("later")
        store.append("later", log[:3], 0)
        assert [(r.status, r.events) for r in store.runs()] == [("running", 3)]
        before = store.index.view.max_tracking_id(TRACKED_AS)
        store.append("later", log[3:6], 3)
        assert [(r.status, r.events) for r in store.runs()] == [("running", 6)]
        assert store.index.view.max_tracking_id(TRACKED_AS) > before
        store.append("done", recorded_run("done"), 0)
        for _ in range(2):  # read again: nothing is taken in twice
            listed = {r.run_id: (r.status, r.events) for r in store.runs()}
            assert listed == {"later": ("running", 6), "done": ("completed", len(log))}

    def test_the_runs_index_knows_each_childs_parent(self, store: EventStore) -> None:
        """A child run is listed with the run and assignment it answers, and a run's tree
        is its children, theirs, and so on, depth first."""
        def child_of(parent: str, task: str) -> str:
            run_id = child_run_id(parent, f"{task}#1")
            link = ParentLink(run_id=parent, assignment_id=f"{task}#1")
            store.append(run_id, recorded_run(run_id, link), 0)
            return run_id

        store.append("top", recorded_run("top"), 0)
        first = child_of("top", "a")
        grandchild = child_of(first, "b")
        second = child_of("top", "b")
        store.append("other", recorded_run("other"), 0)
        # A fork of a child copies its request, link and all: it is no child of top.
        store.append("a-copy", recorded_run("a-copy", ParentLink(run_id="top",
                                                                 assignment_id="a#1")), 0)
        listed = {r.run_id: (r.parent, r.parent_assignment) for r in store.runs()}
        assert listed["a-copy"] == (None, None)
        assert listed[grandchild] == (first, "b#1") and listed["top"] == (None, None)
        assert [(depth, r.run_id) for depth, r in store.tree("top")] == [
            (1, first), (2, grandchild), (1, second)]
        assert store.tree("other") == [] and store.tree("no-such-run") == []

    @pytest.mark.unverifiable("one", "two")  # cut mid-turn or broken on purpose
    def test_the_notification_log_follows_every_run_in_order(self, store: EventStore) -> None:
        """notifications(after) yields the store-wide order from a position on."""
        one, two = recorded_run("one"), recorded_run("two")
        store.append("one", one[:2], 0)
        store.append("two", two[:2], 0)
        store.append("one", one[2:4], 2)
        notes = list(store.notifications())
        assert [(n.event.run_id, n.event.seq) for n in notes] == [
            ("one", 1), ("one", 2), ("two", 1), ("two", 2), ("one", 3), ("one", 4)]
        later = list(store.notifications(after=notes[3].position))
        assert [n.position for n in later] == [n.position for n in notes[4:]]
        assert store.max_position() == notes[-1].position

    @pytest.mark.unverifiable("run-1")  # broken on purpose
    @pytest.mark.parametrize(
        ("record", "message"),
        [
            (b"\x00garbage", "record is not JSON"),
            (b'{"type": "Bogus", "run_id": "run-1", "seq": 4}', "unknown event type 'Bogus'"),
            (b'{"type": "TimerFired", "run_id": "run-1", "seq": 4}',
             "malformed TimerFired record: assignment_id: Field required"),
            (b'{"type": "TimerFired", "run_id": "run-1", "seq": 9, "assignment_id": "a#1"}',
             "record says run 'run-1' seq 9 but is filed under"),
        ],
    )
    def test_a_corrupt_record_is_reported_not_skipped(
        self, store: EventStore, record: bytes, message: str
    ) -> None:
        """Reading past a bad record raises BadLogError naming the run, the seq and the fault."""
        store.append("run-1", recorded_run()[:3], 0)
        store.recorder.insert_events([StoredEvent("run-1", 4, "TimerFired", record)])
        with pytest.raises(BadLogError, match=r"run 'run-1' at seq 4: ") as raised:
            store.read("run-1")
        assert message in str(raised.value)
        assert raised.value.run_id == "run-1" and raised.value.seq == 4

    @pytest.mark.unverifiable("run-1")  # cut mid-turn or broken on purpose
    def test_a_gap_in_the_stored_log_is_reported(self, store: EventStore) -> None:
        """A missing seq is an error when read, never silently stepped over."""
        log = recorded_run()
        store.append("run-1", log[:3], 0)
        stored = StoredEvent("run-1", 5, log[4].type, store.mapper.codec.encode(log[4]))
        store.recorder.insert_events([stored])
        with pytest.raises(BadLogError, match="at seq 5: expected seq 4, found 5"):
            store.read("run-1")

    def test_the_folded_state_matches_the_live_run(self, store: EventStore) -> None:
        """state(run) folds the stored bytes and reaches the same digest as the live run."""
        run = Scenario([counting("a")], handlers("h"))
        run.succeed("a#1", {"count": 4})
        store.append("run-1", run.log, 0)
        state = store.state("run-1")
        assert state.digest == run.state.digest and state.output == {"a": {"count": 4}}
        assert store.state("run-1", until=2).seq == 2


    def test_a_fold_from_a_snapshot_reaches_the_same_state(self, store: EventStore) -> None:
        """state() starts from the latest snapshot at or before `until` and folds the
        tail; the result is the state a full fold reaches."""
        log = recorded_run()
        store.append("run-1", log, 0)
        store.save_snapshot(store.state("run-1", until=4))
        full = store.state("run-1", from_snapshot=False)
        resumed = store.state("run-1")
        assert (resumed.seq, resumed.digest, resumed.outputs()) == (
            full.seq, full.digest, full.outputs())
        assert store.state("run-1", until=3).seq == 3  # a snapshot past `until` is unused
        assert resumed.tasks["b"].status == "accepted"

    def test_a_snapshot_that_disagrees_with_the_log_is_caught(self, store: EventStore) -> None:
        """A snapshot whose digest is not the log's is refused at the next decision."""
        log = recorded_run()
        store.append("run-1", log, 0)
        wrong = store.state("run-1", until=4)
        wrong.digest = "f" * 32
        store.save_snapshot(wrong)
        with pytest.raises(BadLogError, match=r"at seq 5: .* edited or reordered"):
            store.state("run-1")


class TestMemoryStore(StoreContract):
    def open(self) -> EventStore:
        return open_store("memory://")


class SharedStoreContract(StoreContract):
    """What a store that several processes open at once (a file, a database) adds."""

    @pytest.mark.unverifiable("run-1")  # cut mid-turn on purpose
    def test_two_writers_on_one_store_conflict(self) -> None:
        """Two stores opened on one file or database: the second append at the same seq
        fails inside the insert's transaction, leaving the first writer's events as
        they were."""
        log = recorded_run()
        with self.open() as a, self.open() as b:
            a.append("run-1", log[:2], 0)
            b_seen = b.last_seq("run-1")
            a.append("run-1", log[2:4], 2)
            with pytest.raises(ConcurrencyConflictError):
                b.append("run-1", log[2:3], b_seen)
            assert b.read("run-1") == log[:4]


class TestSQLiteStore(SharedStoreContract):
    @pytest.fixture(autouse=True)
    def _path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "nested" / "baton.db"

    def open(self) -> EventStore:
        return open_store(f"sqlite:///{self.path}")

    def test_a_reopened_file_yields_the_same_events(self) -> None:
        """Close the store, open the file again: the same events, the same digest."""
        log = recorded_run()
        with self.open() as store:
            store.append("run-1", log, 0)
            digest = store.state("run-1").digest
        with self.open() as again:
            assert again.read("run-1") == log
            assert again.state("run-1").digest == digest

    def test_a_store_an_older_baton_made_builds_todays_index_from_its_logs(self) -> None:
        """An index of an older shape (no parent column) is left aside: today's is built
        from the logs, so a child recorded before lists its parent."""
        link = ParentLink(run_id="top", assignment_id="a#1")
        with self.open() as store:
            store.append("top.a-1", recorded_run("top.a-1", link), 0)
            assert [r.parent for r in store.runs()] == ["top"]
        with sqlite3.connect(self.path) as db:  # as an older Baton left it
            db.execute(f"DROP TABLE {TABLE}")
            db.execute("DELETE FROM tracking WHERE application_name = ?", (TRACKED_AS,))
            db.execute("CREATE TABLE baton_runs (run_id TEXT PRIMARY KEY, goal TEXT)")
        with self.open() as store:
            assert [(r.run_id, r.parent, r.status) for r in store.runs()] == [
                ("top.a-1", "top", "completed")]

    @pytest.mark.unverifiable("run-1")  # cut mid-turn or broken on purpose
    def test_an_edited_event_is_caught_by_the_digest_chain(self) -> None:
        """A plausible edit made with sqlite3 reads fine but fails the fold, at its seq."""
        log = recorded_run()
        with self.open() as store:
            store.append("run-1", log, 0)
        with sqlite3.connect(self.path) as db:
            (state,) = db.execute("SELECT state FROM stored_events WHERE originator_version=3"
                                  ).fetchone()
            db.execute("UPDATE stored_events SET state=? WHERE originator_version=3",
                       (state.replace(b'"handler":"h"', b'"handler":"h" '),))
        with self.open() as store:
            store.read("run-1")  # every record is still well-formed
            with pytest.raises(BadLogError,
                               match=r"at seq 5: ResultValidated .* edited or reordered"):
                store.state("run-1")


class TestPostgresStore(SharedStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, postgres_url: str) -> None:
        self.url = postgres_url

    def open(self) -> EventStore:
        return open_store(self.url)

    @pytest.mark.unverifiable("big")  # bytes that are not events, on purpose
    def test_a_batch_of_many_megabytes_is_written(self) -> None:
        """A batch of 24 MB (a plan of many thousand tasks) is written in one go; the
        library's pipelined insert stalled on such a batch for good."""
        batch = [StoredEvent("big", seq, "X", bytes([seq]) * 8_000_000) for seq in (1, 2, 3)]
        with self.open() as store:
            writing = threading.Thread(target=store.recorder.insert_events, args=(batch,),
                                       daemon=True)
            writing.start()
            writing.join(timeout=60)
            assert not writing.is_alive(), "the insert stalled"
            assert store.last_seq("big") == 3

    @pytest.mark.unverifiable("run-1", "run-2")  # bytes that are not events, on purpose
    def test_no_append_leaves_a_lock_held(self) -> None:
        """An append takes its notification ids under a lock of its session, released
        before the commit; whether the append commits, conflicts or clashes, no lock
        outlives it (one left held would stop every writer to the store)."""
        with self.open() as store:
            recorder = store.recorder
            recorder.insert_events([StoredEvent("run-1", 1, "X", b"1")], expected_last_seq=0)
            with pytest.raises(ConcurrencyConflictError):
                recorder.insert_events([StoredEvent("run-1", 1, "X", b"2")],
                                       expected_last_seq=0)
            with pytest.raises(IntegrityError):  # no expected seq: the key itself refuses
                recorder.insert_events([StoredEvent("run-1", 1, "X", b"3")])
            with recorder.datastore.get_connection() as conn:
                held = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database "
                    "= (SELECT oid FROM pg_database WHERE datname = current_database())"
                ).fetchone()
            assert held is not None and list(held.values()) == [0]
            with self.open() as other:  # and a writer in another session goes through
                other.recorder.insert_events([StoredEvent("run-2", 1, "X", b"4")],
                                             expected_last_seq=0)
            notes = recorder.select_notifications(0, 10)
            assert [(n.originator_id, n.state) for n in notes] == [("run-1", b"1"),
                                                                   ("run-2", b"4")]

    @pytest.mark.unverifiable("slow", "quick")  # bytes that are not events, on purpose
    @pytest.mark.parametrize("read", [
        pytest.param(lambda recorder: recorder.select_notifications(0, 10), id="notifications"),
        pytest.param(lambda recorder: recorder.index_page(0, 10), id="runs-index"),
    ])
    def test_runs_write_at_once_and_a_reader_waits_for_an_insert_in_flight(
            self, read: Callable[[Any], list[Any]]) -> None:
        """One run's insert, still uncommitted, holds up no other run's. A reader of the
        store-wide order waits for it rather than read past its position: the ids are
        issued in one order and committed in another, and a reader that resumed after
        the later id would never see the earlier one's events."""
        with self.open() as store, _held_open(store, StoredEvent("slow", 1, "X", b"1")) as release:
            recorder = store.recorder
            quick = threading.Thread(target=recorder.insert_events,
                                     args=([StoredEvent("quick", 1, "X", b"2")],))
            quick.start()
            quick.join(timeout=10)
            assert not quick.is_alive(), "one run's open insert held up another run's"
            seen: list[Any] = []
            reader = threading.Thread(target=lambda: seen.extend(read(recorder)))
            reader.start()
            reader.join(timeout=0.5)
            assert reader.is_alive() and not seen, "the reader read past an insert in flight"
            release()
            reader.join(timeout=10)
            assert [n.originator_id for n in seen] == ["slow", "quick"]

    @pytest.mark.unverifiable("run-1")  # bytes that are not events, on purpose
    def test_a_second_writer_to_a_run_waits_then_conflicts(self) -> None:
        """Two writers appending to one run at the same moment: the second waits for the
        first to commit, then is refused with the concurrency error, not a key clash."""
        with self.open() as store:
            with _held_open(store, StoredEvent("run-1", 1, "X", b"1")) as release:
                errors: list[BaseException] = []

                def second() -> None:
                    try:
                        store.recorder.insert_events([StoredEvent("run-1", 1, "X", b"2")],
                                                     expected_last_seq=0)
                    except BaseException as error:
                        errors.append(error)

                writer = threading.Thread(target=second)
                writer.start()
                writer.join(timeout=0.5)
                assert writer.is_alive(), "the second writer did not wait for the first"
                release()
                writer.join(timeout=10)
            assert len(errors) == 1 and isinstance(errors[0], ConcurrencyConflictError)
            assert [e.state for e in store.recorder.select_events("run-1")] == [b"1"]


@contextmanager
def _held_open(store: EventStore, event: StoredEvent) -> Iterator[Callable[[], None]]:
    """An insert of `event` made and left uncommitted in another thread until the
    caller calls what this yields (or leaves the block); then it commits."""
    recorder = store.recorder
    inserted, released = threading.Event(), threading.Event()

    def insert() -> None:
        with (recorder.datastore.get_connection() as conn, conn.transaction(),
              conn.cursor() as curs):
            recorder.append(curs, [event], 0)
            inserted.set()
            released.wait(timeout=30)

    holder = threading.Thread(target=insert)
    holder.start()
    assert inserted.wait(timeout=10), "the held insert was never made"
    try:
        yield released.set
    finally:
        released.set()
        holder.join(timeout=10)
