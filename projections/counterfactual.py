"""Counterfactual replay: what another policy would have decided, given the same facts.

A run's recorded stimuli are fed, in the order they arrived, to a different policy,
with the workers' results as recordings: no worker is called. A result is fed only
once the new policy has dispatched exactly the assignment that produced it (the same
Assignment: id, handler, instructions, inputs, everything); until then it is held.
Where the new policy dispatches work no recording answers, the replay stops there and
says so, since what a worker would have returned is not a fact in the log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from baton.events.decider import decide_in_place
from baton.events.errors import BatonError, PolicyError
from baton.events.model import NO_SCHEMAS, Assignment, Schemas
from baton.events.policy import Policy
from baton.events.schema import (
    AssignmentDispatched,
    Decision,
    Envelope,
    EscalationRaised,
    FailureReported,
    HumanAnswered,
    ResultReceived,
    Stimulus,
    TimerFired,
)
from baton.events.state import RunState
from baton.events.store import EventStore

from .log import describe
from .log import turns as log_turns

# Fields that place a decision in its log rather than say what was decided.
_PLACE = {"seq", "cause", "state_digest"}


@dataclass(frozen=True)
class Parting:
    """A recorded stimulus after which the new policy decides otherwise than the record."""

    seq: int  # the stimulus, in the recorded log
    stimulus: str
    recorded: tuple[str, ...]  # each decision as a readable line: type, what, rule
    replayed: tuple[str, ...]


@dataclass(frozen=True)
class TaskChange:
    """A task that ends differently under the new policy."""

    task_id: str
    recorded: str  # status, with the handler of the last attempt
    replayed: str


@dataclass
class Counterfactual:
    """What replaying a run's facts under another policy showed."""

    run_id: str
    policy: str
    partings: list[Parting] = field(default_factory=list)
    stopped: str = ""  # why it stopped before the recorded facts ran out, if it did
    stopped_at: int | None = None  # the recorded stimulus it stopped after
    unused: list[str] = field(default_factory=list)  # recorded results never asked for
    recorded_outcome: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)
    changed_tasks: list[TaskChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log: list[Envelope] = field(default_factory=list)  # the counterfactual run's log

    @property
    def same(self) -> bool:
        """True when the new policy decides exactly as the record, to the end."""
        return not self.partings and not self.stopped

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "policy": self.policy, "same": self.same,
                "partings": [vars(p) for p in self.partings], "stopped": self.stopped,
                "stopped_at": self.stopped_at, "unused_recordings": self.unused,
                "recorded_outcome": self.recorded_outcome, "outcome": self.outcome,
                "changed_tasks": [vars(c) for c in self.changed_tasks], "notes": self.notes}


def counterfactual(
    store: EventStore, run_id: str, policy: Policy, label: str = "",
    schemas: Schemas = NO_SCHEMAS,
) -> Counterfactual:
    """Feed `run_id`'s recorded stimuli to `policy` (named `label` in the report) and
    report where it parts from the record, how the outcome would differ, and where (if
    anywhere) it had to stop."""
    store.require_run(run_id)
    recorded_state = RunState()
    log: list[Envelope] = []
    for event, data in store.read_recorded(run_id):
        recorded_state.apply(event, data)  # the digest chain over the bytes as stored
        log.append(event)
    return replay_under(log, recorded_state, policy, label or type(policy).__qualname__,
                        schemas)


