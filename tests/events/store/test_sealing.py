"""Encryption at rest: with BATON_ENCRYPTION_KEY set, nothing a run records can be read
from the store's files or tables without the key; with it, everything reads as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from typer.testing import CliRunner

from baton import BadLogError, EncryptionKeyError, open_store
from baton.cli import app
from baton.events.store import EventStore
from baton.events.store.index import TABLE
from baton.events.store.sealing import KEY_ENV, new_key
from baton.replay import verify
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers

SECRET = "the-quarterly-numbers-4711"
RUN = "sealed"


def secret_run() -> Scenario:
    run = Scenario([counting("a", inputs={"note": SECRET})], handlers("h"), run_id=RUN,
                   goal=f"report {SECRET}")
    run.succeed("a#1", {"count": 1, "said": SECRET})
    return run


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh key, set in the environment for the test's own code."""
    with monkeypatch.context() as patched:
        value = new_key()
        patched.setenv(KEY_ENV, value)
        yield value


def record(url: str) -> None:
    """A run with SECRET in its goal, inputs, output and reasons, and a snapshot."""
    run = secret_run()
    with open_store(url) as store:
        store.append(RUN, run.log, 0)
        store.save_snapshot(store.state(RUN))
        assert store.runs()[0].goal == f"report {SECRET}"  # the index, sealed too


def reads_back(url: str) -> None:
    with open_store(url) as store:
        assert store.read(RUN) == secret_run().log
        assert store.state(RUN).output == {"a": {"count": 1, "said": SECRET}}
        assert verify(store, RUN, None).reproduced


def cli(url: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, [*args, "--store", url])
    return done.exit_code, done.output


@pytest.mark.unverifiable(RUN)  # verified here, with the key
def test_a_sealed_sqlite_store_holds_nothing_readable(tmp_path: Path, key: str) -> None:
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    record(url)
    reads_back(url)
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert SECRET.encode() not in raw
    assert b'"count"' not in raw and b"plan.initial" not in raw  # bodies and reasons
    assert RUN.encode() in raw and b"ResultReceived" in raw  # what the store indexes
    code, shown = cli(url, "log", RUN)
    assert code == 0 and SECRET in shown


@pytest.mark.unverifiable(RUN)
def test_a_sealed_postgres_store_holds_nothing_readable(postgres_url: str, key: str) -> None:
    record(postgres_url)
    reads_back(postgres_url)
    schema = parse_qs(urlparse(postgres_url).query)["schema"][0]
    server = postgres_url.split("?")[0]
    with psycopg.connect(server) as db:
        tables = [name for (name,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))]
        dumped = "".join(str(db.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
                         for table in tables)
    assert TABLE in tables and "stored_events" in tables
    assert SECRET not in dumped and SECRET.encode().hex() not in dumped


@pytest.mark.unverifiable(RUN)
@pytest.mark.parametrize("command", [["log", RUN], ["show", RUN], ["replay", RUN, "--verify"],
                                     ["status", RUN], ["trace", RUN, "a"], ["runs"]])
def test_reading_without_the_key_or_with_another_is_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    with monkeypatch.context() as patched:
        patched.setenv(KEY_ENV, new_key())
        record(url)
    code, shown = cli(url, *command)
    assert code == 2, shown
    assert f"is encrypted: set {KEY_ENV}" in shown and len(shown.strip().splitlines()) == 1
    assert SECRET not in shown and "Traceback" not in shown
    monkeypatch.setenv(KEY_ENV, new_key())
    code, shown = cli(url, *command)
    assert code == 2, shown
    assert f"another key than the {KEY_ENV} set here" in shown
    assert len(shown.strip().splitlines()) == 1


def test_a_key_that_is_not_one_is_refused_before_anything_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "hunter2")
    code, shown = cli(f"sqlite:///{tmp_path / 'baton.db'}", "runs")
    assert code == 2 and f"{KEY_ENV} is not a key baton can use" in shown
    with pytest.raises(EncryptionKeyError):
        open_store("memory://")


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_key_is_refused_never_taken_for_no_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: str) -> None:
    """BATON_ENCRYPTION_KEY= (a failed `$(...)`) is exit 2 saying so, before anything is
    opened: a store meant to be sealed is never written in the clear."""
    monkeypatch.setenv(KEY_ENV, empty)
    code, shown = cli(f"sqlite:///{tmp_path / 'baton.db'}", "runs")
    assert code == 2 and f"{KEY_ENV} is set but empty" in shown
    assert not (tmp_path / "baton.db").exists()
    with pytest.raises(EncryptionKeyError):
        open_store("memory://")


@pytest.mark.unverifiable(RUN)
def test_a_sealed_record_edited_in_the_store_is_a_bad_log(tmp_path: Path, key: str) -> None:
    """The right key, a record that does not authenticate: damage, named at its seq."""
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    record(url)
    with open_store(url) as store:
        stored = store.recorder.select_events(RUN)
        damaged = bytearray(stored[2].state)
        damaged[-1] ^= 1
        _replace_record(store, StoredEvent(RUN, 3, stored[2].topic, bytes(damaged)))
        with pytest.raises(BadLogError, match=r"run 'sealed' at seq 3: encrypted record does "
                                              r"not authenticate"):
            store.read(RUN)
    code, shown = cli(url, "log", RUN)
    assert code == 1 and "seq 3" in shown


def test_keygen_prints_a_key_a_store_takes(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    done = CliRunner().invoke(app, ["keygen"])
    assert done.exit_code == 0
    made = done.stdout.strip().splitlines()[0]
    monkeypatch.setenv(KEY_ENV, made)
    with open_store("memory://") as store:
        assert store.mapper.sealer.sealing


def _replace_record(store: EventStore, stored: StoredEvent) -> None:
    """Overwrite one record in a SQLite store, as someone with the file could."""
    datastore = store.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=True) as c:
        c.execute("UPDATE stored_events SET state = ? WHERE originator_id = ? "
                  "AND originator_version = ?",
                  (stored.state, stored.originator_id, stored.originator_version))


@pytest.mark.unverifiable(RUN)
def test_with_a_key_set_a_record_not_sealed_is_refused(tmp_path: Path, key: str) -> None:
    """Someone with write access but no key adds a plain record to a sealed run: it is
    not taken for the run's own."""
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    record(url)
    with open_store(url) as store:
        forged = b'{"run_id":"sealed","seq":9,"type":"CancelRequested","note":"x"}'
        store.recorder.insert_events([StoredEvent(RUN, len(secret_run().log) + 1,
                                                  "CancelRequested", forged)])
        with pytest.raises(BadLogError, match="is not encrypted, though BATON_ENCRYPTION_KEY "
                                              "is set"):
            store.read(RUN)


def test_a_plain_goal_that_starts_like_a_sealed_one_is_listed_as_it_is() -> None:
    run = Scenario([counting("a")], handlers("h"), run_id="plain", goal="sealed:abcd")
    with open_store("memory://") as store:
        store.append("plain", run.log, 0)
        assert store.runs()[0].goal == "sealed:abcd"
