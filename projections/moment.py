"""A run's ledger at any seq, from its timeline (events/store/timeline.py), never
folding its log: what a person moving along a run asks of each moment (each task's
status, attempts, handler and outcome, what was in flight, the questions open to
people) answered with Arrow over a few numbers an event.

It is the Ledger that folding the log to that seq gives (ledger.py), outputs aside: a
test holds the two to the same answer at many seqs of every run the test suite makes.
What the timeline holds no number for (a rejection's problems, a failure's message,
an escalation's question, the run's output) is read from the bodies of the events
that say it, and only of those that are some task's latest word.

How a task's status follows from its events, as `RunState` folds them:
- its last own move sets it: a dispatch (in flight), an acceptance, a recovery (retry
  or reassign: queued; escalate; abandon), an escalation raised;
- before its first (or after a check sent it back to be redone, until its next) it is
  blocked on the dependencies that were not accepted when it was added (reopened), and
  queued once as many acceptances of its dependencies have followed: each counts down
  its blockers, as the fold's do. A task reopened with none waits for its recovery.
"""

from __future__ import annotations

import bisect
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from baton.events.budget import Spend
from baton.events.errors import BadInputError
from baton.events.model import RunBudget, Usage
from baton.events.schema import (
    BudgetRaised,
    EscalationRaised,
    Event,
    FailureReported,
    RecoveryChosen,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunForked,
)
from baton.events.store import EventStore
from baton.events.store.timeline import Timeline, timeline

from .columnar import Coded, counting, patched, rows_of
from .ledger import Escalation, Ledger, TaskTable

_SHIFT = 1 << 20  # an assignment as one number: task * _SHIFT + attempt
Reopened = list[tuple[int, dict[int, str]]]  # (seq of the check, {task: its outcome})


def ledger_at(store: EventStore, run_id: str, seq: int | None = None) -> Ledger:
    """The run's ledger just after event `seq` (default: its last), from its timeline.
    Tasks' outputs are left out (None): `state_at` has them."""
    last = store.require_run(run_id)
    until = last if seq is None else seq
    if not 1 <= until <= last:
        raise BadInputError(f"run {run_id!r} has events 1 to {last}; seq {until} is not "
                            "one of them")
    return Moment(store, timeline(store, run_id, until), until).ledger()


