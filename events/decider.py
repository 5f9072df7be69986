"""The decider: RunState, INITIAL_STATE, evolve(state, event), decide(state, stimulus, policy).

`evolve` applies a recorded fact and judges nothing; `decide` holds every rule and
changes nothing. A run's state is ``reduce(evolve, log, INITIAL_STATE)``.

Both cost O(1) amortized per event in the number of tasks: work waits in per-capability
and per-handler queues (entries made stale by a later enqueue are skipped, not searched
for), loads are counted per handler, and the digest of the state is a hash chain over
the recorded events rather than a hash of the whole state.

For speed the state is advanced in place: `step` is the coordinator's primitive (fold the
stimulus, decide, fold the decisions). `decide` runs `step` under an undo journal and
rolls it back, so the caller's state is left exactly as it was.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from .errors import BadLog, BadSpec
from .model import (
    Assignment,
    FromTask,
    HandlerInfo,
    Json,
    Task,
    Verdict,
    assignment_id,
    canonical_json,
    digest,
    resolve_schema,
)
from .policy import Candidate, PlanView, Policy, RecoveryFacts
from .schema import (
    GENESIS_DIGEST,
    AssignmentDispatched,
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
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRequested,
    Stimulus,
    TimerFired,
    chain,
    encode,
)

TaskStatus = Literal["blocked", "queued", "in_flight", "accepted", "escalated", "abandoned"]
RunStatus = Literal["new", "running", "completed", "failed"]
TERMINAL_TASK: frozenset[str] = frozenset({"accepted", "abandoned"})


class TaskRecord:
    """Where one task stands: status, attempts, handlers tried, feedback, output."""

    __slots__ = (
        "assignment",
        "attempts",
        "blockers",
        "escalation",
        "feedback",
        "handler",
        "index",
        "lost",
        "output",
        "pinned",
        "received",
        "status",
        "task",
        "token",
        "tried",
    )

    def __init__(self, task: Task, index: int, blockers: int):
        self.task = task
        self.index = index  # place in plan order
        self.status: TaskStatus = "blocked"
        self.blockers = blockers  # dependencies not yet accepted
        self.attempts = 0
        self.tried: tuple[tuple[str, int], ...] = ()  # (handler, attempts) in order tried
        self.lost: tuple[tuple[str, int], ...] = ()  # (handler, attempts whose worker died)
        self.handler: str | None = None
        self.assignment: Assignment | None = None  # the attempt in flight, if any
        self.feedback: tuple[str, ...] = ()
        self.pinned: str | None = None  # handler the next attempt must go to
        self.token = 0  # which queue entry is live; older entries are stale
        self.received: Json = None  # output awaiting validation
        self.output: Json = None  # accepted output
        self.escalation: str | None = None

    @property
    def current(self) -> str | None:
        """The id of the attempt in flight, if any."""
        return self.assignment.id if self.status == "in_flight" and self.assignment else None

    def copy(self) -> TaskRecord:
        clone = TaskRecord.__new__(TaskRecord)
        for name in TaskRecord.__slots__:
            setattr(clone, name, getattr(self, name))
        return clone


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
        self.frozen = False
        self._plain_mutators()

    # --- reading -----------------------------------------------------------------------

    @property
    def waiting_on_people(self) -> bool:
        """True when the only work left is parked on open escalations."""
        return (
            self.status == "running"
            and bool(self.escalations)
            and not self.in_flight
            and self.queued == 0
        )

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
        clone.handlers = dict(self.handlers)
        clone.by_capability = dict(self.by_capability)
        clone.load = dict(self.load)
        clone.streak = dict(self.streak)
        clone.tasks = {tid: r.copy() for tid, r in self.tasks.items()}
        clone.dependents = {tid: deque(d) for tid, d in self.dependents.items()}
        clone.ready = {c: deque(q) for c, q in self.ready.items()}
        clone.pinned = {h: deque(q) for h, q in self.pinned.items()}
        clone.in_flight = dict(self.in_flight)
        clone.escalations = dict(self.escalations)
        clone.frozen = False
        clone._plain_mutators()
        return clone

    def __getstate__(self) -> dict[str, Any]:
        """What a snapshot keeps: everything but the mutators (they are rebound on load)."""
        kept = dict(self.__dict__)
        for name in ("_set", "_put", "_del", "_push", "_popleft"):
            kept.pop(name, None)
        return kept

    def __setstate__(self, kept: dict[str, Any]) -> None:
        self.__dict__.update(kept)
        self._plain_mutators()

    def freeze(self) -> RunState:
        """Mark this state read-only: `evolve` will copy it rather than change it."""
        self.frozen = True
        return self

    # --- mutation: every change goes through these five --------------------------------
    #
    # Outside a trial they are the builtins themselves (no Python frame per change, which
    # is most of what a fold costs); inside `_trial` they are the journaling versions below.

    def _plain_mutators(self) -> None:
        self._set: Callable[[object, str, Any], None] = setattr
        self._put: Callable[[dict[Any, Any], Any, Any], None] = dict.__setitem__
        self._del: Callable[[dict[Any, Any], Any], None] = dict.__delitem__
        self._push: Callable[[deque[Any], Any], None] = deque.append
        self._popleft: Callable[[deque[Any]], Any] = deque.popleft

    def _journaled_mutators(self, journal: list[tuple[Callable[..., Any], tuple[Any, ...]]]
                            ) -> None:
        def set_(obj: object, attr: str, value: Any) -> None:
            journal.append((setattr, (obj, attr, getattr(obj, attr))))
            setattr(obj, attr, value)

        def put(mapping: dict[Any, Any], key: Any, value: Any) -> None:
            if key in mapping:
                journal.append((mapping.__setitem__, (key, mapping[key])))
            else:
                journal.append((mapping.__delitem__, (key,)))
            mapping[key] = value

        def del_(mapping: dict[Any, Any], key: Any) -> None:
            # Re-inserting moves the key to the end; nothing reads these dicts' order
            # (in-flight work is put in plan order where order matters).
            journal.append((mapping.__setitem__, (key, mapping[key])))
            del mapping[key]

        def push(queue: deque[Any], item: Any) -> None:
            journal.append((queue.pop, ()))
            queue.append(item)

        def popleft(queue: deque[Any]) -> Any:
            item = queue.popleft()
            journal.append((queue.appendleft, (item,)))
            return item

        self._set, self._put, self._del, self._push, self._popleft = (
            set_, put, del_, push, popleft)

    @contextmanager
    def _trial(self) -> Iterator[None]:
        """Run a block whose changes to this state are all undone afterwards."""
        if self._set is not setattr:
            raise RuntimeError("decide() is not re-entrant on one state")
        journal: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._journaled_mutators(journal)
        try:
            yield
        finally:
            self._plain_mutators()
            for undo, args in reversed(journal):
                undo(*args)

    # --- evolve ------------------------------------------------------------------------

    def apply(self, event: Envelope, recorded: bytes | None = None) -> bytes:
        """Fold one event into this state in place. `recorded` is the event's bytes as
        stored (the digest chain runs over them); by default its canonical encoding.
        Returns the bytes it chained, so a writer need not encode the event again."""
        if event.seq != self.seq + 1:
            problem = "repeats an earlier seq" if event.seq <= self.seq else "leaves a gap"
            raise BadLog(
                f"expected seq {self.seq + 1}, found {event.seq}: the log {problem}",
                run_id=event.run_id,
                seq=event.seq,
            )
        if self.seq and event.run_id != self.run_id:
            raise BadLog(
                f"event belongs to run {event.run_id!r}, not {self.run_id!r}",
                run_id=self.run_id,
                seq=event.seq,
            )
        if isinstance(event, Decision) and event.state_digest != self.digest:
            raise BadLog(
                f"{type(event).__name__} records state digest {event.state_digest}, but the "
                f"log before it digests to {self.digest}: the log was edited or reordered",
                run_id=event.run_id,
                seq=event.seq,
            )
        try:
            self._APPLY[type(event)](self, event)
        except KeyError as unknown:
            raise BadLog(
                f"{type(event).__name__} refers to {unknown.args[0]!r}, which the log "
                "before it never introduced",
                run_id=event.run_id,
                seq=event.seq,
            ) from None
        self._set(self, "seq", event.seq)
        if recorded is None:
            recorded = encode(event)
        self._set(self, "digest", chain(self.digest, recorded))
        return recorded

    def _on_run_requested(self, e: RunRequested) -> None:
        if e.seq != 1:
            raise BadLog("RunRequested may only open a run, at seq 1", run_id=e.run_id,
                         seq=e.seq)
        self._set(self, "run_id", e.run_id)
        self._set(self, "status", "running")
        self._set(self, "goal", e.goal)
        self._set(self, "requested", e.tasks)
        self._set(self, "policy", e.policy)
        self._set(self, "policy_digest", e.policy_digest)
        self._set(self, "spec", e.spec)
        caps: dict[str, list[str]] = {}
        for h in e.handlers:
            self._put(self.handlers, h.name, h)
            self._put(self.load, h.name, 0)
            self._put(self.streak, h.name, 0)
            self._put(self.pinned, h.name, deque())
            for cap in h.capabilities:
                caps.setdefault(cap, []).append(h.name)
        for cap, names in sorted(caps.items()):
            self._put(self.by_capability, cap, tuple(sorted(names)))
            self._put(self.ready, cap, deque())

    def _on_run_forked(self, e: RunForked) -> None:
        if self.status != "running":
            raise BadLog(f"RunForked at seq {e.seq} follows a run that has {self.status}",
                         run_id=e.run_id, seq=e.seq)
        self._set(self, "forked_from", (e.parent_run_id, e.parent_seq))
        self._set(self, "policy", e.policy)
        self._set(self, "policy_digest", e.policy_digest)
        self._set(self, "spec", e.spec)
        self._set(self, "policy_ref", e.policy_ref)

    def _on_plan_changed(self, e: PlanChanged) -> None:
        added = self.requested if e.requested else e.added
        if e.requested:
            self._set(self, "requested", ())  # the records hold the tasks from now on
        for task in added:
            blockers = 0
            for dep in task.dependencies:
                if dep in self.dependents:
                    self._push(self.dependents[dep], task.id)
                else:
                    self._put(self.dependents, dep, deque([task.id]))
                dep_record = self.tasks.get(dep)
                if dep_record is None or dep_record.status != "accepted":
                    blockers += 1
            record = TaskRecord(task, len(self.tasks), blockers)
            self._put(self.tasks, task.id, record)
            self._set(self, "open_tasks", self.open_tasks + 1)
            if blockers == 0:
                self._enqueue(record, self.ready[task.capability])

    def _enqueue(self, record: TaskRecord, queue: deque[tuple[str, int]]) -> None:
        self._set(record, "status", "queued")
        self._set(record, "token", record.token + 1)
        self._push(queue, (record.task.id, record.token))
        self._set(self, "queued", self.queued + 1)

    def _on_dispatched(self, e: AssignmentDispatched) -> None:
        a = e.assignment
        record = self.tasks[a.task_id]
        if record.current == a.id:
            return  # the same attempt dispatched again after a restart
        if record.status == "queued":
            self._set(self, "queued", self.queued - 1)
        self._set(record, "status", "in_flight")
        self._set(record, "assignment", a)
        self._set(record, "attempts", a.attempt)
        self._set(record, "handler", a.handler)
        self._set(record, "pinned", None)
        tried = dict(record.tried)
        tried[a.handler] = tried.get(a.handler, 0) + 1
        self._set(record, "tried", tuple(tried.items()))
        self._set(record, "received", None)
        self._put(self.load, a.handler, self.load[a.handler] + 1)
        self._put(self.in_flight, a.id, a.task_id)

    def _on_result_received(self, e: ResultReceived) -> None:
        task_id = self.in_flight.get(e.result.assignment_id)
        if task_id is not None:
            self._set(self.tasks[task_id], "received", e.result.output)

    def _note_inbox(self, e: HumanAnswered | CancelRequested) -> None:
        if e.inbox_seq is not None:
            self._set(self, "inbox_seen", max(self.inbox_seen, e.inbox_seq))

    def _on_cancel_requested(self, e: CancelRequested) -> None:
        self._note_inbox(e)

    def _on_human_answered(self, e: HumanAnswered) -> None:
        self._note_inbox(e)
        task_id = self.escalations.get(e.escalation_id)
        if task_id is not None and e.action == "accept":
            self._set(self.tasks[task_id], "received", e.output)

    def _release(self, assignment: str | None) -> None:
        task_id = self.in_flight.get(assignment) if assignment else None
        if task_id is None:
            return
        record = self.tasks[task_id]
        handler = record.handler
        assert handler is not None
        self._del(self.in_flight, assignment)
        self._put(self.load, handler, self.load[handler] - 1)
        # The log keeps every assignment; the state keeps only those in flight (they are
        # most of a large run's memory otherwise).
        self._set(record, "assignment", None)

    def _close_escalation(self, record: TaskRecord) -> None:
        if record.escalation is not None:
            self._del(self.escalations, record.escalation)
            self._set(record, "escalation", None)

    def _failed_attempt(self, assignment_id: str) -> None:
        task_id = self.in_flight.get(assignment_id)
        handler = self.tasks[task_id].handler if task_id else None
        if handler is not None:
            self._put(self.streak, handler, self.streak[handler] + 1)

    def _on_failure(self, e: FailureReported) -> None:
        self._failed_attempt(e.failure.assignment_id)
        task_id = self.in_flight.get(e.failure.assignment_id)
        if task_id is not None and e.failure.kind == "worker_lost":
            record = self.tasks[task_id]
            handler = record.handler or ""  # in flight, so dispatched to one
            lost = dict(record.lost)
            lost[handler] = lost.get(handler, 0) + 1
            self._set(record, "lost", tuple(lost.items()))

    def _on_timer(self, e: TimerFired) -> None:
        self._failed_attempt(e.assignment_id)

    def _on_validated(self, e: ResultValidated) -> None:
        if e.outcome == "ignored":
            return
        record = self.tasks[e.task_id]
        if e.outcome == "rejected":
            self._failed_attempt(e.assignment_id)
            self._release(e.assignment_id)
            return
        if e.assignment_id in self.in_flight and record.handler is not None:
            self._put(self.streak, record.handler, 0)
        self._release(e.assignment_id)
        self._close_escalation(record)
        self._set(record, "status", "accepted")
        self._set(record, "output", record.received)
        self._set(record, "received", None)
        self._set(self, "open_tasks", self.open_tasks - 1)
        self._set(self, "accepted", self.accepted + 1)
        for dep_id in self.dependents.get(e.task_id, ()):
            dependent = self.tasks.get(dep_id)
            if dependent is None or dependent.status != "blocked":
                continue
            self._set(dependent, "blockers", dependent.blockers - 1)
            if dependent.blockers == 0:
                self._enqueue(dependent, self.ready[dependent.task.capability])

    def _on_recovery(self, e: RecoveryChosen) -> None:
        record = self.tasks[e.task_id]
        self._release(e.assignment_id)
        if e.action in ("retry", "reassign"):
            assert e.handler is not None
            self._close_escalation(record)
            if e.feedback:
                self._set(record, "feedback", (*record.feedback, e.feedback))
            self._set(record, "pinned", e.handler)
            self._enqueue(record, self.pinned[e.handler])
        elif e.action == "escalate":
            self._set(record, "status", "escalated")
        else:  # abandon
            self._close_escalation(record)
            if record.status == "queued":
                self._set(self, "queued", self.queued - 1)
            self._set(record, "status", "abandoned")
            self._set(self, "open_tasks", self.open_tasks - 1)

    def _on_escalation(self, e: EscalationRaised) -> None:
        record = self.tasks[e.task_id]
        self._set(record, "status", "escalated")
        self._set(record, "escalation", e.escalation_id)
        self._put(self.escalations, e.escalation_id, e.task_id)

    def _on_completed(self, e: RunCompleted) -> None:
        self._set(self, "status", "completed")
        self._set(self, "output", e.output)

    def _on_failed(self, e: RunFailed) -> None:
        self._set(self, "status", "failed")
        self._set(self, "error", e.error)

    def _ignore(self, e: Envelope) -> None:
        pass

    _APPLY: dict[type[Any], Callable[[RunState, Any], None]] = {
        RunRequested: _on_run_requested,
        RunForked: _on_run_forked,
        ResultReceived: _on_result_received,
        FailureReported: _on_failure,
        TimerFired: _on_timer,
        HumanAnswered: _on_human_answered,
        CancelRequested: _on_cancel_requested,
        CoordinatorRestarted: _ignore,
        PlanChanged: _on_plan_changed,
        AssignmentDispatched: _on_dispatched,
        ResultValidated: _on_validated,
        RecoveryChosen: _on_recovery,
        EscalationRaised: _on_escalation,
        ResultsChecked: _ignore,
        RunCompleted: _on_completed,
        RunFailed: _on_failed,
    }


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


# --- plan validation -------------------------------------------------------------------


def plan_problems(
    added: Sequence[Task],
    existing: Mapping[str, Any],
    by_capability: Mapping[str, Sequence[str]],
) -> list[str]:
    """Why `added` cannot join a plan that already holds `existing` (empty when it can):
    duplicate ids, unknown dependencies, capabilities no handler has, cycles."""
    problems: list[str] = []
    new: dict[str, Task] = {}
    for task in added:
        if task.id in existing or task.id in new:
            problems.append(f"task id {task.id!r} is used twice")
        new[task.id] = task
    for task in added:
        if task.capability not in by_capability:
            known = ", ".join(sorted(by_capability)) or "none"
            problems.append(
                f"task {task.id!r} needs capability {task.capability!r}, which no handler "
                f"has (handlers offer: {known})"
            )
        for dep in task.dependencies:
            if dep not in existing and dep not in new:
                problems.append(f"task {task.id!r} depends on unknown task {dep!r}")
            elif getattr(existing.get(dep), "status", None) == "abandoned":
                problems.append(f"task {task.id!r} depends on abandoned task {dep!r}")
        if task.output_schema is not None:
            try:
                resolve_schema(task.output_schema)
            except BadSpec as error:
                problems.append(f"task {task.id!r}: {error}")
    cycle = _cycle(new)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems


def _cycle(tasks: Mapping[str, Task]) -> list[str]:
    """One dependency cycle among `tasks` (as a path), or [] when there is none."""
    indegree = {tid: 0 for tid in tasks}
    users: dict[str, list[str]] = {tid: [] for tid in tasks}
    for tid, task in tasks.items():
        for dep in task.dependencies:
            if dep in tasks:
                indegree[tid] += 1
                users[dep].append(tid)
    todo = deque(tid for tid, n in indegree.items() if n == 0)
    while todo:
        for user in users[todo.popleft()]:
            indegree[user] -= 1
            if indegree[user] == 0:
                todo.append(user)
    stuck = {tid for tid, n in indegree.items() if n > 0}
    if not stuck:
        return []
    path, node = [], min(stuck)
    while node not in path:
        path.append(node)
        node = min(d for d in tasks[node].dependencies if d in stuck)
    return [*path[path.index(node) :], node]


# --- decide ----------------------------------------------------------------------------


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _as_json(value: Any) -> Json:
    """`value` as a reader of the log will decode it (tuples become lists, and so on),
    so a replay compares like with like. Copies only when it has to."""
    return value if _is_json(value) else json.loads(json.dumps(value, default=str))


def step(
    state: RunState, stimulus: Stimulus, policy: Policy, recorded: bytes | None = None
) -> list[Decision]:
    """Fold `stimulus` into `state`, decide what follows, fold those decisions too, and
    return them. This is the coordinator's turn; `state` is advanced in place."""
    decided = turn(state, stimulus, policy, recorded)[1:]
    return [event for event, _ in decided]  # type: ignore[misc]


