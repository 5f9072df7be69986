"""A run's state as its log says it is: RunState, INITIAL_STATE, evolve, fold (each
task's own standing is a TaskRecord, in `record`).

`evolve` applies a recorded fact and judges nothing (the rules are in `decider`). A run's
state is ``reduce(evolve, log, INITIAL_STATE)``, and it costs O(1) amortized per event in
the number of tasks: work waits in per-capability and per-handler queues (entries made
stale by a later enqueue are skipped, not searched for), loads are counted per handler,
and the digest of the state is a hash chain over the recorded events rather than a hash
of the whole state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

from .budget import Spend
from .errors import BadLogError
from .model import HandlerInfo, Json, Task
from .policy import PlanView
from .record import TaskRecord, reopen, shared_tally
from .schema import (
    EVENT_TYPES,
    GENESIS_DIGEST,
    AssignmentDispatched,
    BudgetRaised,
    BudgetTimerFired,
    CancelRequested,
    CoordinatorRestarted,
    Decision,
    Envelope,
    EscalationRaised,
    FailureReported,
    HumanAnswered,
    PlanChanged,
    RecoveryChosen,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRequested,
    TimerFired,
    WorkerReplaced,
    WorkerStuck,
    chain,
    encode,
)
from .tree import ParentLink

RunStatus = Literal["new", "running", "completed", "failed"]


class RunState:
    """A run as its log so far says it is. Read it freely; change it only by `evolve`."""

    def __init__(self) -> None:
        self.run_id = ""
        self.seq = 0
        self.digest = GENESIS_DIGEST
        self.status: RunStatus = "new"
        self.goal = ""
        self.requested: tuple[Task, ...] = ()  # the plan as RunRequested proposed it
        # Who decides the run: from RunRequested, or from the RunForked that began it.
        self.policy = ""  # module:QualName
        self.policy_digest = ""  # a hash of the policy's source
        self.spec = ""  # where its spec was loaded from
        self.policy_ref = ""  # where its policy was loaded from, when not the spec's own
        self.forked_from: tuple[str, int] | None = None  # (parent run, parent seq)
        self.parent: ParentLink | None = None  # a child run: what of its parent it answers
        self.handlers: dict[str, HandlerInfo] = {}
        self.by_capability: dict[str, tuple[str, ...]] = {}
        self.load: dict[str, int] = {}
        self.streak: dict[str, int] = {}  # handler -> attempts failed or rejected in a row
        self.tasks: dict[str, TaskRecord] = {}
        self.dependents: dict[str, deque[str]] = {}
        self.ready: dict[str, deque[tuple[str, int]]] = {}  # capability -> (task, token)
        self.pinned: dict[str, deque[tuple[str, int]]] = {}  # handler -> (task, token)
        self.in_flight: dict[str, str] = {}  # assignment id -> task id
        self.escalations: dict[str, str] = {}  # open escalation id -> task id
        self.open_tasks = 0  # neither accepted nor abandoned
        self.accepted = 0
        self.queued = 0
        self.inbox_seen = 0  # the last inbox entry (answers, cancels) taken into the log
        self.output: Json = None
        self.error = ""
        self.spend = Spend()  # against the run's budget, if it has one
        self.enqueued = 0  # how many times a task has joined a queue: each one's place
        self.changed: set[str] | None = None  # tasks changed since the last snapshot, if kept
        self.frozen = False

    # --- reading -----------------------------------------------------------------------

    @property
    def waiting_on_people(self) -> bool:
        """True when the only work left is parked on open escalations (a budget reached
        parks all of it)."""
        parked = bool(self.escalations) and self.queued == 0
        return (self.status == "running" and not self.in_flight
                and (parked or self.spend.escalation is not None))

    @property
    def phase(self) -> str:
        """completed, failed, waiting (only people can move it on), running, or new."""
        return "waiting" if self.waiting_on_people else self.status

    def outputs(self) -> dict[str, Json]:
        """Accepted outputs by task id, in plan order."""
        return {tid: r.output for tid, r in self.tasks.items() if r.status == "accepted"}

    def plan_view(self) -> PlanView:
        return PlanView(tasks=[r.task for r in self.tasks.values()], outputs=self.outputs())

    def copy(self) -> RunState:
        """An independent, unfrozen copy (O(tasks))."""
        clone = RunState()
        clone.__dict__.update(self.__dict__)
        clone.handlers, clone.by_capability = dict(self.handlers), dict(self.by_capability)
        clone.load, clone.streak = dict(self.load), dict(self.streak)
        clone.in_flight, clone.escalations = dict(self.in_flight), dict(self.escalations)
        clone.tasks = {tid: r.copy() for tid, r in self.tasks.items()}
        clone.dependents = {tid: deque(d) for tid, d in self.dependents.items()}
        clone.ready = {c: deque(q) for c, q in self.ready.items()}
        clone.pinned = {h: deque(q) for h, q in self.pinned.items()}
        clone.spend = self.spend.copy()
        clone.changed, clone.frozen = None, False
        return clone

    def freeze(self) -> RunState:
        """Mark this state read-only: `evolve` will copy it rather than change it."""
        self.frozen = True
        return self

    # --- evolve ------------------------------------------------------------------------

    def apply(self, event: Envelope, recorded: bytes | None = None) -> bytes:
        """Fold one event into this state in place. `recorded` is the event's bytes as
        stored (the digest chain runs over them); by default its canonical encoding.
        Returns the bytes it chained, so a writer need not encode the event again."""
        if event.seq != self.seq + 1:
            problem = "repeats an earlier seq" if event.seq <= self.seq else "leaves a gap"
            raise BadLogError(f"expected seq {self.seq + 1}, found {event.seq}: the log "
                              f"{problem}", run_id=event.run_id, seq=event.seq)
        if not self.seq and not isinstance(event, RunRequested):
            raise BadLogError(f"a run's log opens with RunRequested, not {type(event).__name__}",
                              run_id=event.run_id, seq=event.seq)
        if self.seq and event.run_id != self.run_id:
            raise BadLogError(f"event belongs to run {event.run_id!r}, not {self.run_id!r}",
                              run_id=self.run_id, seq=event.seq)
        if isinstance(event, Decision) and event.state_digest != self.digest:
            raise BadLogError(
                f"{type(event).__name__} records state digest {event.state_digest}, but the "
                f"log before it digests to {self.digest}: the log was edited or reordered",
                run_id=event.run_id, seq=event.seq)
        fold_in = self._APPLY.get(type(event))
        if fold_in is None:
            raise BadLogError(f"{type(event).__name__} is not an event type of this version of "
                              f"Baton (it knows {', '.join(EVENT_TYPES)})", run_id=event.run_id,
                              seq=event.seq)
        try:
            fold_in(self, event)
        except KeyError as unknown:
            raise BadLogError(f"{type(event).__name__} refers to {unknown.args[0]!r}, which "
                              "the log before it never introduced", run_id=event.run_id,
                              seq=event.seq) from None
        self.seq = event.seq
        if recorded is None:
            recorded = encode(event)
        self.digest = chain(self.digest, recorded)
        return recorded

    def _on_run_requested(self, e: RunRequested) -> None:
        if e.seq != 1:
            raise BadLogError("RunRequested may only open a run, at seq 1", run_id=e.run_id,
                              seq=e.seq)
        self.run_id = e.run_id
        self.status = "running"
        self.goal = e.goal
        self.requested = e.tasks
        self.policy = e.policy
        self.policy_digest = e.policy_digest
        self.spec, self.parent = e.spec, e.parent
        self.spend.budget, self.spend.requested_at = e.budget, e.recorded_at
        caps: dict[str, list[str]] = {}
        for h in e.handlers:
            self.handlers[h.name] = h
            self.load[h.name] = 0
            self.streak[h.name] = 0
            self.pinned[h.name] = deque()
            for cap in h.capabilities:
                caps.setdefault(cap, []).append(h.name)
        for cap, names in sorted(caps.items()):
            self.by_capability[cap] = tuple(sorted(names))
            self.ready[cap] = deque()

    def _on_run_forked(self, e: RunForked) -> None:
        if self.status != "running":
            raise BadLogError(f"RunForked at seq {e.seq} follows a run that has {self.status}",
                              run_id=e.run_id, seq=e.seq)
        self.forked_from = (e.parent_run_id, e.parent_seq)
        self.policy = e.policy
        self.policy_digest = e.policy_digest
        self.spec = e.spec
        self.policy_ref = e.policy_ref

    def _on_plan_changed(self, e: PlanChanged) -> None:
        added = self.requested if e.requested else e.added
        if e.requested:
            self.requested = ()  # the records hold the tasks from now on
        for task in added:
            blockers = 0
            for dep in task.dependencies:
                if dep in self.dependents:
                    self.dependents[dep].append(task.id)
                else:
                    self.dependents[dep] = deque([task.id])
                dep_record = self.tasks.get(dep)
                if dep_record is None or dep_record.status != "accepted":
                    blockers += 1
            record = TaskRecord(task, len(self.tasks), blockers)
            self.tasks[task.id] = self._touch(record)
            self.open_tasks = self.open_tasks + 1
            if blockers == 0:
                self._enqueue(record, self.ready[task.capability])

    def _touch(self, record: TaskRecord) -> TaskRecord:
        """`record`, noted as changed for the next snapshot (when they are kept)."""
        if self.changed is not None:
            self.changed.add(record.task.id)
        return record

    def _enqueue(self, record: TaskRecord, queue: deque[tuple[str, int]]) -> None:
        self._touch(record).status = "queued"
        record.token = record.token + 1
        self.enqueued = record.queued_at = self.enqueued + 1
        queue.append((record.task.id, record.token))
        self.queued = self.queued + 1

    def _dequeue(self, queue: deque[tuple[str, int]], record: TaskRecord) -> None:
        """Take `record`'s entry off the front of `queue`, with the stale entries ahead of
        it (their tasks were queued again since, or left the queue some other way)."""
        while queue:
            task_id, token = queue[0]
            if task_id == record.task.id and token == record.token:
                queue.popleft()
                return
            if self.live(task_id, token):
                return  # work ahead of it: dispatched out of queue order; left in place
            queue.popleft()

    def live(self, task_id: str, token: int) -> bool:
        """Is the queue entry (task_id, token) still its task's place in line?"""
        record = self.tasks[task_id]
        return record.status == "queued" and record.token == token

    def _on_dispatched(self, e: AssignmentDispatched) -> None:
        a = e.assignment
        record = self._touch(self.tasks[a.task_id])
        if record.current == a.id:
            return  # the same attempt dispatched again after a restart
        if record.status == "queued":
            self.queued = self.queued - 1
            queue = self.pinned[record.pinned] if record.pinned else self.ready[a.capability]
            self._dequeue(queue, record)
        record.status, record.assignment, record.attempts = "in_flight", a, a.attempt
        record.handler, record.pinned, record.received = a.handler, None, None
        tried = dict(record.tried)
        tried[a.handler] = tried.get(a.handler, 0) + 1
        record.tried = shared_tally(tuple(tried.items()))
        self.load[a.handler] = self.load[a.handler] + 1
        self.in_flight[a.id] = a.task_id

    def _on_result_received(self, e: ResultReceived) -> None:
        self.spend.add(e.result.usage)  # stale or not: it was spent
        task_id = self.in_flight.get(e.result.assignment_id)
        if task_id is not None:
            self._touch(self.tasks[task_id]).received = e.result.output

    def _note_inbox(self, e: HumanAnswered | CancelRequested) -> None:
        if e.inbox_seq is not None:
            self.inbox_seen = max(self.inbox_seen, e.inbox_seq)

    def _on_human_answered(self, e: HumanAnswered) -> None:
        self._note_inbox(e)
        task_id = self.escalations.get(e.escalation_id)
        if task_id is not None and e.action == "accept":
            self._touch(self.tasks[task_id]).received = e.output

    def _release(self, assignment: str | None) -> None:
        task_id = self.in_flight.get(assignment) if assignment else None
        if task_id is None or assignment is None:
            return
        record = self._touch(self.tasks[task_id])
        handler = record.handler
        assert handler is not None
        del self.in_flight[assignment]
        self.load[handler] = self.load[handler] - 1
        # The log keeps every assignment; the state keeps only those in flight (they are
        # most of a large run's memory otherwise).
        record.assignment = None

    def _close_escalation(self, record: TaskRecord) -> None:
        if record.escalation is not None:
            del self.escalations[record.escalation]
            record.escalation = None

    def _failed_attempt(self, assignment_id: str) -> TaskRecord | None:
        """Count a current attempt's failure against its handler; its task's record."""
        task_id = self.in_flight.get(assignment_id)
        if task_id is None:
            return None
        record = self.tasks[task_id]
        if record.handler is not None:
            self.streak[record.handler] = self.streak[record.handler] + 1
        return record

    def _on_failure(self, e: FailureReported) -> None:
        self.spend.add(e.failure.usage)
        record = self._failed_attempt(e.failure.assignment_id)
        if record is not None and record.handler and e.failure.kind == "worker_lost":
            lost = dict(record.lost)
            lost[record.handler] = lost.get(record.handler, 0) + 1
            self._touch(record).lost = tuple(lost.items())

    def _on_timer(self, e: TimerFired) -> None:
        self._failed_attempt(e.assignment_id)

    def _on_validated(self, e: ResultValidated) -> None:
        if e.outcome == "ignored":
            return
        record = self._touch(self.tasks[e.task_id])
        if e.outcome == "rejected":
            self._failed_attempt(e.assignment_id)
            self._release(e.assignment_id)
            return
        if e.assignment_id in self.in_flight and record.handler is not None:
            self.streak[record.handler] = 0
        self._release(e.assignment_id)
        self._close_escalation(record)
        record.status = "accepted"
        record.output = record.received
        record.received = None
        self.open_tasks = self.open_tasks - 1
        self.accepted = self.accepted + 1
        for dep_id in self.dependents.get(e.task_id, ()):
            dependent = self.tasks.get(dep_id)
            if dependent is None or dependent.status != "blocked":
                continue
            self._touch(dependent).blockers = dependent.blockers - 1
            if dependent.blockers == 0:
                self._enqueue(dependent, self.ready[dependent.task.capability])

    def _on_recovery(self, e: RecoveryChosen) -> None:
        record = self._touch(self.tasks[e.task_id])
        self._release(e.assignment_id)
        if e.action in ("retry", "reassign"):
            assert e.handler is not None
            self._close_escalation(record)
            if e.feedback:
                record.feedback = (*record.feedback, e.feedback)
            record.pinned = e.handler
            self._enqueue(record, self.pinned[e.handler])
        elif e.action == "escalate":
            record.status = "escalated"
        else:  # abandon
            self._close_escalation(record)
            if record.status == "queued":
                self.queued = self.queued - 1
            record.status = "abandoned"
            self.open_tasks = self.open_tasks - 1

    def _on_escalation(self, e: EscalationRaised) -> None:
        if not e.task_id:  # about the run: its budget, and which limit was reached
            self.spend.escalation, self.spend.asked = e.escalation_id, e.reason.facts["limit"]
            return
        record = self._touch(self.tasks[e.task_id])
        record.status = "escalated"
        record.escalation = e.escalation_id
        self.escalations[e.escalation_id] = e.task_id

    def _on_results_checked(self, e: ResultsChecked) -> None:
        if e.verdict.sent_back:  # those tasks, and the ones that used them, are open again
            again = [self._touch(self.tasks[task_id]) for task_id in
                     reopen(e.verdict.sent_back, self.tasks, self.dependents)]
            self.accepted, self.open_tasks = (self.accepted - len(again),
                                              self.open_tasks + len(again))

    def _on_completed(self, e: RunCompleted) -> None:
        self.status, self.output, self.spend.escalation = "completed", e.output, None

    def _on_failed(self, e: RunFailed) -> None:
        self.status, self.error, self.spend.escalation = "failed", e.error, None

    def _on_budget_timer(self, e: BudgetTimerFired) -> None:
        self.spend.elapsed = True

    def _on_budget_raised(self, e: BudgetRaised) -> None:
        self.spend.set_to(e.budget)

    def _ignore(self, e: Envelope) -> None:
        pass

    # How each type of event changes the state: every type the schema lists, no other.
    _APPLY: dict[type[Any], Callable[[RunState, Any], None]] = {
        RunRequested: _on_run_requested,
        RunForked: _on_run_forked,
        ResultReceived: _on_result_received,
        FailureReported: _on_failure,
        TimerFired: _on_timer,
        HumanAnswered: _on_human_answered,
        CancelRequested: _note_inbox,
        CoordinatorRestarted: _ignore,
        BudgetTimerFired: _on_budget_timer,
        BudgetRaised: _on_budget_raised,
        WorkerStuck: _ignore,
        WorkerReplaced: _ignore,
        PlanChanged: _on_plan_changed,
        AssignmentDispatched: _on_dispatched,
        ResultValidated: _on_validated,
        RecoveryChosen: _on_recovery,
        EscalationRaised: _on_escalation,
        ResultsChecked: _on_results_checked,
        RunCompleted: _on_completed,
        RunFailed: _on_failed,
    }


if set(RunState._APPLY) != set(EVENT_TYPES.values()):
    raise AssertionError("RunState._APPLY must fold exactly the event types schema lists")

INITIAL_STATE = RunState().freeze()


def evolve(state: RunState, event: Envelope) -> RunState:
    """The state after `event`. Advances `state` in place, unless it is frozen (like
    INITIAL_STATE), in which case a copy is advanced and returned."""
    if state.frozen:
        state = state.copy()
    state.apply(event)
    return state


def fold(events: Iterable[Envelope], state: RunState = INITIAL_STATE) -> RunState:
    """The state a sequence of events leads to."""
    for event in events:
        state = evolve(state, event)
    return state
