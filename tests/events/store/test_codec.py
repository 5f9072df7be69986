"""The codec: old records are upcast where they are read; newer ones are refused."""

from __future__ import annotations

import json

import pytest

from baton import BadLogError
from baton.events.schema import TimerFired
from baton.events.store import Codec

OLD_TIMER = json.dumps({"type": "TimerFired", "schema_version": 0, "run_id": "r", "seq": 4,
                        "assignment": "a#1"}).encode()


def rename_assignment(old: dict) -> dict:
    old["assignment_id"] = old.pop("assignment")
    return old


def test_an_old_record_is_upcast_where_it_is_read() -> None:
    """A version-0 record decodes through its upcaster into today's event."""
    codec = Codec(upcasters={("TimerFired", 0): rename_assignment})
    event = codec.decode(OLD_TIMER, run_id="r", seq=4)
    assert event == TimerFired(run_id="r", seq=4, assignment_id="a#1")


def test_an_old_record_without_an_upcaster_is_a_bad_log() -> None:
    """No upcaster for a version means BadLogError naming the type, version, run and seq."""
    with pytest.raises(BadLogError,
                       match="run 'r' at seq 4: no upcaster from TimerFired version 0"):
        Codec(upcasters={}).decode(OLD_TIMER, run_id="r", seq=4)


def test_a_record_from_a_newer_baton_is_refused() -> None:
    """A schema version above what this Baton knows is refused, asking for an upgrade."""
    newer = json.dumps({"type": "TimerFired", "schema_version": 7, "run_id": "r", "seq": 1,
                        "assignment_id": "a#1"}).encode()
    with pytest.raises(BadLogError, match="version 7 is newer than this Baton reads"):
        Codec().decode(newer, run_id="r", seq=1)
