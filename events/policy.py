"""The decision rules: the Policy protocol and DefaultPolicy.

A policy is pure: each rule sees only what the decider hands it (all of it recorded in
the log) and returns a choice plus the name of the rule that made it. Override one rule
at a time by subclassing DefaultPolicy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import ValidationError

from .model import Json, Task, Verdict


@dataclass(frozen=True)
class Candidate:
    """A handler with the capability a task needs: its load, capacity, recent failures,
    and whether it has room for one more assignment now."""

    handler: str
    load: int
    capacity: int | None
    failures_in_a_row: int = 0  # attempts it failed or had rejected since its last success
    free: bool = True  # has room for one more assignment now

    def as_fact(self) -> dict[str, Json]:
        return {"handler": self.handler, "load": self.load, "capacity": self.capacity,
                "failures_in_a_row": self.failures_in_a_row, "free": self.free}


@dataclass(frozen=True)
class Routing:
    """The handler chosen for an assignment (None: hold the work for now), and the rule
    that chose it, with any facts it wants recorded."""

    handler: str | None
    rule: str
    facts: dict[str, Json] = field(default_factory=dict)


@dataclass(frozen=True)
class RecoveryFacts:
    """What the recovery rule knows about a failed or rejected attempt."""

    problem: str
    kind: str
    attempts: int
    handler: str
    attempts_on_handler: int
    attempt_budget: int
    alternatives: tuple[Candidate, ...]
    required: bool
    handler_failures_in_a_row: int = 0
    workers_lost: int = 0  # attempts on this handler whose worker died, this one included
    # A run with a budget: what it has spent, and what is left of each limit it sets
    # (None: no such limit). A policy may choose a cheaper handler when little is left.
    spent_usd: float | None = None
    spent_tokens: int | None = None
    cost_left_usd: float | None = None
    tokens_left: int | None = None

    @property
    def budget_left(self) -> int:
        """Attempts still allowed on the current handler."""
        return max(0, self.attempt_budget - self.attempts_on_handler)

    def as_facts(self) -> dict[str, Json]:
        return {
            "problem": self.problem,
            "kind": self.kind,
            "attempts": self.attempts,
            "handler": self.handler,
            "attempts_on_handler": self.attempts_on_handler,
            "attempt_budget": self.attempt_budget,
            "budget_left": self.budget_left,
            "alternatives": [c.handler for c in self.alternatives],
            "required": self.required,
            "handler_failures_in_a_row": self.handler_failures_in_a_row,
            # Only when there is one, so logs written before it was a fact read the same.
            **({"workers_lost": self.workers_lost} if self.workers_lost else {}),
            **({"spent_usd": self.spent_usd, "spent_tokens": self.spent_tokens,
                "cost_left_usd": self.cost_left_usd, "tokens_left": self.tokens_left}
               if self.spent_usd is not None else {}),
        }


RecoveryChoice = Literal["retry", "reassign", "escalate", "abandon"]


@dataclass(frozen=True)
class Recovery:
    """What to do about a failed or rejected attempt."""

    action: RecoveryChoice
    rule: str
    handler: str | None = None
    feedback: str = ""


@dataclass(frozen=True)
class PlanView:
    """The plan as a rule may read it: tasks in plan order, accepted outputs by task id."""

    tasks: Sequence[Task]
    outputs: Mapping[str, Json] = field(default_factory=dict)


class Policy(Protocol):
    """The rules a coordinator decides by. Each must be a pure function of its arguments."""

    def route(self, task: Task, candidates: Sequence[Candidate]) -> Routing:
        """Choose a free one of `candidates` (at least one is free) for `task`, or hold
        the work (handler None) until the next turn."""
        ...

    def validate(self, task: Task, output: Json) -> Verdict:
        """Judge an output: does it meet the task's schema and its `done_when` checks?"""
        ...

    def recover(self, task: Task, facts: RecoveryFacts) -> Recovery:
        """Decide what a failed or rejected attempt leads to."""
        ...

    def expand(self, task: Task, output: Json) -> Sequence[Task]:
        """New tasks that an accepted output proposes (validated by the decider)."""
        ...

    def check(self, plan: PlanView) -> Verdict:
        """Judge the results together once all work is settled (coverage, contradictions):
        accept them, fail the run (`Verdict.of(problems)`), or send tasks back to be done
        again with feedback (`Verdict.send_back({task_id: feedback})`)."""
        ...

    def synthesize(self, plan: PlanView) -> Json:
        """Combine the accepted outputs into the run's final output."""
        ...


