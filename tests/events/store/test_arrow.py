"""A log as an Arrow table: the columns read out of each record."""

from __future__ import annotations

import sqlite3
from itertools import cycle

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from eventsourcing import persistence

from baton import HandlerInfo, Task, Usage, open_store
from baton.events.errors import BadLogError, EncryptionKeyError
from baton.events.schema import ENDINGS, Envelope, WorkerStuck
from baton.events.store import EventStore, arrow, chunks, restore
from baton.events.store.sealing import KEY_ENV, MARKER, new_key
from baton.testing import Scenario
from tests.events.store.test_hostile import recorded_run
from tests.fixtures.golden import every_event_type


def test_decisions_at_the_start_of_a_page_carry_their_stimulus_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A long log is read in pages; a decision whose stimulus ended the page before
    still has its time, so the export is what the whole log says and imports again."""
    monkeypatch.setattr(arrow, "PAGE", 4)
    with open_store("memory://") as store:
        run = Scenario([Task(id=t, capability="c") for t in "abc"],
                       [HandlerInfo(name="h", capabilities=("c",))], store=store, at=1.0)
        run.succeed("a#1", {}, at=2.0)  # seq 6; its ResultValidated starts page 2
        run.succeed("b#1", {}, at=3.0)
        rows = arrow.table(store, [run.run_id])
        assert rows.column("recorded_at").to_pylist() == [
            1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        restore.check(run.run_id, rows, store)


def _runs() -> list[tuple[str, list[Envelope]]]:
    """Every kind of run the tests make: completed, cancelled after an escalation,
    forked, with a stuck worker, with a failure and its retry; and one whose stimuli
    carry times, which the decisions after each take."""
    tasks = ["a", "b", "c", "d"]
    timed = Scenario([Task(id=t, capability="c") for t in tasks],
                     [HandlerInfo(name="h", capabilities=("c",))], run_id="timed", at=1.0)
    for at, task in enumerate(tasks, start=2):
        timed.succeed(f"{task}#1", {}, at=float(at))
    spent = Scenario([Task(id=t, capability="c") for t in tasks],
                     [HandlerInfo(name="h", capabilities=("c",))], run_id="spent", at=1.0)
    spent.succeed("a#1", {}, usage=Usage(model="openai:gpt-4o", requests=2,
                                          input_tokens=1200, output_tokens=80,
                                          cost_usd=0.0038))
    spent.succeed("b#1", {}, usage=Usage(model='acme:"quoted"', input_tokens=5))
    spent.fail("c#1", "no", usage=Usage(model="test", requests=1, output_tokens=7))
    spent.succeed("c#2", {}, usage=Usage())
    spent.succeed("d#1", {})
    return [*((run.run_id, run.log) for run in every_event_type()),
            ("retried", recorded_run("retried")), ("timed", timed.log),
            ("spent", spent.log)]


def _appended_as_a_coordinator_would(store: EventStore) -> list[str]:
    """The runs appended one, two or four events a turn, as a coordinator appends."""
    for run_id, log in _runs():
        start = 0
        for size in cycle((1, 2, 4)):
            if start >= len(log):
                break
            store.append(run_id, log[start:start + size], start)
            start += size
    return [run_id for run_id, _ in _runs()]


def _derived_from_the_log(store: EventStore, run_ids: list[str]) -> pa.Table:
    """The runs' rows with every column derived from the events' bytes."""
    store.column_chunks = lambda run_id: []  # type: ignore[method-assign]
    try:
        return arrow.table(store, run_ids)
    finally:
        del store.column_chunks


def _recorded(url: str, *run_ids: str) -> None:
    """A store at `url` holding `recorded_run` under each of `run_ids`."""
    with open_store(url) as store:
        for run_id in run_ids:
            store.append(run_id, recorded_run(run_id), 0)


def _database(url: str) -> sqlite3.Connection:
    """The SQLite file behind `url`, to edit as someone with the file but no Baton."""
    return sqlite3.connect(url.removeprefix("sqlite:///"))


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql"])
def test_the_columns_kept_beside_a_log_are_what_its_events_say(
        kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export and stats read the query columns a store keeps as it appends, a chunk at
    a time; what they read is exactly what deriving them from the events gives."""
    monkeypatch.setattr(chunks, "SIZE", 5)  # chunks end mid-turn and mid-run
    url = {"memory": lambda: "memory://", "sqlite": lambda: request.getfixturevalue(
        "store_url"), "postgresql": lambda: request.getfixturevalue("postgres_url")}[kind]()
    with open_store(url) as store:
        run_ids = _appended_as_a_coordinator_would(store)
        for run_id in run_ids:
            assert store.column_chunks(run_id) or store.last_seq(run_id) < 5, run_id
        expected = _derived_from_the_log(store, run_ids)
        assert arrow.table(store, run_ids).equals(expected)
        for run_id in run_ids:
            mine = expected.filter(pc.equal(expected.column("run_id"), run_id))
            assert arrow.columns(store, run_id).equals(mine.drop_columns(["data", *arrow.LINKED]))


