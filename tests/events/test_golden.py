"""The golden log: a committed run that today's rules must still decide the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.events.state import RunState
from baton.events.store import Codec
from baton.projections.verification import verify_log
from tests.fixtures.golden import GOLDEN, record_golden
from tests.fixtures.specs import SCHEMAS, ExpandingPolicy

# The golden log as Baton 0.1 wrote it, before RunRequested recorded its policy's digest.
GOLDEN_0_1 = GOLDEN.with_name("golden-0.1.jsonl")


def golden_records(path: Path = GOLDEN) -> list[tuple[object, bytes]]:
    codec = Codec()
    records = []
    for seq, line in enumerate(path.read_bytes().splitlines(), start=1):
        records.append((codec.decode(line, run_id="golden", seq=seq), line))
    return records


@pytest.mark.parametrize("path", [GOLDEN, GOLDEN_0_1], ids=["today", "written-by-0.1"])
def test_the_golden_log_replays_to_the_same_decisions(path: Path) -> None:
    """Re-deciding every recorded stimulus reproduces every recorded decision, byte for
    byte: today's log, and the one an earlier Baton wrote."""
    records = golden_records(path)
    assert len(records) > 40
    assert verify_log(records, ExpandingPolicy(), schemas=SCHEMAS)[1] is None


def test_the_golden_log_folds_to_a_completed_run() -> None:
    """Folding the committed bytes checks the digest chain and ends where the run ended."""
    state = RunState()
    for event, line in golden_records():
        state.apply(event, line)  # type: ignore[arg-type]
    assert state.status == "completed"
    assert state.output == {"plan": {"names": ["x", "y"]}, "a": {"count": 2},
                            "b": {"count": 5}, "count-x": {"count": 1},
                            "count-y": {"count": 0}}


def test_the_golden_script_still_records_the_committed_log() -> None:
    """Running the golden script today gives the committed log, event for event."""
    assert [event for event, _ in golden_records()] == record_golden().log


def test_replay_names_the_first_decision_a_changed_rule_would_alter() -> None:
    """A policy that routes differently diverges at the first dispatch, both versions shown."""

    class Contrary(ExpandingPolicy):
        def route(self, task, candidates):  # type: ignore[no-untyped-def]
            routing = super().route(task, candidates)
            if task.id == "count-y":
                other = max(candidates, key=lambda c: c.handler)
                return type(routing)(handler=other.handler, rule="route.contrary")
            return routing

    _, divergence = verify_log(golden_records(), Contrary(), schemas=SCHEMAS)
    assert divergence is not None
    assert divergence.seq == 9
    assert divergence.fields == ("reason", "assignment")
    text = divergence.describe()
    assert "seq 9: recorded AssignmentDispatched (rule route.least_loaded)" in text
    assert "replay decides AssignmentDispatched (rule route.contrary)" in text
