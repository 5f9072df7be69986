"""The facts that reach a coordinator from outside its decider, as stimuli: a worker's
result or failure, a deadline passed (an attempt's, or the run's duration limit), a
worker stuck, an entry from the run's inbox.
Each is stamped with the wall-clock time it arrived (as data) and made once its place
in the log (its seq) is known, so the coordinator alone numbers the run's events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from baton.events.errors import BadLogError
from baton.events.model import Failure, Result
from baton.events.schema import (
    BudgetTimerFired,
    CancelRequested,
    Event,
    FailureReported,
    HumanAnswered,
    ResultReceived,
    Stimulus,
    TimerFired,
    WorkerStuck,
)
from baton.events.state import RunState

from .pool import Replica

StimulusMaker = Callable[[int], Stimulus]  # given the seq it will have


def from_inbox(run_id: str, entry: Event) -> StimulusMaker:
    """The stimulus for an inbox entry, placed in the run's own log."""
    if not isinstance(entry, HumanAnswered | CancelRequested):
        raise BadLogError(f"{type(entry).__name__} has no place in an inbox",
                          run_id=entry.run_id, seq=entry.seq)
    return lambda seq: entry.model_copy(update={"run_id": run_id, "seq": seq,
                                                "inbox_seq": entry.seq})


def timer_for(run_id: str, assignment_id: str) -> StimulusMaker:
    now = time.time()
    return lambda seq: TimerFired(run_id=run_id, seq=seq, recorded_at=now,
                                  assignment_id=assignment_id)


def stuck_worker(run_id: str, assignment_id: str, replica: Replica) -> StimulusMaker:
    now = time.time()
    handler, index = replica
    note = f"replica {index} still running it at its deadline"
    return lambda seq: WorkerStuck(run_id=run_id, seq=seq, recorded_at=now,
                                   assignment_id=assignment_id, handler=handler, note=note)


def stimulus_for(run_id: str, outcome: Result | Failure) -> StimulusMaker:
    now = time.time()
    if isinstance(outcome, Result):
        return lambda seq: ResultReceived(run_id=run_id, seq=seq, recorded_at=now,
                                          result=outcome)
    return lambda seq: FailureReported(run_id=run_id, seq=seq, recorded_at=now,
                                       failure=outcome)



def budget_due_in(state: RunState, now: float) -> float | None:
    """Seconds (wall clock) until the run's duration limit passes, 0 once it has and is
    not yet recorded; None when it has none, or its passing is recorded already."""
    spend = state.spend
    limit = spend.budget.max_duration_s if spend.budget is not None else None
    if limit is None or spend.elapsed or spend.requested_at is None:
        return None
    return max(0.0, spend.requested_at + limit - now)


def budget_timer(state: RunState) -> list[StimulusMaker]:
    """BudgetTimerFired when the run's duration limit has passed (measured from its
    request, so a resumed run keeps its clock)."""
    if budget_due_in(state, time.time()) != 0.0:
        return []
    now = time.time()
    return [lambda seq: BudgetTimerFired(run_id=state.run_id, seq=seq, recorded_at=now)]