def test_a_lost_or_damaged_chunk_costs_time_never_facts(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are a cache: with one deleted, one damaged, and events appended by a
    second writer that kept none, readers derive what is missing and read the same."""
    monkeypatch.setattr(chunks, "SIZE", 4)
    with open_store(store_url) as store, open_store(store_url) as other:
        run_ids = _appended_as_a_coordinator_would(store)
        log = recorded_run("shared")
        store.append("shared", log[:5], 0)
        other.append("shared", log[5:9], 5, keep_columns=False)  # as an older Baton's
        store.append("shared", log[9:], 9)
        run_ids.append("shared")
    retried = chunks.stream("retried")
    with _database(store_url) as db:
        db.execute(f"DELETE FROM stored_columns WHERE originator_id = '{retried}' "
                   "AND originator_version = 5")
        db.execute("UPDATE stored_columns SET state = x'ffffffff00' WHERE originator_id = "
                   f"'{retried}' AND originator_version = 13")
    with open_store(store_url) as store:
        expected = _derived_from_the_log(store, run_ids)
        assert arrow.table(store, run_ids).equals(expected)
        shared = expected.filter(pc.equal(expected.column("run_id"), "shared"))
        assert arrow.columns(store, "shared").equals(shared.drop_columns(["data", *arrow.LINKED]))


@pytest.mark.unverifiable("retried")  # sealed with the test's own key
def test_a_sealed_store_keeps_its_columns_sealed(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    _recorded(store_url, "retried")
    with open_store(store_url) as store:
        expected = _derived_from_the_log(store, ["retried"])
        assert arrow.table(store, ["retried"]).equals(expected)
        [stored] = store.columns.recorder.select_events(chunks.stream("retried"))
        assert stored.state.startswith(MARKER) and b'"type"' not in stored.state


@pytest.mark.unverifiable("retried")  # the gap is the point
def test_an_export_of_a_log_with_a_gap_names_the_missing_seq(store_url: str) -> None:
    _recorded(store_url, "retried")
    with _database(store_url) as db:
        db.execute("DELETE FROM stored_events WHERE originator_version = 7")
    with open_store(store_url) as store, pytest.raises(BadLogError) as raised:
        arrow.table(store, ["retried"])
    assert raised.value.seq == 8 and "expected seq 7, found 8" in str(raised.value)


@pytest.mark.unverifiable("retried")  # sealed with the test's own key
def test_an_export_of_a_sealed_record_without_the_key_says_to_set_it(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    _recorded(store_url, "retried")
    monkeypatch.delenv(KEY_ENV)
    with open_store(store_url) as store, pytest.raises(EncryptionKeyError) as raised:
        arrow.table(store, ["retried"])
    assert KEY_ENV in str(raised.value)


@pytest.mark.unverifiable("odd")  # stimuli alone, with nothing to decide on
def test_kept_columns_hold_any_text_a_stimulus_can_carry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Commas, quotes, empty text and line breaks in what a person or worker sent read
    back exactly as the events say (a chunk with a line break is left to derive)."""
    monkeypatch.setattr(chunks, "SIZE", 2)
    texts = ['h"x,y', "", 'a,"b', "é ☃", "line\nbreak", "ok", "cr\rhere", '""']
    log = [WorkerStuck(run_id="odd", seq=seq, assignment_id=f"{text}#1", handler=text,
                       recorded_at=seq / 3 if seq % 2 else None)
           for seq, text in enumerate(texts, start=1)]
    with open_store("memory://") as store:
        store.append("odd", log[:4], 0)
        store.append("odd", log[4:], 4)
        assert [first for first, _, _ in store.column_chunks("odd")] == [1]
        expected = _derived_from_the_log(store, ["odd"])
        assert arrow.table(store, ["odd"]).equals(expected)
        assert expected.column("handler").to_pylist() == texts


def test_an_export_parses_each_kept_chunk_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages and chunks do not line up; still, each chunk is parsed once, however many
    pages the export reads (a long run's export would otherwise grow quadratic)."""
    monkeypatch.setattr(chunks, "SIZE", 3)
    monkeypatch.setattr(arrow, "PAGE", 4)
    parsed: list[int] = []
    real = arrow._parsed

    def counting(lines: bytes, rows: int) -> pa.Table | None:
        parsed.append(rows)
        return real(lines, rows)

    monkeypatch.setattr(arrow, "_parsed", counting)
    with open_store("memory://") as store:
        _appended_as_a_coordinator_would(store)
        kept = sum(rows for _, rows, _ in store.column_chunks("retried"))
        arrow.table(store, ["retried"])
    assert kept > 8 and sum(parsed) == kept


def test_a_chunk_copied_to_another_run_is_not_read(store_url: str) -> None:
    """A chunk names the run and seq it was written for; filed under another, it is
    ignored and that run's columns are derived from its own events."""
    _recorded(store_url, "retried", "other")
    with open_store(store_url) as store:
        expected = _derived_from_the_log(store, ["other"])
    with _database(store_url) as db:
        other, retried = chunks.stream("other"), chunks.stream("retried")
        db.execute(f"DELETE FROM stored_columns WHERE originator_id = '{other}'")
        db.execute(f"INSERT INTO stored_columns SELECT '{other}', originator_version, topic, "
                   f"state FROM stored_columns WHERE originator_id = '{retried}'")
    with open_store(store_url) as store:
        assert store.column_chunks("other") == []
        assert arrow.table(store, ["other"]).equals(expected)


def test_keeping_columns_never_fails_an_append(store_url: str) -> None:
    """The events are what counts: a database that refuses a chunk loses the chunk."""
    with open_store(store_url) as store:
        def refuse(*args: object, **kwargs: object) -> None:
            raise persistence.OperationalError("database is locked")

        store.columns.recorder.insert_events = refuse  # type: ignore[method-assign]
        store.append("retried", recorded_run("retried"), 0)
        assert store.read("retried") == recorded_run("retried")
        assert store.column_chunks("retried") == []


def test_a_page_too_large_to_pack_is_read_as_rows(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _recorded(store_url, "retried")
    with open_store(store_url) as store:
        expected = arrow.table(store, ["retried"])

        def too_big(*args: object) -> None:
            raise persistence.DataError("string or blob too big")

        monkeypatch.setattr(store.recorder, "packed_page", too_big)
        assert arrow.table(store, ["retried"]).equals(expected)


@pytest.mark.unverifiable("odd")  # a stimulus alone, with nothing to decide on
def test_a_time_json_cannot_hold_is_null_in_the_kept_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON has no infinity: the event's bytes say null, and so do its columns."""
    monkeypatch.setattr(chunks, "SIZE", 1)
    with open_store("memory://") as store:
        store.append("odd", [WorkerStuck(run_id="odd", seq=1, assignment_id="a#1",
                                         handler="h", recorded_at=float("inf"))], 0)
        assert store.column_chunks("odd")
        rows = arrow.table(store, ["odd"])
        assert rows.equals(_derived_from_the_log(store, ["odd"]))
        assert rows.column("recorded_at").to_pylist() == [None]


@pytest.mark.unverifiable("retried")  # a record is damaged on purpose
def test_reading_a_sealed_log_opens_each_record_only_when_it_is_reached(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    _recorded(store_url, "retried")
    with _database(store_url) as db:
        [sealed] = db.execute("SELECT state FROM stored_events WHERE "
                              "originator_version = 12").fetchone()
        db.execute("UPDATE stored_events SET state = ? WHERE originator_version = 12",
                   (sealed[:-1] + bytes([sealed[-1] ^ 1]),))
    with open_store(store_url) as store:
        assert next(store.read_raw("retried")).seq == 1
        with pytest.raises(BadLogError) as raised:
            list(store.read_raw("retried"))
        assert raised.value.seq == 12


@pytest.mark.unverifiable("plain")  # a sealed record put into a plain log
def test_a_sealed_record_among_plain_ones_is_refused_even_beside_an_empty_one(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    _recorded(store_url, "sealed")
    monkeypatch.delenv(KEY_ENV)
    _recorded(store_url, "plain")
    with _database(store_url) as db:
        [sealed] = db.execute("SELECT state FROM stored_events WHERE originator_id = "
                              "'sealed' AND originator_version = 5").fetchone()
        db.execute("UPDATE stored_events SET state = ? WHERE originator_id = 'plain' "
                   "AND originator_version = 5", (sealed,))
        db.execute("UPDATE stored_events SET state = x'' WHERE originator_id = 'plain' "
                   "AND originator_version = 3")
    with open_store(store_url) as store:
        with pytest.raises(EncryptionKeyError):
            arrow.table(store, ["plain"])
        with pytest.raises(EncryptionKeyError):
            list(store.read_pages("plain"))


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql"])
def test_a_reader_keeps_the_columns_no_writer_kept_once_a_run_has_ended(
        kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs appended without their columns (as an import or an older Baton appends),
    or with a writer that kept only some: once a run has ended, the first `baton stats`
    keeps what it derived as chunks, and the next reads them, to the same answer and
    deriving nothing. A run still going is left to its writer."""
    monkeypatch.setattr(chunks, "SIZE", 5)
    url = {"memory": lambda: "memory://", "sqlite": lambda: request.getfixturevalue(
        "store_url"), "postgresql": lambda: request.getfixturevalue("postgres_url")}[kind]()
    with open_store(url) as store:
        run_ids = []
        for run_id, log in _runs():
            kept_by_writer = 7 if run_id == "retried" else 0
            store.append(run_id, log[:kept_by_writer], 0)
            store.append(run_id, log[kept_by_writer:], kept_by_writer, keep_columns=False)
            run_ids.append(run_id)
        store.append("going", recorded_run("going")[:4], 0, keep_columns=False)
        run_ids.append("going")
        expected = _derived_from_the_log(store, run_ids)
        first_read = {run_id: arrow.columns(store, run_id) for run_id in run_ids}
        for run_id in run_ids:
            last = store.last_event(run_id)
            covered = sum(rows for _, rows, _ in store.column_chunks(run_id))
            ended = last is not None and last.type in ENDINGS
            assert covered == (last.seq if ended else 0), run_id

        def derived(*args: object, **kwargs: object) -> pa.Table:
            raise AssertionError("derived again what a reader had kept")

        ended_ids = [r for r in run_ids if (e := store.last_event(r)) and e.type in ENDINGS]
        assert ended_ids and "going" not in ended_ids
        with monkeypatch.context() as patched:
            patched.setattr(arrow, "derive", derived)
            for run_id in ended_ids:
                assert arrow.columns(store, run_id).equals(first_read[run_id])
        assert arrow.table(store, run_ids).equals(expected)


def test_a_reader_that_may_not_write_reads_the_same_and_asks_once(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader whose store refuses the chunks it would keep (it may only read) reads
    the same columns, and does not ask again for each piece."""
    monkeypatch.setattr(chunks, "SIZE", 3)
    with open_store(store_url) as store:
        store.append("retried", recorded_run("retried"), 0, keep_columns=False)
        expected = _derived_from_the_log(store, ["retried"]).drop_columns(["data", *arrow.LINKED])
        asked: list[int] = []

        def refuse(*args: object, **kwargs: object) -> None:
            asked.append(1)
            raise persistence.OperationalError("attempt to write a readonly database")

        store.columns.recorder.insert_events = refuse  # type: ignore[method-assign]
        assert arrow.columns(store, "retried").equals(expected)
        assert asked == [1] and store.column_chunks("retried") == []


def test_chunks_of_an_older_layout_are_passed_over_and_hold_no_place(store_url: str) -> None:
    """A store written by a Baton whose chunks had another layout: they are not read, and
    a reader keeps chunks of this layout beside them, to the same columns."""
    with open_store(store_url) as store:
        store.append("retried", recorded_run("retried"), 0, keep_columns=False)
        expected = _derived_from_the_log(store, ["retried"]).drop_columns(["data", *arrow.LINKED])
        store.columns.recorder.insert_events([persistence.StoredEvent(
            "retried", 1, "baton.columns:csv1", b"baton.columns:csv1 retried 1\nold")])
        assert store.column_chunks("retried") == []
        assert arrow.columns(store, "retried").equals(expected)
        assert sum(rows for _, rows, _ in store.column_chunks("retried")) == len(
            recorded_run("retried"))
        assert arrow.columns(store, "retried").equals(expected)