class Moment:
    """One seq of a run, read from its timeline."""

    def __init__(self, store: EventStore, line: Timeline, until: int):
        self.store, self.run_id, self.until, self.head = store, line.run_id, until, line.head
        events = line.events.slice(0, until).unify_dictionaries().combine_chunks()
        self.events = events.append_column("seq", pc.add(counting(until), 1))
        self.type = Coded(events.column("type").chunk(0))
        self.outcome = Coded(events.column("outcome").chunk(0))
        self.rule = Coded(events.column("rule").chunk(0))
        self.task = events.column("task").chunk(0)
        self.seq = self.events.column("seq").chunk(0)
        self.key = pc.add(pc.multiply(pc.cast(self.task, pa.int64()), _SHIFT),
                          pc.cast(events.column("attempt").chunk(0), pa.int64()))
        self.plan = line.plan(until)
        self.sent = self.type.among("AssignmentDispatched")
        validated = self.type.among("ResultValidated")
        self.accepted = pc.and_(validated, self.outcome.among("accepted"))
        self.rejected = pc.and_(validated, self.outcome.among("rejected"))
        self.recovered = self.type.among("RecoveryChosen")
        # The rows about a task, in task order and, for each task, in seq order.
        about = pc.cast(pc.indices_nonzero(pc.is_valid(self.task)), pa.int64())
        self.by_task = pc.take(about, pc.sort_indices(pc.take(self.task, about)))
        self._bodies: dict[int, Event] = {}

    @cached_property
    def ids(self) -> list[str]:
        ids: list[str] = self.plan.column("id").to_pylist()
        return ids

    @cached_property
    def place(self) -> dict[str, int]:
        return {task_id: index for index, task_id in enumerate(self.ids)}

    def body(self, seq: int) -> Event:
        """The event at `seq`, decoded (each read once)."""
        if seq not in self._bodies:
            [self._bodies[seq]] = self.store.read(self.run_id, after=seq - 1, until=seq)
        return self._bodies[seq]

    def rows(self, mask: Any, *names: str) -> pa.Table:
        return self.events.filter(mask).select(list(names))

    def last(self, mask: pa.Array) -> pa.Array:
        """For each task of the plan, the row of its last event that `mask` picks (null
        for a task with none)."""
        rows = pc.filter(self.by_task, pc.take(mask, self.by_task))
        tasks = pc.take(self.task, rows)
        if not len(rows):
            return pa.nulls(self.plan.num_rows, pa.int64())
        ends = pa.concat_arrays([pc.not_equal(tasks.slice(0, len(tasks) - 1),
                                              tasks.slice(1)), pa.array([True])])
        return pc.scatter(pc.filter(rows, ends), pc.filter(tasks, ends),
                          max_index=self.plan.num_rows - 1)

    # --- the ledger ----------------------------------------------------------------------

    def ledger(self) -> Ledger:
        moves = pc.or_(pc.or_(self.sent, self.accepted), pc.or_(
            pc.and_(self.recovered,
                    self.outcome.among("retry", "reassign", "escalate", "abandon")),
            self.type.among("EscalationRaised")))
        moved = self.last(moves)
        dispatched = self.last(self.sent)
        reopened = self.reopened()
        statuses = self.statuses(moved, reopened)
        columns = pa.table({
            "id": self.plan.column("id"),
            "capability": self.plan.column("capability"),
            "required": self.plan.column("required"),
            "status": statuses,
            "attempts": pc.fill_null(pc.take(self.events.column("attempt"), dispatched), 0),
            "handler": pc.cast(pc.take(self.events.column("handler"), dispatched),
                               pa.string()),
            "outcome": self.outcomes(reopened),
        })
        queued = pc.sum(pc.equal(statuses, "queued")).as_py() or 0
        return self.ledger_of(TaskTable(columns), queued, dispatched)

    def ledger_of(self, tasks: TaskTable, queued: int, dispatched: pa.Array) -> Ledger:
        """The run's own lines around its tasks': status, escalations, spend, times."""
        head = self.head
        spend, asked = self.spend()
        escalations = self.open_escalations()
        ended = self.rows(self.type.among("RunCompleted", "RunFailed"), "seq").column("seq")
        end = self.body(ended[0].as_py()) if len(ended) else None
        waiting = end is None and not self.in_flight(dispatched) and (
            (bool(escalations) and not queued) or spend.escalation is not None)
        if asked is not None:
            escalations.append(Escalation(id=asked.escalation_id, task_id="",
                                          question=asked.question))
        forks = self.rows(self.type.among("RunForked"), "seq").column("seq")
        fork = self.body(forks[-1].as_py()) if len(forks) else None
        parent = head.get("parent")
        counts = pc.value_counts(self.type.codes).to_pylist()
        names = {code: name for name, code in self.type.code.items()}
        return Ledger(
            run_id=self.run_id,
            goal=head.get("goal", ""),
            status="waiting" if waiting else (
                "completed" if isinstance(end, RunCompleted) else
                "failed" if isinstance(end, RunFailed) else "running"),
            tasks=tasks,
            output=end.output if isinstance(end, RunCompleted) else None,
            error=end.error if isinstance(end, RunFailed) else "",
            escalations=escalations,
            events=self.until,
            counts={names[count["values"]]: int(count["counts"]) for count in counts},
            requested_at=head.get("requested_at"),
            last_recorded_at=self.events.column("recorded_at")[self.until - 1].as_py(),
            forked_from=f"{fork.parent_run_id}@{fork.parent_seq}"
            if isinstance(fork, RunForked) else None,
            parent=f"{parent['run_id']} {parent['assignment_id']}" if parent else None,
            spent=spend.summary() if spend.reported else "",
            budget=spend.left(),
        )

    # --- each task's status --------------------------------------------------------------

    def reopened(self) -> Reopened:
        """Each check that sent tasks back: its seq, and the tasks it opened again with
        the outcome each then shows."""
        checks = self.rows(pc.and_(self.type.among("ResultsChecked"),
                                   self.rule.among("check.sent_back")), "seq")
        found = []
        for seq in checks.column("seq").to_pylist():
            check = self.body(seq)
            assert isinstance(check, ResultsChecked)
            again = {self.place[task]: f"sent back: {why}"
                     for task, why in check.verdict.sent_back.items()}
            for task in check.reason.facts.get("redone_after") or ():
                again[self.place[str(task)]] = "to be redone: a task it uses was sent back"
            found.append((seq, again))
        return found

    def statuses(self, moved: pa.Array, reopened: Reopened) -> pa.Array:
        """Each task's status, in plan order."""
        kind = pc.take(self.type.codes, moved)
        outcome = pc.take(self.outcome.codes, moved)
        code, said = self.type.code, self.outcome.code
        last = pc.case_when(pc.make_struct(
            pc.equal(kind, code.get("AssignmentDispatched", -2)),
            pc.equal(kind, code.get("ResultValidated", -2)),
            pc.is_in(outcome, value_set=pa.array([said.get("retry", -2),
                                                  said.get("reassign", -2)], outcome.type)),
            pc.equal(outcome, said.get("abandon", -2)),
            pc.is_valid(kind)),  # an escalation, chosen or raised
            "in_flight", "accepted", "queued", "abandoned", "escalated")
        waits = pc.greater(pc.list_value_length(self.plan.column("dependencies")), 0)
        statuses = pc.if_else(pc.is_valid(kind), last,
                              pc.if_else(waits, "blocked", "queued")).combine_chunks()
        # Tasks waiting on their dependencies since they were added, and tasks reopened
        # since their last move.
        since = {task: 0 for task in pc.indices_nonzero(
            pc.and_(pc.is_null(kind), waits)).to_pylist()}
        for seq, again in reopened:
            for task in again:
                row = moved[task].as_py()
                if row is None or row + 1 < seq:
                    since[task] = seq
        if not since:
            return statuses
        added = self.plan.column("added_at")
        history = _History(self, reopened)
        deps = self.plan.column("dependencies")
        patches = {}
        for task, reopened_at in since.items():
            start = max(reopened_at, added[task].as_py())
            needed = [self.place.get(dep) for dep in deps[task].as_py()]
            blockers = sum(dep is None or not history.accepted(dep, start) for dep in needed)
            counted = sum(history.acceptances(dep, start) for dep in needed if dep is not None)
            patches[task] = ("queued" if (counted >= blockers if blockers else not reopened_at)
                             else "blocked")
        return patched(statuses, patches)

    def in_flight(self, dispatched: pa.Array) -> bool:
        """Is any assignment in flight: a task's last dispatched (its row in
        `dispatched`), and neither answered for good nor given up since? (A task's
        earlier attempts are out of flight before the next is sent.)"""
        released = pc.fill_null(self.last(self.released), -1)
        return pc.any(pc.greater(dispatched, released)).as_py() or False

    @cached_property
    def released(self) -> pa.Array:
        """What takes an attempt out of flight for good."""
        return pc.or_(pc.or_(self.accepted, self.rejected), self.recovered)

    # --- each task's outcome -------------------------------------------------------------

    def outcomes(self, reopened: Reopened) -> pa.Array:
        """Each task's outcome as the ledger words it ("" for none), in plan order."""
        answered = self.type.among("FailureReported", "TimerFired")
        worded = pc.and_(pc.and_(self.recovered, self.outcome.among("abandon")),
                         pc.or_(self.rule.among("recover.dependency_abandoned"),
                                self.rule.starts("human.", "cancel.")))
        said = pc.or_(pc.or_(pc.or_(self.accepted, self.rejected), answered),
                      pc.or_(worded, self.type.among("EscalationRaised")))
        said = pc.and_(said, pc.is_valid(self.task))
        stale = self.stale(pc.and_(answered, pc.is_valid(self.key)))
        if stale:
            said = pc.and_(said, pc.invert(pc.is_in(self.seq, value_set=pa.array(stale))))
        last = self.last(said)
        plain = pc.fill_null(pc.take(self.accepted, last), False)
        texts = pc.if_else(plain, "accepted", "")
        # The rest in words, from the bodies of what was said last (and, before an
        # escalation's id, what was said before it).
        wordy = {*pc.indices_nonzero(pc.and_(pc.is_valid(last), pc.invert(plain))).to_pylist(),
                 *(task for _, again in reopened for task in again)}
        if not wordy:
            return texts
        words: dict[int, list[tuple[int, str, bool]]] = {task: [] for task in wordy}
        chosen = pc.and_(said, pc.is_in(self.task, value_set=pa.array(sorted(wordy),
                                                                      pa.int32())))
        rows = pa.table({"task": self.task, "seq": self.seq,
                         "accepted": self.accepted}).filter(chosen)
        for task, seq, accepted in rows_of(rows):
            words[task].append((seq, *(("accepted", False) if accepted else
                                       self.worded(seq))))
        for seq, again in reopened:
            for task, text in again.items():
                words[task].append((seq, text, False))
        patches = {}
        for task, said_ in words.items():
            text = ""
            for _, word, before in sorted(said_):
                text = word + text if before else word
            patches[task] = text
        return patched(texts, patches)

    def worded(self, seq: int) -> tuple[str, bool]:
        """What the event at `seq` says of its task's outcome, and whether it goes before
        what was said before it (an escalation's id does)."""
        event = self.body(seq)
        if isinstance(event, ResultValidated):
            return "rejected: " + "; ".join(event.verdict.problems), False
        if isinstance(event, FailureReported):
            return event.failure.summary(), False
        if isinstance(event, EscalationRaised):
            return f"{event.escalation_id}: ", True
        if isinstance(event, RecoveryChosen):
            if event.reason.rule == "recover.dependency_abandoned":
                return f"needs {event.reason.facts['dependency']}, abandoned", False
            return event.reason.rule.replace(".", ": ", 1), False
        return "timed out", False

    def stale(self, answered: pa.Array) -> list[int]:
        """The seqs of failures and timeouts (`answered` picks them) of an attempt no
        longer in flight then: the ledger takes no word from those."""
        asked = pc.filter(self.key, answered)
        if not len(asked):
            return []
        near = pa.table({"key": self.key, "seq": self.seq, "sent": self.sent,
                         "released": self.released, "answered": answered}
                        ).filter(pc.fill_null(pc.is_in(self.key, value_set=asked), False))
        sent: set[int] = set()
        gone: set[int] = set()
        stale = []
        for key, seq, was_sent, was_released, was_answered in rows_of(near):
            if was_answered and (key not in sent or key in gone):
                stale.append(seq)
            if was_sent:
                sent.add(key)
            elif was_released and key in sent:
                gone.add(key)
        return stale

    # --- people and money ----------------------------------------------------------------

    def open_escalations(self) -> list[Escalation]:
        """The questions about tasks still open, by id."""
        raised = pc.and_(self.type.among("EscalationRaised"), pc.is_valid(self.task))
        if not pc.any(raised).as_py():
            return []
        closing = pc.or_(self.accepted, pc.and_(
            self.recovered, self.outcome.among("retry", "reassign", "abandon")))
        asked = pc.unique(pc.filter(self.task, raised))
        closing = pc.and_(closing, pc.fill_null(pc.is_in(self.task, value_set=asked), False))
        current: dict[int, int] = {}  # task -> seq of the escalation it names
        for task, seq, is_raised in rows_of(pa.table({
                "task": self.task, "seq": self.seq, "raised": raised}).filter(
                pc.or_(raised, closing))):
            if is_raised:
                current[task] = seq
            else:
                current.pop(task, None)
        found = []
        for seq in current.values():
            event = self.body(seq)
            assert isinstance(event, EscalationRaised)
            found.append(Escalation(id=event.escalation_id, task_id=event.task_id,
                                    question=event.question))
        return sorted(found, key=lambda escalation: escalation.id)

    def spend(self) -> tuple[Spend, EscalationRaised | None]:
        """What the run had spent by this seq against its budget as then set, and the
        open question about it, if any."""
        head = self.head
        budget = head.get("budget")
        spend = Spend(budget=None if budget is None else RunBudget(**budget),
                      requested_at=head.get("requested_at"))
        usage = self.rows(pc.is_valid(self.events.column("requests")), "requests",
                          "input_tokens", "output_tokens", "cost_usd")
        for requests, tokens_in, tokens_out, cost in rows_of(usage):
            spend.add(Usage.model_construct(requests=requests, input_tokens=tokens_in,
                                            output_tokens=tokens_out, cost_usd=cost))
        asked = None
        budgeted = pc.or_(self.type.among("BudgetRaised", "BudgetTimerFired", "RunCompleted",
                                          "RunFailed"),
                          pc.and_(self.type.among("EscalationRaised"), pc.is_null(self.task)))
        for kind, seq in rows_of(self.rows(budgeted, "type", "seq")):
            if kind == "BudgetTimerFired":
                spend.elapsed = True
            elif kind in ("RunCompleted", "RunFailed"):
                spend.escalation = None
            else:
                event = self.body(seq)
                if isinstance(event, BudgetRaised):
                    spend.set_to(event.budget)
                elif isinstance(event, EscalationRaised):
                    spend.escalation, spend.asked = (event.escalation_id,
                                                     event.reason.facts["limit"])
                    asked = event
        return spend, asked if spend.escalation is not None else None


