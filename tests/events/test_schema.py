"""The event vocabulary: one discriminated union, every type round-trips exactly."""

from __future__ import annotations

import json

import pytest

from baton.events.schema import (
    DECISION_TYPES,
    EVENT_ADAPTER,
    EVENT_TYPES,
    STIMULUS_TYPES,
    Decision,
    Envelope,
    chain,
    encode,
)
from baton.events.store import Codec
from tests.fixtures.golden import every_event_type


def sample_events() -> list[Envelope]:
    return [event for run in every_event_type() for event in run.log]


def test_the_samples_cover_every_event_type() -> None:
    """The sample runs hold every stimulus and decision there is."""
    assert {e.type for e in sample_events()} == set(EVENT_TYPES)  # type: ignore[attr-defined]
    assert set(STIMULUS_TYPES) == {"RunRequested", "RunForked", "ResultReceived", "FailureReported",
                                   "TimerFired", "HumanAnswered", "CancelRequested",
                                   "CoordinatorRestarted", "WorkerStuck", "BudgetTimerFired"}
    assert set(DECISION_TYPES) == {"PlanChanged", "AssignmentDispatched", "ResultValidated",
                                   "RecoveryChosen", "EscalationRaised", "WorkerReplaced",
                                   "ResultsChecked", "RunCompleted", "RunFailed",
                                   "BudgetRaised"}


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: f"{e.run_id}-{e.seq}-{e.type}")
def test_an_event_round_trips_through_the_codec(event: Envelope) -> None:
    """encode then decode gives an equal event, and re-encoding gives identical bytes."""
    codec = Codec()
    data = codec.encode(event)
    back = codec.decode(data, run_id=event.run_id, seq=event.seq)
    assert back == event
    assert codec.encode(back) == data
    compact = json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False)
    assert data.decode() == compact  # compact JSON: no whitespace between tokens


def test_decisions_carry_a_reason_and_the_digest_of_the_state_they_saw() -> None:
    """Every decision names a rule and records the chain digest of the log before it."""
    for run in every_event_type():
        digest = "0" * 32
        for event in run.log:
            if isinstance(event, Decision):
                assert event.reason.rule
                assert event.state_digest == digest
                assert event.cause is not None and event.cause < event.seq
            digest = chain(digest, encode(event))


def test_the_union_discriminates_by_type() -> None:
    """Decoding picks the class named by `type`, so every event reads back as itself."""
    for event in sample_events():
        assert type(EVENT_ADAPTER.validate_json(encode(event))) is type(event)
