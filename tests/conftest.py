"""Shared fixtures. One local Ray cluster for the whole run, started only by tests that
ask for it (pure tests never start Ray)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray with 2 CPUs; workers can import `tests.*` like the test process."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",  # its own, even beside a cluster `ray start` keeps on this machine
        num_cpus=2,
        namespace="baton",
        include_dashboard=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.call_failed = report.failed  # type: ignore[attr-defined]
    return report


@pytest.fixture(autouse=True)
def every_run_verified(request: pytest.FixtureRequest,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """After each test, replay every run in every store the test opened and require that
    each decision is reproduced (invariant 7), with the policy the run recorded; and
    that its ledger read from the timeline at many seqs is the one its log folds to."""
    from baton.events.errors import EncryptionKeyError
    from baton.events.store import EventStore, open_store
    from baton.replay import verify
    from tests.moments import assert_moments_match

    opened: list[EventStore] = []
    original = EventStore.__init__

    def tracked(self: EventStore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(EventStore, "__init__", tracked)
    yield
    monkeypatch.undo()
    if getattr(request.node, "call_failed", False):
        return  # the test's own failure says more
    skipped = {run for mark in request.node.iter_markers("unverifiable") for run in mark.args}
    mark = request.node.get_closest_marker("replay_with")
    policy = mark.args[0] if mark else None
    seen: set[object] = set()
    for store in opened:
        # One SQLite file or database may be opened many times; each memory store is its
        # own.
        shared = not store.url.startswith("memory")
        key = store.url if shared else id(store)
        if key in seen:
            continue
        seen.add(key)
        # A shared store is opened afresh (its writer may have been another process); a
        # memory store lives only in the object the test had.
        with open_store(store.url) if shared else nullcontext(store) as log:
            try:
                listed = log.runs()
            except EncryptionKeyError:
                if skipped:
                    continue  # sealed with the test's own key; the test verifies them
                raise
            for info in listed:
                if info.run_id in skipped:
                    continue
                report = verify(log, info.run_id, policy)
                assert report.reproduced, (
                    f"run {info.run_id} in {store.url} does not replay:\n"
                    + report.divergence.describe())  # type: ignore[union-attr]
                assert_moments_match(log, info.run_id)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store in a temporary directory."""
    return f"sqlite:///{tmp_path / 'baton.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each durable kind: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'baton.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


POSTGRES_HOWTO = ('no PostgreSQL for the tests: run eval "$(.ci/postgres start)" first '
                  "(it sets BATON_TEST_POSTGRES), or set it to a server of your own")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the test PostgreSQL server ($BATON_TEST_POSTGRES). In CI a missing
    server fails the test; elsewhere the test is skipped with how to get one. Schemas the
    tests made are dropped at the end of the session."""
    url = os.environ.get("BATON_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(POSTGRES_HOWTO)
        pytest.skip(POSTGRES_HOWTO)
    yield url
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        for (schema,) in db.execute("SELECT nspname FROM pg_namespace "
                                    "WHERE nspname LIKE 'test\\_%'").fetchall():
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty store on the test PostgreSQL server: a schema of its own."""
    return f"{postgres_server}?schema=test_{secrets.token_hex(6)}"
