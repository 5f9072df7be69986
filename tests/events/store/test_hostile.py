"""Hostile bytes: whatever a log holds, reading it ends in its state or in a BadLogError that
names the run and the seq, never another exception and never a state folded silently.

A recorded run is stored with one of its records replaced by bytes of some kind
(truncated, random, JSON of the wrong shape, a number too big for anything, nesting too
deep for a parser), moved, repeated or taken from another run. Every record replaced
is followed by a decision, whose digest of the log before it catches any edit that
still decodes.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from baton import BadLogError, EncryptionKeyError, open_store
from baton.cli import app
from baton.events.schema import EVENT_TYPES, Decision, Envelope
from baton.events.store import EventStore, snapshot
from baton.events.store.codec import Codec
from baton.events.store.sealing import MARKER, SEALED_AT_LEAST
from baton.replay import verify
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers

RUN = "hostile"
CODEC = Codec()


def recorded_run(run_id: str = RUN) -> list[Envelope]:
    """Three tasks, one failure and its retry, completed."""
    run = Scenario([counting("a"), counting("b"), counting("c", depends_on=("a", "b"))],
                   handlers("h", "k"), run_id=run_id)
    run.succeed("a#1", {"count": 1})
    run.fail("b#1", "flaky")
    run.succeed("b#2", {"count": 2})
    run.succeed("c#1", {"count": 3})
    return run.log


LOG = recorded_run()
RECORDS = [CODEC.encode(event) for event in LOG]
# Seqs with a decision after them: an edit there that still decodes is caught.
CHECKED = [e.seq for e in LOG if any(isinstance(d, Decision) for d in LOG[e.seq:])]


def stored(records: list[bytes], run_id: str = RUN) -> EventStore:
    """A store holding `records` as the run's log, seq 1 on, whatever they are."""
    store = open_store("memory://")
    store.recorder.insert_events([
        StoredEvent(run_id, seq, LOG[seq - 1].type if seq <= len(LOG) else "X", data)
        for seq, data in enumerate(records, start=1)])
    return store


def assert_refused(store: EventStore, seq: int | None = None) -> BadLogError:
    """Folding the run ends in a BadLogError naming the run and a seq (`seq` itself when
    given), and verifying it reports the log as not reproduced, there or before (an
    edited decision differs from its replay before the next decision's digest)."""
    with pytest.raises(BadLogError) as error:
        store.state(RUN)
    refused = error.value
    assert refused.run_id == RUN and refused.seq is not None, refused
    if seq is not None:
        assert refused.seq == seq, refused
    try:
        report = verify(store, RUN, None)
    except BadLogError as also:
        assert also.run_id == RUN and also.seq == refused.seq, also
    else:
        assert report.divergence is not None, "verify passed a hostile log"
        assert report.divergence.seq <= refused.seq, report.divergence.describe()
    return refused


def _with_huge_number(data: bytes, which: int, huge: int) -> bytes | None:
    """The record with its `which`-th integer (mod their count) made `huge`."""
    obj = json.loads(data)
    places: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, int) and not isinstance(value, bool):
                places.append((node, key))
            elif isinstance(value, dict | list):
                walk(value)

    walk(obj)
    if not places:
        return None
    node, key = places[which % len(places)]
    node[key] = huge
    return json.dumps(obj, separators=(",", ":")).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@st.composite
def wrong_shapes(draw: st.DrawFn, seq: int) -> bytes:
    """JSON that is not the event at `seq`: any value, or an object naming a real type
    and the right place with fields of any kind."""
    if draw(st.booleans()):
        return json.dumps(draw(json_values)).encode()
    fields = draw(st.dictionaries(st.sampled_from(
        ["result", "assignment", "tasks", "handlers", "reason", "rule", "state_digest",
         "output", "attempt", "task_id", "schema_version"]), json_values, max_size=4))
    kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
    return json.dumps({**fields, "type": kind, "run_id": RUN, "seq": seq}).encode()


def too_deep(depth: int) -> bytes:
    """A record nesting deeper than any parser's stack."""
    return b'{"type":"ResultReceived","result":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def hostile_records(draw: st.DrawFn) -> tuple[int, bytes | int]:
    """(seq, what to store there): bytes, or a nesting depth for `too_deep`."""
    seq = draw(st.sampled_from(CHECKED))
    original = RECORDS[seq - 1]
    kind = draw(st.sampled_from(["truncated", "random", "wrong shape", "huge", "deep"]))
    data: bytes | int
    if kind == "truncated":
        data = original[:draw(st.integers(0, len(original) - 1))]
    elif kind == "random":
        data = draw(st.binary(max_size=300))
    elif kind == "wrong shape":
        data = draw(wrong_shapes(seq))
    elif kind == "huge":
        huge = draw(st.sampled_from([2**63, -(2**63) - 1, 10**400, 2**64 + seq]))
        data = _with_huge_number(original, draw(st.integers(0, 50)), huge) or b"{"
    else:
        data = draw(st.sampled_from([1_000, 100_000]))
    return seq, data


@pytest.mark.unverifiable(RUN)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_records())
def test_a_record_replaced_by_hostile_bytes_is_refused_at_its_place(
        hostile: tuple[int, bytes | int]) -> None:
    seq, data = hostile
    records = list(RECORDS)
    records[seq - 1] = too_deep(data) if isinstance(data, int) else data
    with stored(records) as store:
        if isinstance(data, bytes) and data.startswith(MARKER) and (
                len(data) >= SEALED_AT_LEAST):
            # Bytes that read as a sealed record, with no key set: asking for the key
            # is the honest answer (exit 2), not a damaged log.
            with pytest.raises(EncryptionKeyError, match="is encrypted: set"):
                store.state(RUN)
            return
        assert_refused(store)