class _History:
    """Each task's moves and acceptances, and the checks that reopened it: what a
    waiting task's blockers were when it began to wait, and what counted them down."""

    def __init__(self, moment: Moment, reopened: Reopened):
        self.moves: dict[int, list[tuple[int, bool]]] = {}  # task -> (seq, accepted?)
        self.accepts: dict[int, list[int]] = {}
        moves = pc.or_(pc.or_(moment.sent, moment.accepted), pc.or_(
            pc.and_(moment.recovered,
                    moment.outcome.among("retry", "reassign", "escalate", "abandon")),
            pc.and_(moment.type.among("EscalationRaised"), pc.is_valid(moment.task))))
        for task, seq, accepted in rows_of(pa.table({"task": moment.task, "seq": moment.seq,
                                                   "accepted": moment.accepted}
                                                  ).filter(moves)):
            self.moves.setdefault(task, []).append((seq, accepted))
            if accepted:
                self.accepts.setdefault(task, []).append(seq)
        self.reopens: dict[int, list[int]] = {}
        for seq, again in reopened:
            for task in again:
                self.reopens.setdefault(task, []).append(seq)

    def accepted(self, task: int, at: int) -> bool:
        """Was `task` accepted at seq `at` (after what happened there)?"""
        moves = self.moves.get(task, [])
        place = bisect.bisect_right(moves, (at, True))
        if not place or not moves[place - 1][1]:
            return False
        since = moves[place - 1][0]
        return not any(since < seq <= at for seq in self.reopens.get(task, ()))

    def acceptances(self, task: int, after: int) -> int:
        """How many times `task` was accepted after seq `after`."""
        seqs = self.accepts.get(task, [])
        return len(seqs) - bisect.bisect_right(seqs, after)