def replay_under(
    log: Sequence[Envelope], recorded_state: RunState, policy: Policy, label: str,
    schemas: Schemas = NO_SCHEMAS,
) -> Counterfactual:
    """`counterfactual` over a log already read and folded."""
    report = Counterfactual(run_id=log[0].run_id, policy=label)
    recorded_work = {e.assignment.id: e.assignment for e in log
                     if isinstance(e, AssignmentDispatched)}
    escalated = {e.escalation_id: e.task_id for e in log if isinstance(e, EscalationRaised)}
    state = RunState()
    held: dict[str, list[tuple[Stimulus, tuple[Decision, ...]]]] = {}
    ready: deque[tuple[Stimulus, tuple[Decision, ...]]] = deque()
    work: dict[str, Assignment] = {}  # what the new policy dispatched, by id
    for stimulus, recorded in log_turns(log):
        aid = _about(stimulus)
        if aid is not None and aid not in work:
            held.setdefault(aid, []).append((stimulus, recorded))  # not asked for yet
            continue
        ready.append((stimulus, recorded))
        while ready and not report.stopped:
            fact, answered = ready.popleft()
            fed = _restamped(fact, state, escalated)
            try:
                made = decide_in_place(state, fed, policy, schemas=schemas)
                decided = cast(list[Decision], [event for event, _ in made[1:]])
            except BatonError:
                raise
            except Exception as error:
                raise PolicyError(f"the policy raised {type(error).__name__}: {error} "
                                   f"deciding what follows recorded seq {fact.seq}") from error
            report.log += [fed, *decided]
            if [_gist(d) for d in decided] != [_gist(d) for d in answered]:
                report.partings.append(Parting(
                    fact.seq, f"{type(fact).__name__} {describe(fact)}",
                    tuple(_said(d) for d in answered), tuple(_said(d) for d in decided)))
            for d in decided:
                if not isinstance(d, AssignmentDispatched):
                    continue
                a = d.assignment
                if recorded_work.get(a.id) != a:
                    report.stopped = _no_recording(a, recorded_work.get(a.id))
                    report.stopped_at = fact.seq
                    break
                work[a.id] = a
                ready.extend(held.pop(a.id, ()))
        if report.stopped:
            break
    report.unused = sorted(held)
    report.recorded_outcome = outcome(recorded_state)
    report.outcome = outcome(state)
    report.changed_tasks = changed_tasks(recorded_state, state)
    return report


def _about(stimulus: Stimulus) -> str | None:
    """The assignment a worker's result, failure or timer is about."""
    match stimulus:
        case ResultReceived():
            return stimulus.result.assignment_id
        case FailureReported():
            return stimulus.failure.assignment_id
        case TimerFired():
            return stimulus.assignment_id
    return None


def _restamped(fact: Stimulus, state: RunState, escalated: dict[str, str]) -> Stimulus:
    """`fact` placed next in the counterfactual log. An answer to an escalation goes to
    the counterfactual run's open escalation of the same task (its id names its seq)."""
    update: dict[str, Any] = {"seq": state.seq + 1}
    if isinstance(fact, HumanAnswered):
        task_id = escalated.get(fact.escalation_id)
        mine = [esc for esc, t in state.escalations.items() if t == task_id]
        if mine:
            update["escalation_id"] = mine[0]
    return fact.model_copy(update=update)


def _gist(decision: Decision) -> dict[str, Any]:
    """What a decision decided, without its place in the log."""
    return decision.model_dump(exclude=_PLACE)


def _said(decision: Decision) -> str:
    return f"{type(decision).__name__} {describe(decision)}  [{decision.reason.rule}]"


def _no_recording(wanted: Assignment, recorded: Assignment | None) -> str:
    text = f"the new policy dispatches {wanted.id} to {wanted.handler}, "
    if recorded is None:
        return text + "an attempt the run never made, so no recording exists"
    was, now = recorded.model_dump(), wanted.model_dump()
    differs = [name for name in was if was[name] != now[name]]
    return text + (f"but the run's {recorded.id} differed in {', '.join(differs)} "
                   f"(it went to {recorded.handler}), so no recording answers it")


def outcome(state: RunState) -> dict[str, Any]:
    return {"status": state.phase, "accepted": state.accepted, "tasks": len(state.tasks),
            "in_flight": sorted(state.in_flight), "output": state.output,
            "error": state.error}


def changed_tasks(recorded: RunState, replayed: RunState) -> list[TaskChange]:
    changes: list[TaskChange] = []
    for task_id in [*recorded.tasks, *(t for t in replayed.tasks if t not in recorded.tasks)]:
        was, now = _standing(recorded, task_id), _standing(replayed, task_id)
        if was != now:
            changes.append(TaskChange(task_id, was, now))
    return changes


def _standing(state: RunState, task_id: str) -> str:
    record = state.tasks.get(task_id)
    if record is None:
        return "not planned"
    text = f"{record.status} after {record.attempts} attempt(s)"
    return text + (f", last on {record.handler}" if record.handler else "")
