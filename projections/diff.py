"""Where two runs' decisions part: a fork against its parent, or any two runs of a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from baton.events.schema import Decision
from baton.events.store import EventStore

from .counterfactual import TaskChange, changed_tasks, outcome
from .log import gist, line


@dataclass
class RunDiff:
    """The first seq at which the two logs say different things, each side's event
    there, the tasks that end differently, and both outcomes."""

    run_a: str
    run_b: str
    common: int  # events the two logs share (but for the run's id)
    first_a: str = ""  # the first event that differs, readable; "" if the log ended
    first_b: str = ""
    decisions_a: int = 0  # decisions after the common prefix
    decisions_b: int = 0
    outcome_a: dict[str, Any] = field(default_factory=dict)
    outcome_b: dict[str, Any] = field(default_factory=dict)
    changed_tasks: list[TaskChange] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.first_a and not self.first_b

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in vars(self).items() if k != "changed_tasks"},
                "same": self.same, "changed_tasks": [vars(c) for c in self.changed_tasks]}


def diff(store: EventStore, run_a: str, run_b: str) -> RunDiff:
    """Compare two runs' logs event by event, apart from what names the run (see
    `gist`), then compare where each run ended up."""
    store.require_run(run_a)
    store.require_run(run_b)
    log_a, log_b = store.read(run_a), store.read(run_b)
    common = 0
    for left, right in zip(log_a, log_b, strict=False):
        if gist(left) != gist(right):
            break
        common += 1
    state_a, state_b = store.state(run_a), store.state(run_b)
    return RunDiff(
        run_a=run_a, run_b=run_b, common=common,
        first_a=line(log_a[common]) if common < len(log_a) else "",
        first_b=line(log_b[common]) if common < len(log_b) else "",
        decisions_a=sum(isinstance(e, Decision) for e in log_a[common:]),
        decisions_b=sum(isinstance(e, Decision) for e in log_b[common:]),
        outcome_a=outcome(state_a), outcome_b=outcome(state_b),
        changed_tasks=changed_tasks(state_a, state_b))
