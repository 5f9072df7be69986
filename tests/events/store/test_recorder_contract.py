"""The eventsourcing library's own recorder contract, run against every Baton recorder:
the application recorder cases (insert, select, notifications, concurrency) on the log
recorders of memory://, sqlite:/// and postgresql:// stores, and the tracking recorder
cases on each store's runs index, and the non-interleaving case (two concurrent
inserts' notification ids do not mingle) on each log recorder.

Baton keys a run's stream by its run id, a string, so the cases make string ids.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import eventsourcing.tests.persistence as contract
import pytest

from baton.events.store import EventStore, open_store


class _Stores:
    """Opens the case's stores and closes them after it; a store's URL is set on the
    case by the fixture of its kind."""

    url: str
    opened: list[EventStore]

    def new_originator_id(self) -> str:
        return f"run-{uuid.uuid4().hex}"

    def store(self) -> EventStore:
        store = open_store(self.url)
        self.opened.append(store)
        return store


def _closed_after_its_readers(opened: list[EventStore], before: set[threading.Thread]) -> None:
    # The library's concurrency cases tell their reader threads to stop but do not wait
    # for them: a connection closed under a reader's query can crash SQLite's driver.
    for thread in set(threading.enumerate()) - before:
        if "read_continuously" in thread.name:  # (a thread is named for its target)
            thread.join(timeout=30)
    for store in opened:
        store.close()


@pytest.fixture
def sqlite_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[None]:
    request.instance.url, request.instance.opened = f"sqlite:///{tmp_path}/c.db", []
    before = set(threading.enumerate())
    yield
    _closed_after_its_readers(request.instance.opened, before)


@pytest.fixture
def memory_store(request: pytest.FixtureRequest) -> Iterator[None]:
    request.instance.url, request.instance.opened = "memory://", []
    yield


@pytest.fixture
def postgres_store(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[None]:
    request.instance.url, request.instance.opened = postgres_url, []
    before = set(threading.enumerate())
    yield
    _closed_after_its_readers(request.instance.opened, before)


@pytest.mark.usefixtures("memory_store")
class TestMemoryLog(_Stores, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().recorder


@pytest.mark.usefixtures("sqlite_store")
class TestSQLiteLog(_Stores, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().recorder


@pytest.mark.usefixtures("postgres_store")
class TestPostgresLog(_Stores, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().recorder


@pytest.mark.usefixtures("memory_store")
class TestMemoryRunsIndex(_Stores, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().index.view


@pytest.mark.usefixtures("sqlite_store")
class TestSQLiteRunsIndex(_Stores, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().index.view


@pytest.mark.usefixtures("postgres_store")
class TestPostgresRunsIndex(_Stores, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> Any:
        return self.store().index.view


@pytest.mark.usefixtures("memory_store")
class TestMemoryNotificationOrder(_Stores,
                                  contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> Any:
        return self.store().recorder


@pytest.mark.usefixtures("sqlite_store")
class TestSQLiteNotificationOrder(_Stores,
                                  contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> Any:
        return self.store().recorder


@pytest.mark.usefixtures("postgres_store")
class TestPostgresNotificationOrder(_Stores, contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> Any:
        return self.store().recorder