@pytest.mark.unverifiable(RUN)
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CHECKED), st.integers(1, len(LOG)))
def test_a_record_moved_to_another_place_is_refused_there(seq: int, other: int) -> None:
    """The record of seq `other` stored at `seq` (a repeated or reordered log)."""
    records = list(RECORDS)
    records[seq - 1] = RECORDS[other - 1]
    if other == seq:
        return
    with stored(records) as store:
        assert_refused(store, seq)


@pytest.mark.unverifiable(RUN)
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(CHECKED))
def test_an_event_repeated_under_the_next_seq_is_refused(seq: int) -> None:
    """The event at `seq` appears again as seq+1, everything after moved along by one:
    each record is where it says, but the log it makes is not the one decided on."""
    events = [*LOG[:seq], LOG[seq - 1].model_copy(update={"seq": seq + 1}),
              *(e.model_copy(update={"seq": e.seq + 1}) for e in LOG[seq:])]
    with stored([CODEC.encode(e) for e in events]) as store:
        error = assert_refused(store)
        assert error.seq is not None and error.seq > seq


@pytest.mark.unverifiable(RUN, "other")
@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CHECKED))
def test_a_record_of_another_run_is_refused(seq: int) -> None:
    other = [CODEC.encode(e) for e in recorded_run("other")]
    records = list(RECORDS)
    records[seq - 1] = other[seq - 1]
    with stored(records) as store:
        error = assert_refused(store, seq)
        assert "other" in str(error)


@pytest.mark.unverifiable(RUN, "other")
def test_a_snapshot_of_another_run_is_refused() -> None:
    """A snapshot filed under this run but holding another's state: the fold from it
    fails naming the run and the snapshot's seq."""
    other = stored([CODEC.encode(e) for e in recorded_run("other")], run_id="other")
    topic, theirs = snapshot.encode(other.state("other", until=6))
    with stored(RECORDS) as store:
        assert store.repository.snapshots is not None
        store.repository.snapshots.insert_events([StoredEvent(RUN, 6, topic, theirs)])
        with pytest.raises(BadLogError) as error:
            store.state(RUN)
        assert error.value.run_id == RUN and error.value.seq == 6
        assert "snapshot holds run 'other'" in str(error.value)
        assert store.state(RUN, from_snapshot=False).status == "completed"


@pytest.mark.unverifiable(RUN)
@pytest.mark.parametrize(("what", "data"), [
    ("truncated", RECORDS[3][:40]),
    ("random bytes", b"\xff\x00\x13garbage"),
    ("wrong shape", b'{"type":"ResultReceived","run_id":"hostile","seq":4,"result":7}'),
    ("too deep", too_deep(100_000)),
    ("huge number", _with_huge_number(RECORDS[3], 0, 10**400)),
])
def test_the_cli_names_the_run_and_seq_and_exits_1(store_url: str, what: str,
                                                   data: bytes) -> None:
    records = list(RECORDS)
    records[3] = data
    with stored(records) as memory, open_store(store_url) as store:
        store.recorder.insert_events(memory.recorder.select_events(RUN))
    for command in (["replay", RUN, "--verify"], ["show", RUN], ["log", RUN]):
        done = CliRunner().invoke(app, [*command, "--store", store_url])
        assert done.exit_code == 1, (what, command, done.output)
        assert RUN in done.output and "seq 4" in done.output, (what, command, done.output)
        assert "Traceback" not in done.output


@pytest.mark.unverifiable(RUN)
def test_a_run_whose_request_is_unreadable_is_listed_as_such(store_url: str) -> None:
    """One damaged run hides no other: `baton runs` lists it as unreadable, saying why
    and where, beside the runs that read fine."""
    with open_store(store_url) as store:
        store.append("fine", recorded_run("fine"), 0)
        store.recorder.insert_events([StoredEvent(RUN, 1, "RunRequested", b"\x00oops")])
    done = CliRunner().invoke(app, ["runs", "--store", store_url, "--json"])
    assert done.exit_code == 0, done.output
    listed = {run["run_id"]: run for run in json.loads(done.stdout)}
    assert listed["fine"]["status"] == "completed"
    assert listed[RUN]["status"] == "unreadable"
    assert listed[RUN]["goal"].startswith("unreadable at seq 1: record is not JSON")


@pytest.mark.unverifiable(RUN)
def test_a_second_run_request_in_a_log_does_not_stall_the_listing(store_url: str) -> None:
    """A RunRequested filed at a later seq is folded as the BadLogError it is; listing the
    store still ends (it once went round the same page for good), with the run once."""
    store = open_store(store_url)
    store.recorder.insert_events(
        [StoredEvent(RUN, seq, LOG[seq - 1].type, RECORDS[seq - 1]) for seq in (1, 2, 3, 4)])
    assert [info.run_id for info in store.runs()] == [RUN]  # listed once already
    store.recorder.insert_events(
        [StoredEvent(RUN, 5, "RunRequested", RECORDS[0].replace(b'"seq":1', b'"seq":5'))])
    listed: list[Any] = []
    listing = threading.Thread(target=lambda: listed.extend(store.runs()), daemon=True)
    listing.start()
    listing.join(timeout=10)
    assert not listing.is_alive(), "listing the store never ended"
    assert [info.run_id for info in listed] == [RUN]
    with pytest.raises(BadLogError, match="at seq 5"):
        store.state(RUN)
