"""When all work is settled: the results judged together (`Policy.check`), and what
follows. Accepted: the run completes with the synthesis. Failed: the run fails with the
problems. Some tasks sent back (`Verdict.send_back`): they are done again, each told
why, and the accepted tasks that used their outputs are done again after them.

A task sent back is answered by the recovery rule like a rejected attempt (the kind is
"sent_back"): retried, reassigned, escalated or abandoned, charged against its attempt
budget, so a check that keeps sending a task back ends with a person or an abandon.
Two exceptions: a task sent back that uses the output of another sent back is not asked
about, since it is redone anyway once that one is (its feedback is kept for then); and
the tasks redone only because they used an output sent back are not asked about either.
Every redo is an attempt, numbered and counted like any other.
"""

from __future__ import annotations

from typing import Any, Protocol

from .errors import PolicyError
from .model import Json, Verdict, as_json
from .policy import Policy
from .record import TaskRecord, reopened_by
from .schema import Decision, ResultsChecked, RunCompleted, RunFailed
from .state import RunState


class Turn(Protocol):
    """What settling needs of the decider's turn."""

    @property
    def state(self) -> RunState: ...

    @property
    def policy(self) -> Policy: ...

    def head(self, rule: str, facts: dict[str, Json] | None = None) -> Any: ...

    def record(self, decision: Decision) -> None: ...

    def recover(self, record: TaskRecord, aid: str | None, problem: str, kind: str) -> None: ...


def settle(turn: Turn) -> bool:
    """Judge the results once no task is open. True when tasks were sent back, so there
    is work to dispatch again."""
    s = turn.state
    if s.open_tasks:
        return False
    plan = s.plan_view()
    verdict = turn.policy.check(plan)
    facts: dict[str, Json] = {"tasks": len(s.tasks), "accepted": s.accepted}
    if verdict.sent_back:
        _send_back(turn, verdict, facts)
        return True
    turn.record(ResultsChecked(**turn.head("check.all_settled", facts), verdict=verdict))
    if verdict.accepted:
        output = as_json(turn.policy.synthesize(plan))
        turn.record(RunCompleted(**turn.head("run.completed", facts), output=output))
    else:
        turn.record(RunFailed(
            **turn.head("run.check_failed", {**facts, "problems": list(verdict.problems)}),
            error="; ".join(verdict.problems)))
    return False


def _send_back(turn: Turn, verdict: Verdict, facts: dict[str, Json]) -> None:
    s = turn.state
    unfit = [tid for tid in verdict.sent_back
             if tid not in s.tasks or s.tasks[tid].status != "accepted"]
    if unfit:
        raise PolicyError(
            f"policy.check sent back {', '.join(map(repr, unfit))}: only a task whose "
            "output was accepted can be sent back (check the ids against the plan)")
    # Recorded in plan order, whatever order the policy built them in (a set's order
    # changes from one process to the next, and a replay compares bytes).
    sent_back = {tid: verdict.sent_back[tid]
                 for tid in sorted(verdict.sent_back, key=lambda tid: s.tasks[tid].index)}
    after = [tid for tid in reopened_by(sent_back, s.tasks, s.dependents)
             if tid not in sent_back]
    turn.record(ResultsChecked(
        **turn.head("check.sent_back", {**facts, "sent_back": list(sent_back),
                                        "redone_after": after}),
        verdict=Verdict.send_back(sent_back)))
    for task_id, why in sent_back.items():
        record = s.tasks[task_id]
        if not record.blockers:  # (one that uses another sent back waits for its redo)
            turn.recover(record, None, why, "sent_back")