def turn(
    state: RunState, stimulus: Stimulus, policy: Policy, recorded: bytes | None = None
) -> list[tuple[Envelope, bytes]]:
    """`step`, returning the stimulus and its decisions each with its canonical bytes,
    ready to append (a large plan is encoded once, not twice)."""
    if not isinstance(stimulus, Stimulus):
        raise TypeError(f"decide() takes a stimulus, not {type(stimulus).__name__}")
    first = (stimulus, state.apply(stimulus, recorded))
    return [first, *_Turn(state, stimulus, policy).run()]


def decide(state: RunState, stimulus: Stimulus, policy: Policy) -> list[Decision]:
    """The decisions that follow when `stimulus` arrives in `state`. Pure: `state` is
    left exactly as it was (the turn runs under an undo journal)."""
    with state._trial():
        return step(state, stimulus, policy)


class _Turn:
    """One coordinator turn: the decisions that follow from one stimulus."""

    def __init__(self, state: RunState, stimulus: Stimulus, policy: Policy):
        self.state = state
        self.stimulus = stimulus
        self.policy = policy
        self.out: list[tuple[Decision, bytes]] = []

    def run(self) -> list[tuple[Decision, bytes]]:
        s = self.state
        if s.status != "running" and not isinstance(self.stimulus, RunRequested):
            return []  # a finished run records late stimuli and decides nothing
        handle = getattr(self, "_on_" + type(self.stimulus).__name__)
        handle(self.stimulus)
        if s.status == "running":
            self._fill()
            self._settle()
        return self.out

    def emit(
        self,
        cls: type[Decision],
        rule: str,
        facts: dict[str, Json] | None = None,
        candidates: Sequence[dict[str, Json]] = (),
        **fields: Any,
    ) -> Any:
        s = self.state
        event = cls(
            run_id=s.run_id,
            seq=s.seq + 1,
            cause=self.stimulus.seq,
            state_digest=s.digest,
            reason=Reason(rule=rule, facts=facts or {}, candidates=tuple(candidates)),
            **fields,
        )
        self.out.append((event, s.apply(event)))
        return event

    # --- stimuli -----------------------------------------------------------------------

    def _on_RunRequested(self, e: RunRequested) -> None:
        s = self.state
        problems = plan_problems(e.tasks, {}, s.by_capability)
        names = [h.name for h in e.handlers]
        if len(set(names)) != len(names):
            problems.append("handler names are not unique: " + ", ".join(names))
        facts: dict[str, Json] = {"tasks": len(e.tasks), "handlers": names}
        if problems:
            self.emit(RunFailed, "plan.invalid", {**facts, "problems": problems},
                      error="the plan cannot run: " + "; ".join(problems))
        elif not e.tasks:
            self.emit(RunFailed, "plan.empty", facts, error="the plan has no tasks")
        else:
            self.emit(PlanChanged, "plan.initial", facts, requested=True)

    def _on_RunForked(self, e: RunForked) -> None:
        """Nothing to answer in itself: the fork's policy takes over, and `_fill`, which
        every turn ends with, dispatches whatever that policy would."""

    def _on_ResultReceived(self, e: ResultReceived) -> None:
        aid = e.result.assignment_id
        task_id = self.state.in_flight.get(aid)
        if task_id is None:
            self._ignore(aid, "result.not_current")
            return
        self._judge(self.state.tasks[task_id], aid, e.result.output)

    def _on_FailureReported(self, e: FailureReported) -> None:
        aid = e.failure.assignment_id
        task_id = self.state.in_flight.get(aid)
        if task_id is None:
            self._ignore(aid, "failure.not_current")
            return
        self._recover(self.state.tasks[task_id], aid, e.failure.summary(), e.failure.kind)

    def _on_TimerFired(self, e: TimerFired) -> None:
        task_id = self.state.in_flight.get(e.assignment_id)
        if task_id is None:
            self._ignore(e.assignment_id, "timer.not_current")
            return
        record = self.state.tasks[task_id]
        timeout = record.task.budget.timeout_s
        self._recover(record, e.assignment_id, f"timeout: no answer within {timeout}s", "timeout")

    def _on_HumanAnswered(self, e: HumanAnswered) -> None:
        s = self.state
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
            self.emit(RecoveryChosen, "human.abandon", facts, task_id=task_id,
                      assignment_id=None, action="abandon", feedback=e.note)
            self._abandon_dependents(task_id)
        else:
            handler = e.handler if e.action == "reassign" else record.handler
            if handler is None or handler not in s.by_capability.get(record.task.capability, ()):
                handler = s.by_capability[record.task.capability][0]
            self.emit(RecoveryChosen, f"human.{e.action}", facts, task_id=task_id,
                      assignment_id=None, action=e.action, handler=handler, feedback=e.note)

    def _on_CancelRequested(self, e: CancelRequested) -> None:
        in_flight = self._in_flight_in_dispatch_order()
        for aid, task_id in in_flight:
            self.emit(RecoveryChosen, "cancel.abandon_in_flight", {"note": e.note},
                      task_id=task_id, assignment_id=aid, action="abandon")
        self.emit(RunFailed, "run.cancelled",
                  {"note": e.note, "abandoned": [aid for aid, _ in in_flight]},
                  error="cancelled" + (f": {e.note}" if e.note else ""))

    def _on_CoordinatorRestarted(self, e: CoordinatorRestarted) -> None:
        for aid, task_id in self._in_flight_in_dispatch_order():
            a = self.state.tasks[task_id].assignment
            self.emit(AssignmentDispatched, "restart.redispatch_same_attempt",
                      {"assignment": aid, "handler": a.handler if a else None}, assignment=a)

    def _in_flight_in_dispatch_order(self) -> list[tuple[str, str]]:
        s = self.state
        return sorted(s.in_flight.items(),
                      key=lambda item: (s.tasks[item[1]].index, item[0]))

    # --- the rules ---------------------------------------------------------------------

    def _ignore(self, aid: str, rule: str) -> None:
        task_id = aid.rsplit("#", 1)[0]
        record = self.state.tasks.get(task_id)
        facts: dict[str, Json] = {
            "assignment": aid,
            "current": record.current if record else None,
            "task_status": record.status if record else None,
        }
        problem = f"{aid} is not the attempt in flight; recorded and ignored"
        self.emit(ResultValidated, rule, facts, assignment_id=aid, task_id=task_id,
                  outcome="ignored", verdict=Verdict(accepted=False, problems=(problem,)))

    def _judge(self, record: TaskRecord, aid: str, output: Json) -> None:
        task = record.task
        verdict = self.policy.validate(task, output)
        proposed: Sequence[Task] = ()
        if verdict.accepted:
            proposed = tuple(self.policy.expand(task, output))
            problems = proposed and plan_problems(proposed, self.state.tasks,
                                                  self.state.by_capability)
            if problems:
                verdict = Verdict.of([f"proposed tasks rejected: {p}" for p in problems])
        facts: dict[str, Json] = {"assignment": aid, "checks": len(task.done_when),
                                       "output_schema": task.output_schema}
        outcome = "accepted" if verdict.accepted else "rejected"
        self.emit(ResultValidated, f"validate.{outcome}", facts, assignment_id=aid,
                  task_id=task.id, outcome=outcome, verdict=verdict)
        if not verdict.accepted:
            if record.status == "escalated":
                return  # a person's output was rejected; the escalation stays open
            self._recover(record, aid, "; ".join(verdict.problems), "rejected")
            return
        if proposed:
            self.emit(PlanChanged, "expand.from_output",
                      {"from_task": task.id, "assignment": aid, "added": len(proposed)},
                      added=proposed)

    def _recover(self, record: TaskRecord, aid: str, problem: str, kind: str) -> None:
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
        )
        choice = self.policy.recover(task, facts)
        target = choice.handler
        if choice.action == "retry":
            target = target or handler
        if choice.action in ("retry", "reassign") and (
            target not in s.by_capability[task.capability]
        ):
            raise BadSpec(
                f"policy.recover chose to {choice.action} task {task.id!r} on {target!r}, "
                f"which lacks capability {task.capability!r}"
            )
        self.emit(RecoveryChosen, choice.rule, facts.as_facts(),
                  [c.as_fact() for c in alternatives], task_id=task.id, assignment_id=aid,
                  action=choice.action, handler=target if choice.action in ("retry", "reassign")
                  else None, feedback=choice.feedback)
        if choice.action == "escalate":
            question = (
                f"Task {task.id!r} was not done after {record.attempts} attempt(s) "
                f"({problem}) and no other handler can take it. Retry, reassign, abandon, "
                "or supply the output?"
            )
            self.emit(EscalationRaised, "escalate.ask_person", facts.as_facts(),
                      escalation_id=f"{s.run_id}:esc-{s.seq + 1}", task_id=task.id,
                      question=question)
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
                self.emit(RecoveryChosen, "recover.dependency_abandoned",
                          {"dependency": gone}, task_id=dep_id, assignment_id=None,
                          action="abandon")
                todo.append(dep_id)

    def _fill(self) -> None:
        """Dispatch queued work while handlers have free capacity: pinned retries first,
        then fresh tasks, capability by capability in name order."""
        s = self.state
        for handler, queue in s.pinned.items():
            while queue and self._has_room(handler):
                record = self._live_head(queue)
                if record is None:
                    continue
                rule = "dispatch.retry" if handler == record.handler else "dispatch.reassign"
                candidate = Candidate(handler, s.load[handler], s.handlers[handler].capacity,
                                      s.streak[handler])
                self._dispatch(record, handler, rule, [candidate])
        for capability, queue in s.ready.items():
            while queue:
                record = self._live_head(queue, peek=True)
                if record is None:
                    continue
                weighed = [
                    Candidate(h, s.load[h], s.handlers[h].capacity, s.streak[h],
                              self._has_room(h))
                    for h in s.by_capability[capability]
                ]
                if not any(c.free for c in weighed):
                    break
                routing = self.policy.route(record.task, weighed)
                if routing.handler is None:
                    break  # the policy holds this capability's work for now
                if routing.handler not in {c.handler for c in weighed if c.free}:
                    raise BadSpec(
                        f"policy.route chose {routing.handler!r} for task {record.task.id!r}, "
                        "which is not among the free candidates"
                    )
                s._popleft(queue)
                self._dispatch(record, routing.handler, routing.rule, weighed, routing.facts)

    def _has_room(self, handler: str) -> bool:
        capacity = self.state.handlers[handler].capacity
        return capacity is None or self.state.load[handler] < capacity

    def _live_head(self, queue: deque[tuple[str, int]], peek: bool = False) -> TaskRecord | None:
        """The task at the head of `queue` if its entry is live; a stale entry (the task
        was queued again since, or dispatched) is dropped and None returned."""
        task_id, token = queue[0]
        record = self.state.tasks[task_id]
        live = record.status == "queued" and record.token == token
        if not live or not peek:
            self.state._popleft(queue)
        return record if live else None

    def _dispatch(
        self, record: TaskRecord, handler: str, rule: str, weighed: Sequence[Candidate],
        noted: Mapping[str, Json] | None = None,
    ) -> None:
        task = record.task
        inputs: dict[str, Json] = {}
        for name, value in task.inputs.items():
            if isinstance(value, FromTask):
                inputs[name] = self.state.tasks[value.from_task].output
            else:
                inputs[name] = value
        attempt = record.attempts + 1
        instructions = task.instructions
        if record.feedback:
            earlier = "Earlier attempts were not accepted:\n" + "\n".join(
                f"- {f}" for f in record.feedback
            )
            instructions = f"{instructions}\n\n{earlier}" if instructions else earlier
        assignment = Assignment(
            id=assignment_id(task.id, attempt),
            task_id=task.id,
            attempt=attempt,
            handler=handler,
            capability=task.capability,
            instructions=instructions,
            feedback=record.feedback,
            inputs=inputs,
            context_digest=digest(canonical_json(inputs)),
            output_schema=task.output_schema,
            timeout_s=task.budget.timeout_s,
        )
        facts: dict[str, Json] = {"task": task.id, "attempt": attempt,
                                       "capability": task.capability,
                                       "inputs": sorted(inputs), **(noted or {})}
        self.emit(AssignmentDispatched, rule, facts, [c.as_fact() for c in weighed],
                  assignment=assignment)

    def _settle(self) -> None:
        s = self.state
        if s.open_tasks:
            return
        plan = s.plan_view()
        verdict = self.policy.check(plan)
        facts: dict[str, Json] = {"tasks": len(s.tasks), "accepted": s.accepted}
        self.emit(ResultsChecked, "check.all_settled", facts, verdict=verdict)
        if verdict.accepted:
            output = _as_json(self.policy.synthesize(plan))
            self.emit(RunCompleted, "run.completed", facts, output=output)
        else:
            self.emit(RunFailed, "run.check_failed", {**facts, "problems": list(verdict.problems)},
                      error="; ".join(verdict.problems))
