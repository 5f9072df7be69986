"""The mapper: a run's events to the records a recorder stores, and back.

Encoding is the codec's (compact JSON, upcast by version when read); sealing is the
sealer's (encryption at rest, or none). Both are given when the store is opened, so
every append and every read of that store goes through the same two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from eventsourcing.persistence import StoredEvent

from ..errors import BadLogError
from ..schema import Envelope, Event
from .codec import Codec
from .sealing import Sealer


class Recorded(NamedTuple):
    """One stored record of a run's log, as bytes: its place, its type, its data."""

    run_id: str
    seq: int
    type: str
    data: bytes


class Mapper:
    """Turns events into stored records (encoded, then sealed) and records back into
    events (opened, then decoded and checked against where they are filed)."""

    def __init__(self, codec: Codec | None = None, sealer: Sealer | None = None):
        self.codec = codec or Codec()
        self.sealer = sealer or Sealer(None)

    def to_stored(self, run_id: str, events: Sequence[Envelope],
                  recorded: Sequence[bytes] | None = None) -> list[StoredEvent]:
        """The records of a run's events; `recorded`, when given, are their encoded
        bytes (the caller had them already)."""
        if recorded is None:
            recorded = [self.codec.encode(event) for event in events]
        seal = self.sealer.seal
        return [StoredEvent(originator_id=run_id, originator_version=event.seq,
                            topic=event.type,  # type: ignore[attr-defined]
                            state=seal(recorded[i]))
                for i, event in enumerate(events)]

    def opened(self, run_id: str, seq: int, topic: str, stored: bytes) -> Recorded:
        """A stored record with its bytes opened (they are plain when the store is)."""
        return Recorded(run_id, seq, topic, self.sealer.open(stored, run_id=run_id, seq=seq))

    def decode(self, record: Recorded) -> Event:
        """The event an opened record holds (BadLogError when it is malformed or misfiled)."""
        event = self.codec.decode(record.data, run_id=record.run_id, seq=record.seq)
        if event.type != record.type:
            raise BadLogError(f"record holds a {event.type} but is filed as a {record.type}; "
                              "the store was edited", run_id=record.run_id, seq=record.seq)
        return event

    def to_event(self, run_id: str, seq: int, topic: str, stored: bytes) -> Event:
        """The event a stored record holds: opened, then decoded."""
        return self.decode(self.opened(run_id, seq, topic, stored))
