"""A run's budget: what it may spend (dollars, tokens, seconds), what it has spent,
folded from the usage its results and failures recorded, and the question a person
answers when a limit is reached. Pure: the duration limit arrives as a recorded
stimulus (BudgetTimerFired), so a replay decides exactly as the run did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from .model import Json, RunBudget, Usage, escalation_id
from .schema import BudgetRaised, Decision, EscalationRaised, HumanAnswered, RunFailed

LIMITS = ("cost", "tokens", "duration")  # in the order they are checked


@dataclass
class Spend:
    """What a run has spent, against its budget (the limits as people last set them)."""

    budget: RunBudget | None = None
    cost_usd: float = 0.0  # of the usage priced; `unpriced` answers are not in it
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unpriced: int = 0
    elapsed: bool = False  # the duration limit's timer has fired
    requested_at: float | None = None  # when the run was requested: its clock's start
    escalation: str | None = None  # the open question about a limit reached
    asked: Json = None  # which limit it asks about

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def reported(self) -> bool:
        """Did any answer report usage?"""
        return bool(self.requests or self.tokens or self.unpriced or self.cost_usd)

    def add(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.requests += usage.requests
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if usage.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += usage.cost_usd

    def reached(self) -> str | None:
        """The first limit reached ("cost", "tokens" or "duration"), or None."""
        b = self.budget
        if b is None:
            return None
        if b.max_cost_usd is not None and self.cost_usd >= b.max_cost_usd:
            return "cost"
        if b.max_tokens is not None and self.tokens >= b.max_tokens:
            return "tokens"
        if b.max_duration_s is not None and self.elapsed:
            return "duration"
        return None

    def raised(self, limit: str, by: float) -> RunBudget:
        """The budget with `limit` raised by `by` in its unit (dollars, tokens, seconds)."""
        b = self.budget or RunBudget()
        if limit == "cost":
            return b.model_copy(update={"max_cost_usd": (b.max_cost_usd or 0) + by})
        if limit == "tokens":
            return b.model_copy(update={"max_tokens": (b.max_tokens or 0) + round(by)})
        return b.model_copy(update={"max_duration_s": (b.max_duration_s or 0) + by})

    def set_to(self, budget: RunBudget) -> None:
        """People set new limits: the question is closed, and a longer duration runs on."""
        if self.budget is not None and budget.max_duration_s != self.budget.max_duration_s:
            self.elapsed = False
        self.budget, self.escalation = budget, None

    def describe(self, limit: str) -> str:
        b = self.budget or RunBudget()
        if limit == "cost":
            return f"spent ${self.cost_usd:,.4f} of its ${b.max_cost_usd:,.4f} budget" + (
                f" ({self.unpriced} answer(s) unpriced)" if self.unpriced else "")
        if limit == "tokens":
            return f"spent {self.tokens:,} tokens of its {b.max_tokens:,}"
        return f"ran for its {b.max_duration_s:g}s"

    def summary(self) -> str:
        """What was spent, in one line (`cost_usd` is at least what was: some answers
        may be unpriced)."""
        cost = f"${self.cost_usd:,.4f}" + (f" and {self.unpriced} answer(s) unpriced"
                                           if self.unpriced else "")
        return (f"spent {self.requests:,} model requests, {self.input_tokens:,} tokens in, "
                f"{self.output_tokens:,} out; {cost}")

    def left(self) -> str:
        """What is left of each limit the budget sets, in one line ('' with no budget)."""
        b = self.budget
        if b is None:
            return ""
        parts = []
        if b.max_cost_usd is not None:
            parts.append(f"${max(0.0, b.max_cost_usd - self.cost_usd):,.4f} of "
                         f"${b.max_cost_usd:,.4f}")
        if b.max_tokens is not None:
            parts.append(f"{max(0, b.max_tokens - self.tokens):,} of {b.max_tokens:,} tokens")
        if b.max_duration_s is not None:
            parts.append(f"its {b.max_duration_s:g}s " + (
                "reached" if self.elapsed else "from the request not yet reached"))
        return "budget left: " + "; ".join(parts) if parts else ""

    def facts(self) -> dict[str, Json]:
        """The spend and what is left, for a decision's reason (a run with no budget:
        none, so logs of runs without one are as they were)."""
        b = self.budget
        if b is None:
            return {}
        return {"spent_usd": round(self.cost_usd, 6), "spent_tokens": self.tokens,
                "cost_left_usd": None if b.max_cost_usd is None
                else round(max(0.0, b.max_cost_usd - self.cost_usd), 6),
                "tokens_left": None if b.max_tokens is None
                else max(0, b.max_tokens - self.tokens)}

    def copy(self) -> Spend:
        return replace(self)


UNIT = {"cost": "dollars", "tokens": "tokens", "duration": "seconds"}


def question(spend: Spend, limit: str) -> str:
    """What the person is asked when `limit` is reached (the escalation's id, which the
    inbox shows beside it, is not in it: a fork renumbers it)."""
    since = " (counted from the run's request)" if limit == "duration" else ""
    return (f"The run has {spend.describe(limit)}: nothing new is dispatched; work in "
            f"flight finishes. Raise the limit (baton answer ESC --raise-budget N adds N "
            f"{UNIT[limit]}{since}) or stop the run (--stop: it fails, its accepted "
            "outputs kept).")


class Spending(Protocol):
    """What the rules below read of a run's state."""

    run_id: str
    seq: int
    spend: Spend


class Turn(Protocol):
    """What the rules below need of the decider's turn: the state, and how to build and
    record a decision."""

    @property
    def state(self) -> Spending: ...

    def head(self, rule: str, facts: dict[str, Json] | None = None) -> Any: ...

    def record(self, decision: Decision) -> None: ...

    def abandon_in_flight(self, rule: str, facts: dict[str, Json]) -> list[str]: ...


def halt(turn: Turn, limit: str) -> None:
    """A limit is reached: nothing is dispatched, and a person is asked, once."""
    s = turn.state
    if s.spend.escalation is not None:
        return
    esc = escalation_id(s.run_id, s.seq + 1)
    turn.record(EscalationRaised(
        **turn.head("budget.reached", {"limit": limit, **s.spend.facts()}),
        escalation_id=esc, task_id="", question=question(s.spend, limit)))


def answer(turn: Turn, e: HumanAnswered) -> None:
    """A person answered the question about the budget: raise the limit reached by
    `raise_by`, or stop the run (failed; what was accepted stays recorded)."""
    spend = turn.state.spend
    limit = str(spend.asked or spend.reached() or LIMITS[0])  # the one the question asked
    facts: dict[str, Json] = {"escalation": e.escalation_id, "answered_by": e.answered_by,
                              "note": e.note, "limit": limit, **spend.facts()}
    if e.action == "raise_budget" and e.raise_by is not None:
        turn.record(BudgetRaised(**turn.head("human.raise_budget", {**facts, "by": e.raise_by}),
                                 budget=spend.raised(limit, e.raise_by)))
    elif e.action == "stop":
        abandoned = turn.abandon_in_flight("human.stop_at_budget", facts)
        turn.record(RunFailed(**turn.head("human.stop_at_budget",
                                          {**facts, "abandoned": list(abandoned)}),
                              error=f"stopped at its budget: the run {spend.describe(limit)}"))
