"""How a run stands for a reader: its log's status, made true by its coordinator's last
heartbeat (or the lack of one)."""

from __future__ import annotations

import pytest

from baton import open_store
from baton.events.store.heartbeats import STALE_AFTER_S, Heartbeat, standing

NOW = 1_000_000.0
FRESH, STALE = NOW - 1, NOW - STALE_AFTER_S - 1


def beat(phase: str, at: float) -> Heartbeat:
    return Heartbeat("r", at, phase, 3, 1, "pid 1 on here")


@pytest.mark.parametrize(("status", "last", "exact", "shown"), [
    ("completed", beat("running", STALE), True, "completed"),
    ("failed", None, False, "failed"),
    ("waiting", None, True, "waiting"),
    ("running", beat("running", FRESH), True, "running"),
    ("running", beat("running", STALE), True, "stalled"),
    ("running", None, True, "stalled"),
    ("running", beat("stopped", FRESH), True, "stalled"),
    ("running", beat("queued", FRESH), True, "queued"),
    ("running", beat("queued", STALE), True, "stalled"),
    # The log says running though the coordinator last saw it wait: an answer (or a
    # cancel) waits to be taken up, by a live coordinator or by `baton resume`.
    ("running", beat("waiting", FRESH), True, "running"),
    ("running", beat("waiting", STALE), True, "stalled"),
    # The runs index knows only that the run has not ended.
    ("running", beat("waiting", STALE), False, "waiting"),
    ("running", beat("running", FRESH), False, "running"),
    ("running", None, False, "stalled"),
])
def test_a_run_stands_as_its_log_and_its_last_heartbeat_say(
    status: str, last: Heartbeat | None, exact: bool, shown: str
) -> None:
    assert standing(status, last, NOW, exact=exact) == shown


def test_a_beat_replaces_the_last_and_is_read_back(durable_store_url: str) -> None:
    """One row a run, the latest beat's: on SQLite, on PostgreSQL, in memory."""
    for url in (durable_store_url, "memory://"):
        with open_store(url) as store:
            store.beat(beat("running", FRESH))
            store.beat(beat("waiting", NOW))
            assert store.heartbeats() == {"r": beat("waiting", NOW)}
