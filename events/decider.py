"""The decider: `decide(state, stimulus, policy)`, and `decide_in_place`, which the
coordinator runs.

The rules read the state and the stimulus and build decisions; each decision is folded
into the state by `evolve` (RunState.apply) as it is made, so the next rule sees it, and
nothing else writes the state. For speed the coordinator advances its state in place:
`decide_in_place` folds the stimulus, decides, folds the decisions, and returns each
event with its canonical bytes. `decide` runs it on a copy, so the caller's state is
left as it was. The state and `evolve` are in `state`; plan checks in `plan`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from . import budget
from .errors import PolicyError
from .model import (
    NO_SCHEMAS,
    Json,
    Schemas,
    Task,
    Verdict,
    escalation_id,
    task_of,
)
from .plan import plan_problems
from .policy import Candidate, Policy, RecoveryFacts
from .record import TERMINAL_TASK, TaskRecord, next_assignment
from .schema import (
    STIMULUS_TYPES,
    AssignmentDispatched,
    BudgetTimerFired,
    CancelRequested,
    CoordinatorRestarted,
    Decision,
    Envelope,
    EscalationRaised,
    FailureReported,
    HumanAnswered,
    PlanChanged,
    Reason,
    RecoveryChosen,
    ResultReceived,
    ResultValidated,
    RunFailed,
    RunForked,
    RunRequested,
    Stimulus,
    TimerFired,
    WorkerReplaced,
    WorkerStuck,
)
from .settle import settle
from .state import RunState
from .tree import child_run_id

# --- decide ----------------------------------------------------------------------------


def decide_in_place(
    state: RunState, stimulus: Stimulus, policy: Policy, recorded: bytes | None = None,
    schemas: Schemas = NO_SCHEMAS,
) -> list[tuple[Envelope, bytes]]:
    """Fold `stimulus` into `state`, decide what follows, fold those decisions too, and
    return the stimulus and its decisions, each with its canonical bytes, ready to
    append (a large plan is encoded once, not twice). `state` is advanced in place.
    `recorded` is the stimulus's bytes when the caller has them; `schemas` holds the
    output schema classes of tasks that do not carry their own (those read back from a
    log)."""
    if type(stimulus) not in _ANSWERS:
        raise TypeError(f"decide() takes a stimulus ({', '.join(STIMULUS_TYPES)}), not "
                        f"{type(stimulus).__name__}")
    first = (stimulus, state.apply(stimulus, recorded))
    return [first, *_Turn(state, stimulus, policy, schemas).run()]


def decide(state: RunState, stimulus: Stimulus, policy: Policy,
           schemas: Schemas = NO_SCHEMAS) -> list[Decision]:
    """The decisions that follow when `stimulus` arrives in `state`. Pure: `state` is
    left as it was (they are decided on a copy, O(tasks); the coordinator decides in
    place)."""
    made = decide_in_place(state.copy(), stimulus, policy, schemas=schemas)
    return [event for event, _ in made[1:]]  # type: ignore[misc]


class _Head(TypedDict):
    """What every decision of a turn carries besides its own fields."""

    run_id: str
    seq: int
    cause: int
    state_digest: str
    reason: Reason


class _Turn:
    """One coordinator turn: the decisions that follow from one stimulus."""

    def __init__(self, state: RunState, stimulus: Stimulus, policy: Policy, schemas: Schemas):
        self.state = state
        self.stimulus = stimulus
        self.policy = policy
        self.schemas = schemas
        self.out: list[tuple[Decision, bytes]] = []

    def run(self) -> list[tuple[Decision, bytes]]:
        s = self.state
        if s.status != "running" and not isinstance(self.stimulus, RunRequested):
            return []  # a finished run records late stimuli and decides nothing
        _ANSWERS[type(self.stimulus)](self, self.stimulus)
        if s.status == "running":
            self._fill()
            while settle(self):  # tasks were sent back: dispatch them (or settle again,
                self._fill()  # when every one was abandoned)
        return self.out

    def head(self, rule: str, facts: dict[str, Json] | None = None,
             candidates: Sequence[dict[str, Json]] = ()) -> _Head:
        """The envelope of the next decision: its place, its cause, the state it looked
        at, and why (the rule, the facts it read, the candidates it weighed)."""
        s = self.state
        return {"run_id": s.run_id, "seq": s.seq + 1, "cause": self.stimulus.seq,
                "state_digest": s.digest,
                "reason": Reason(rule=rule, facts=facts or {}, candidates=tuple(candidates))}

    def record(self, decision: Decision) -> None:
        """Keep `decision` and fold it into the state (the only way the state changes)."""
        self.out.append((decision, self.state.apply(decision)))

    # --- stimuli -----------------------------------------------------------------------

    def _on_run_requested(self, e: RunRequested) -> None:
        s = self.state
        problems = plan_problems(e.tasks, {}, s.by_capability, self.schemas)
        names = [h.name for h in e.handlers]
        if len(set(names)) != len(names):
            problems.append("handler names are not unique: " + ", ".join(names))
        facts: dict[str, Json] = {"tasks": len(e.tasks), "handlers": names}
        if problems:
            self.record(RunFailed(
                **self.head("plan.invalid", {**facts, "problems": problems}),
                error="the plan cannot run: " + "; ".join(problems)))
        elif not e.tasks:
            self.record(RunFailed(**self.head("plan.empty", facts), error="the plan has no tasks"))
        else:
            self.record(PlanChanged(**self.head("plan.initial", facts), requested=True))

    def _on_run_forked(self, e: RunForked) -> None:
        """Nothing to answer in itself: the fork's policy takes over, and `_fill`, which
        every turn ends with, dispatches whatever that policy would."""

    def _on_result_received(self, e: ResultReceived) -> None:
        aid = e.result.assignment_id
        task_id = self.state.in_flight.get(aid)
        if task_id is None:
            self._ignore(aid, "result.not_current")
            return
        self._judge(self.state.tasks[task_id], aid, e.result.output)

    def _on_failure_reported(self, e: FailureReported) -> None:
        aid = e.failure.assignment_id
        task_id = self.state.in_flight.get(aid)
        if task_id is None:
            self._ignore(aid, "failure.not_current")
            return
        self.recover(self.state.tasks[task_id], aid, e.failure.summary(), e.failure.kind)

    def _on_timer_fired(self, e: TimerFired) -> None:
        task_id = self.state.in_flight.get(e.assignment_id)
        if task_id is None:
            self._ignore(e.assignment_id, "timer.not_current")
            return
        record = self.state.tasks[task_id]
        timeout = record.task.budget.timeout_s
        self.recover(record, e.assignment_id, f"timeout: no answer within {timeout}s", "timeout")

    def _on_worker_stuck(self, e: WorkerStuck) -> None:
        """Replace the process, whatever becomes of the attempt (TimerFired decides that):
        a retry, or anything queued, sent to it would wait behind the stuck call."""
        self.record(WorkerReplaced(
            **self.head("recover.replace_stuck_worker", {
                "assignment": e.assignment_id, "handler": e.handler, "note": e.note}),
            assignment_id=e.assignment_id, handler=e.handler))

    def _on_human_answered(self, e: HumanAnswered) -> None:
        s = self.state
        if e.escalation_id == s.spend.escalation:
            budget.answer(self, e)
            return
        task_id = s.escalations.get(e.escalation_id)
        if task_id is None:
            return  # callers refuse answers to closed escalations before recording them
        record = s.tasks[task_id]
        facts: dict[str, Json] = {
            "escalation": e.escalation_id,
            "answered_by": e.answered_by,
            "note": e.note,
        }
        if e.action == "accept":
            self._judge(record, e.escalation_id, e.output)
        elif e.action == "abandon":
            self.record(RecoveryChosen(
                **self.head("human.abandon", facts), task_id=task_id, assignment_id=None,
                action="abandon", feedback=e.note))
            self._abandon_dependents(task_id)
        else:
            handler = e.handler if e.action == "reassign" else record.handler
            if handler is None or handler not in s.by_capability.get(record.task.capability, ()):
                handler = s.by_capability[record.task.capability][0]
            self.record(RecoveryChosen(
                **self.head(f"human.{e.action}", facts), task_id=task_id, assignment_id=None,
                action=e.action, handler=handler, feedback=e.note))

    def _on_budget_timer_fired(self, e: BudgetTimerFired) -> None:
        """Nothing to answer in itself: the limit is reached, so `_fill` halts."""

    def _on_cancel_requested(self, e: CancelRequested) -> None:
        abandoned = self.abandon_in_flight("cancel.abandon_in_flight", {"note": e.note})
        self.record(RunFailed(**self.head("run.cancelled", {
            "note": e.note, "abandoned": abandoned}),
            error="cancelled" + (f": {e.note}" if e.note else "")))

    def abandon_in_flight(self, rule: str, facts: dict[str, Json]) -> list[str]:
        """Abandon every attempt in flight (the run is ending); their ids."""
        in_flight = self._in_flight_in_dispatch_order()
        for aid, task_id in in_flight:
            self.record(RecoveryChosen(**self.head(rule, facts), task_id=task_id,
                                       assignment_id=aid, action="abandon"))
        return [aid for aid, _ in in_flight]

    def _on_coordinator_restarted(self, e: CoordinatorRestarted) -> None:
        for aid, task_id in self._in_flight_in_dispatch_order():
            a = self.state.tasks[task_id].assignment
            facts: dict[str, Json] = {"assignment": aid, "handler": a.handler if a else None}
            if a and self.state.handlers[a.handler].subrun:  # this run's (a fork's own)
                facts["child_run"] = child_run_id(self.state.run_id, aid)
            self.record(AssignmentDispatched(
                **self.head("restart.redispatch_same_attempt", facts), assignment=a))

    def _in_flight_in_dispatch_order(self) -> list[tuple[str, str]]:
        s = self.state
        return sorted(s.in_flight.items(),
                      key=lambda item: (s.tasks[item[1]].index, item[0]))

    # --- the rules ---------------------------------------------------------------------

    def _ignore(self, aid: str, rule: str) -> None:
        task_id = task_of(aid)
        record = self.state.tasks.get(task_id)
        facts: dict[str, Json] = {
            "assignment": aid,
            "current": record.current if record else None,
            "task_status": record.status if record else None,
        }
        problem = f"{aid} is not the attempt in flight; recorded and ignored"
        self.record(ResultValidated(
            **self.head(rule, facts), assignment_id=aid, task_id=task_id, outcome="ignored",
            verdict=Verdict(accepted=False, problems=(problem,))))

    def _judge(self, record: TaskRecord, aid: str, output: Json) -> None:
        task = record.task
        model = task.schema_model(self.schemas)
        judged = task if model is None else task.carrying(model)  # the rules find it there
        verdict = self.policy.validate(judged, output)
        if verdict.sent_back:
            raise PolicyError(f"policy.validate sent tasks back while judging {task.id!r}: "
                              "only check, which sees every result, may (reject with "
                              "Verdict.of)")
        proposed: Sequence[Task] = ()
        if verdict.accepted:
            proposed = tuple(self.policy.expand(task, output))
            if proposed:  # a task done again may propose what it added before: kept as is
                known = self.state.tasks
                proposed = tuple(t for t in proposed
                                 if t.id not in known or known[t.id].task != t)
            problems = proposed and plan_problems(proposed, self.state.tasks,
                                                  self.state.by_capability, self.schemas)
            if problems:
                verdict = Verdict.of([f"proposed tasks rejected: {p}" for p in problems])
        facts: dict[str, Json] = {"assignment": aid, "checks": len(task.done_when),
                                       "output_schema": task.output_schema}
        outcome = "accepted" if verdict.accepted else "rejected"
        self.record(ResultValidated(
            **self.head(f"validate.{outcome}", facts), assignment_id=aid, task_id=task.id,
            outcome=outcome, verdict=verdict))
        if not verdict.accepted:
            if record.status == "escalated":
                return  # a person's output was rejected; the escalation stays open
            self.recover(record, aid, "; ".join(verdict.problems), "rejected")
            return
        if proposed:
            self.record(PlanChanged(
                **self.head("expand.from_output", {
                    "from_task": task.id, "assignment": aid, "added": len(proposed)}),
                added=proposed))

    def recover(self, record: TaskRecord, aid: str | None, problem: str, kind: str) -> None:
        s = self.state
        task = record.task
        handler = record.handler
        assert handler is not None
        tried = dict(record.tried)
        alternatives = tuple(
            Candidate(h, s.load[h], s.handlers[h].capacity, s.streak[h])
            for h in s.by_capability[task.capability]
            if h not in tried
        )
        facts = RecoveryFacts(
            problem=problem,
            kind=kind,
            attempts=record.attempts,
            handler=handler,
            attempts_on_handler=tried.get(handler, 0),
            attempt_budget=task.budget.attempts,
            alternatives=alternatives,
            required=task.required,
            handler_failures_in_a_row=s.streak[handler],
            workers_lost=dict(record.lost).get(handler, 0),
            **s.spend.facts(),  # (its keys are fields)
        )
        choice = self.policy.recover(task, facts)
        target = choice.handler
        if choice.action == "retry":
            target = target or handler
        if choice.action in ("retry", "reassign") and (
            target not in s.by_capability[task.capability]
        ):
            raise PolicyError(
                f"policy.recover chose to {choice.action} task {task.id!r} on {target!r}, "
                f"which lacks capability {task.capability!r}"
            )
        self.record(RecoveryChosen(
            **self.head(choice.rule, facts.as_facts(), [c.as_fact() for c in alternatives]),
            task_id=task.id, assignment_id=aid, action=choice.action,
            handler=target if choice.action in ("retry", "reassign") else None,
            feedback=choice.feedback))
        if choice.action == "escalate":
            question = (
                f"Task {task.id!r} was not done after {record.attempts} attempt(s) "
                f"({problem}) and no other handler can take it. Retry, reassign, abandon, "
                "or supply the output?"
            )
            self.record(EscalationRaised(
                **self.head("escalate.ask_person", facts.as_facts()),
                escalation_id=escalation_id(s.run_id, s.seq + 1), task_id=task.id,
                question=question))
        elif choice.action == "abandon":
            self._abandon_dependents(task.id)

    def _abandon_dependents(self, task_id: str) -> None:
        s = self.state
        todo = deque([task_id])
        while todo:
            gone = todo.popleft()
            for dep_id in s.dependents.get(gone, ()):
                record = s.tasks.get(dep_id)
                if record is None or record.status in TERMINAL_TASK:
                    continue
                self.record(RecoveryChosen(
                    **self.head("recover.dependency_abandoned", {"dependency": gone}),
                    task_id=dep_id, assignment_id=None, action="abandon"))
                todo.append(dep_id)

    def _fill(self) -> None:
        """Dispatch queued work while handlers have free capacity: pinned retries first,
        then fresh tasks, capability by capability in name order."""
        s = self.state
        limit = s.spend.reached()
        if limit is not None and s.open_tasks:  # (with none, the run settles)
            budget.halt(self, limit)
            return
        for handler, queue in s.pinned.items():
            while self._has_room(handler):
                record = self._first_live(queue)
                if record is None:
                    break
                rule = "dispatch.retry" if handler == record.handler else "dispatch.reassign"
                candidate = Candidate(handler, s.load[handler], s.handlers[handler].capacity,
                                      s.streak[handler])
                self._dispatch(record, handler, rule, [candidate])
        for capability, queue in s.ready.items():
            while True:
                record = self._first_live(queue)
                if record is None:
                    break
                handlers = s.by_capability[capability]
                room = [self._has_room(h) for h in handlers]
                if not any(room):
                    break
                weighed = [Candidate(h, s.load[h], s.handlers[h].capacity, s.streak[h], free)
                           for h, free in zip(handlers, room, strict=True)]
                routing = self.policy.route(record.task, weighed)
                if routing.handler is None:
                    break  # the policy holds this capability's work for now
                if routing.handler not in {c.handler for c in weighed if c.free}:
                    raise PolicyError(
                        f"policy.route chose {routing.handler!r} for task {record.task.id!r}, "
                        "which is not among the free candidates"
                    )
                self._dispatch(record, routing.handler, routing.rule, weighed, routing.facts)

    def _has_room(self, handler: str) -> bool:
        capacity = self.state.handlers[handler].capacity
        return capacity is None or self.state.load[handler] < capacity

    def _first_live(self, queue: deque[tuple[str, int]]) -> TaskRecord | None:
        """The task first in line in `queue`, past stale entries (their task was queued
        again since, or left the queue otherwise), which its dispatch clears away."""
        for task_id, token in queue:
            if self.state.live(task_id, token):
                return self.state.tasks[task_id]
        return None

    def _dispatch(
        self, record: TaskRecord, handler: str, rule: str, weighed: Sequence[Candidate],
        noted: Mapping[str, Json] | None = None,
    ) -> None:
        assignment = next_assignment(record, handler, self.state.tasks)
        facts: dict[str, Json] = {"task": record.task.id, "attempt": assignment.attempt,
                                  "capability": assignment.capability,
                                  "inputs": sorted(assignment.inputs), **(noted or {})}
        if self.state.handlers[handler].subrun:  # the run this assignment starts
            facts["child_run"] = child_run_id(self.state.run_id, assignment.id)
        self.record(AssignmentDispatched(
            **self.head(rule, facts, [c.as_fact() for c in weighed]), assignment=assignment))


# How a turn answers each type of stimulus: every type the schema lists, no other.
_ANSWERS: dict[type[Stimulus], Callable[[_Turn, Any], None]] = {
    RunRequested: _Turn._on_run_requested,
    RunForked: _Turn._on_run_forked,
    ResultReceived: _Turn._on_result_received,
    FailureReported: _Turn._on_failure_reported,
    TimerFired: _Turn._on_timer_fired,
    WorkerStuck: _Turn._on_worker_stuck,
    HumanAnswered: _Turn._on_human_answered,
    CancelRequested: _Turn._on_cancel_requested,
    CoordinatorRestarted: _Turn._on_coordinator_restarted,
    BudgetTimerFired: _Turn._on_budget_timer_fired,
}
if set(_ANSWERS) != set(STIMULUS_TYPES.values()):
    raise AssertionError("the decider must answer exactly the stimulus types schema lists")
