"""Following a run's log as it is written.

On PostgreSQL the store tells its readers when something is recorded: the eventsourcing
library's subscription LISTENs on the events table's channel, which every insert
NOTIFYs. SQLite has no such thing, so there the log is polled.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from eventsourcing.persistence import Notification

from ..schema import Event
from .event_store import EventStore
from .urls import POSTGRES_SCHEMES

POLL_S = 0.25  # SQLite: how often the log is read again
_ENDED = object()  # the subscription stopped


def follow(store: EventStore, run_id: str, after: int = 0, *,
           tick_s: float = 1.0) -> Iterator[Event | None]:
    """The run's events after seq `after`, as they are recorded, without end; None when
    `tick_s` passes with nothing new, so the caller can look at the clock or stop."""
    if store.url.partition(":")[0] in POSTGRES_SCHEMES:  # LISTEN/NOTIFY
        yield from _listened(store, run_id, after, tick_s)
    else:
        yield from _polled(store, run_id, after, tick_s)


def _polled(store: EventStore, run_id: str, after: int, tick_s: float) -> Iterator[
        Event | None]:
    quiet = 0.0
    while True:
        events = store.read(run_id, after=after)
        yield from events
        if events:
            after, quiet = events[-1].seq, 0.0
            continue
        threading.Event().wait(POLL_S)
        quiet += POLL_S
        if quiet >= tick_s:
            quiet = 0.0
            yield None


def _listened(store: EventStore, run_id: str, after: int, tick_s: float) -> Iterator[
        Event | None]:
    # Subscribe from the store's current position before reading the log, so nothing
    # recorded in between is missed; what is seen twice is passed over by its seq.
    position = store.max_position()
    yield from (events := store.read(run_id, after=after))
    if events:
        after = events[-1].seq
    arrived: queue.Queue[object] = queue.Queue()
    subscription = store.recorder.subscribe(gt=position)

    def pump() -> None:
        try:
            for note in subscription:
                if note.originator_id == run_id:
                    arrived.put(note)
        except Exception as error:  # the server went away: the reader is told why
            arrived.put(error)
        arrived.put(_ENDED)

    pumping = threading.Thread(target=pump, name="baton-follow", daemon=True)
    pumping.start()
    try:
        while True:
            try:
                item = arrived.get(timeout=tick_s)
            except queue.Empty:
                yield None
                continue
            if item is _ENDED:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, Notification)
            if item.originator_version <= after:
                continue
            if item.originator_version != after + 1:  # a gap: read the log to fill it
                missed = store.read(run_id, after=after, until=item.originator_version - 1)
                yield from missed
            after = item.originator_version
            yield store.mapper.to_event(run_id, after, item.topic, item.state)
    finally:
        subscription.stop()
        pumping.join(timeout=5)