def schema_problems(task: Task, output: Json) -> list[str]:
    """How `output` fails the task's output schema (empty when it fits or there is none).
    The decider hands rules tasks that carry their schema class."""
    if task.output_schema is None:
        return []
    model = task.schema_model()
    if model is None:
        return [f"output schema {task.output_schema!r} is unknown here, so no output can "
                "be checked against it"]
    try:
        model.model_validate(output)
    except ValidationError as error:
        return [
            f"output does not match {model.__name__}: "
            f"{'.'.join(str(p) for p in e['loc']) or 'output'}: {e['msg']}"
            for e in error.errors()
        ]
    return []


class DefaultPolicy:
    """Useful rules on their own: least-loaded routing that stops choosing a handler
    after `quarantine_after` failures in a row, schema and check validation, retry then
    reassign then escalate (required) or abandon (optional), a coverage check, and a
    synthesis mapping each task id to its accepted output.

    An attempt whose worker process died is the machine's fault, not the task's: the
    first `free_worker_losses` of them on a handler are retried without counting against
    the task's attempts. Past that, a loss counts like any failure, so a handler that
    kills its own process on some input cannot loop forever.

    A run budget changes none of these choices: the decider stops dispatching when a
    limit is reached and asks a person. A policy that should spend less as the budget
    runs out reads `RecoveryFacts.cost_left_usd` and `tokens_left` (and may reassign to
    a cheaper handler)."""

    def __init__(self, quarantine_after: int | None = 3, free_worker_losses: int = 1):
        self.quarantine_after = quarantine_after
        self.free_worker_losses = free_worker_losses

    def quarantined(self, failures_in_a_row: int) -> bool:
        """Has a handler failed often enough in a row to get no new work?"""
        return self.quarantine_after is not None and failures_in_a_row >= self.quarantine_after

    def route(self, task: Task, candidates: Sequence[Candidate]) -> Routing:
        healthy = [c for c in candidates if not self.quarantined(c.failures_in_a_row)]
        shunned = sorted(c.handler for c in candidates if c not in healthy)
        facts: dict[str, Json] = {"quarantined": shunned} if shunned else {}
        free = [c for c in healthy if c.free]
        if free:
            best = min(free, key=lambda c: (c.load, c.handler))
            rule = "route.least_loaded_avoiding_quarantined" if shunned else "route.least_loaded"
            return Routing(best.handler, rule, facts)
        if healthy:  # the healthy handlers are busy: wait for them
            return Routing(None, "route.wait_for_healthy", facts)
        # Every handler is failing: the least bad one gets the work, and the log says so.
        least_bad = min((c for c in candidates if c.free),
                        key=lambda c: (c.failures_in_a_row, c.load, c.handler))
        return Routing(least_bad.handler, "route.all_quarantined", facts)

    def validate(self, task: Task, output: Json) -> Verdict:
        problems = schema_problems(task, output)
        if not problems:
            problems = [p for check in task.done_when if (p := check.problem(output))]
        return Verdict.of(problems)

    def recover(self, task: Task, facts: RecoveryFacts) -> Recovery:
        if facts.kind == "worker_lost" and facts.workers_lost <= self.free_worker_losses:
            return Recovery("retry", "recover.retry_worker_lost", facts.handler, facts.problem)
        charged = facts.attempts_on_handler - min(facts.workers_lost, self.free_worker_losses)
        handler_broken = self.quarantined(facts.handler_failures_in_a_row)
        if charged < facts.attempt_budget and not (handler_broken and facts.alternatives):
            return Recovery("retry", "recover.retry", facts.handler, facts.problem)
        if facts.alternatives:
            other = min(facts.alternatives, key=lambda c: (c.load, c.handler)).handler
            return Recovery("reassign", "recover.reassign", other, facts.problem)
        if facts.required:
            return Recovery("escalate", "recover.escalate_required", None, facts.problem)
        return Recovery("abandon", "recover.abandon_optional", None, facts.problem)

    def expand(self, task: Task, output: Json) -> Sequence[Task]:
        return ()

    def check(self, plan: PlanView) -> Verdict:
        missing = [t.id for t in plan.tasks if t.required and t.id not in plan.outputs]
        return Verdict.of([f"required task {tid!r} was not accepted" for tid in missing])

    def synthesize(self, plan: PlanView) -> Json:
        return {t.id: plan.outputs[t.id] for t in plan.tasks if t.id in plan.outputs}
