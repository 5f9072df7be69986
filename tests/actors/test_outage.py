"""Waiting out a store that fails: a turn stored once whatever the store's errors did,
and a fault that does not pass ends in a StoreFaultError naming the seq and the resume."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from baton import StoreFaultError, open_store
from baton.actors.outage import Patience
from baton.events.store import EventStore
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers

RUN = "outage"


def sqlite_error(message: str) -> OperationalError:
    """What the eventsourcing library raises over SQLite: its error, SQLite's behind it."""
    try:
        raise sqlite3.OperationalError(message)
    except sqlite3.OperationalError as cause:
        try:
            raise OperationalError(message) from cause
        except OperationalError as error:
            return error


def a_turn() -> tuple[list[Any], list[Any]]:
    """A run's first turn and its second."""
    run = Scenario([counting("a"), counting("b")], handlers("h"), run_id=RUN)
    first = list(run.log)
    run.succeed("a#1", {"count": 1})
    return first, run.log[len(first):]


def failing(store: EventStore, errors: list[BaseException], *, commit: bool) -> None:
    """The store's next appends raise these errors, having committed first if `commit`."""
    append = store.append

    def flaky(*args: Any, **kwargs: Any) -> None:
        if errors:
            if commit:
                append(*args, **kwargs)
            raise errors.pop(0)
        append(*args, **kwargs)

    store.append = flaky  # type: ignore[method-assign]


def patience(pauses: list[float], patience_s: float = 60.0) -> Patience:
    return Patience("sqlite:///test.db", RUN, patience_s, sleep=pauses.append)


@pytest.mark.parametrize("commit", [True, False], ids=["committed unseen", "not committed"])
def test_a_turn_is_stored_once_whatever_its_failed_tries_did(commit: bool) -> None:
    """A try that failed with a passing error may have committed: the next try reads the
    last seq first, so the turn is in the log once, with no gap, either way."""
    first, second = a_turn()
    with open_store("memory://") as store:
        store.append(RUN, first, 0)
        failing(store, [sqlite_error("database is locked")] * 2, commit=commit)
        pauses: list[float] = []
        patience(pauses).append(store, second, len(first))
        assert [e.seq for e in store.read(RUN)] == list(range(1, len(first) + len(second) + 1))
    assert pauses == ([0.25] if commit else [0.25, 0.5])


def test_the_outage_is_there_to_report_while_it_lasts_and_gone_after() -> None:
    """While the store fails, `outage` says since when and why; once a try succeeds, it
    is cleared."""
    first, _ = a_turn()
    seen: list[Any] = []
    waiting = Patience("sqlite:///test.db", RUN, 60.0, sleep=lambda s: seen.append(
        waiting.outage))
    with open_store("memory://") as store:
        failing(store, [sqlite_error("database is locked")], commit=False)
        waiting.append(store, first, 0)
    [outage] = seen
    assert outage.cause == "database is locked" and outage.since > 0
    assert waiting.outage is None


@pytest.mark.parametrize("make", [
    lambda: sqlite_error("database or disk is full"),
    lambda: sqlite_error("attempt to write a readonly database"),
], ids=["disk full", "read-only"])
def test_a_fault_that_does_not_pass_ends_at_once_naming_the_seq_and_the_resume(
    make: Callable[[], BaseException],
) -> None:
    """No waiting for a full disk: one StoreFaultError, saying how far the run is recorded."""
    first, second = a_turn()
    with open_store("memory://") as store:
        store.append(RUN, first, 0)
        failing(store, [make()], commit=False)
        pauses: list[float] = []
        with pytest.raises(StoreFaultError) as raised:
            patience(pauses).append(store, second, len(first))
    assert pauses == []
    message = str(raised.value)
    assert message.startswith("store sqlite:///test.db: ")
    assert f"recorded up to seq {len(first)}" in message
    assert f"`baton resume {RUN}` continues it" in message


def test_an_outage_longer_than_the_patience_ends_in_a_store_fault() -> None:
    """A store that never comes back is waited for as long as the patience, then the
    run stops, saying how long it waited."""
    first, _ = a_turn()
    with open_store("memory://") as store:
        failing(store, [sqlite_error("database is locked")] * 1000, commit=False)
        with pytest.raises(StoreFaultError, match=r"unreachable for 0s, the run's patience "
                                                  r"\(database is locked\)"):
            patience([], patience_s=0.0).append(store, first, 0)
        assert store.last_seq(RUN) == 0


def test_a_first_try_whose_commit_lands_late_is_not_taken_for_another_writer() -> None:
    """The first try's commit lands after the retry read the log (the server was still
    committing when the connection was cut): the retry's append conflicts with it, and
    the turn, stored once, is taken as stored."""
    first, second = a_turn()
    with open_store("memory://") as store:
        store.append(RUN, first, 0)
        append = store.append
        calls: list[int] = []

        def late(*args: Any, **kwargs: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise sqlite_error("database is locked")
            if len(calls) == 2:
                append(*args, **kwargs)  # the first try's commit, landing now
            append(*args, **kwargs)

        store.append = late  # type: ignore[method-assign]
        patience([]).append(store, second, len(first))
        assert [e.seq for e in store.read(RUN)] == list(range(1, len(first) + len(second) + 1))
