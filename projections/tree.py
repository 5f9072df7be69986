"""A tree of runs read across its logs: a trace that follows a result down into the
child run that produced it, and the links a tree's verification checks.

A subrun's dispatch names its child (`child_run` in its facts), and the child's request
names the parent's assignment (`RunRequested.parent`); the child's final output is the
parent's result for that assignment. Both directions are read from the logs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from baton.events.errors import UnknownTaskError
from baton.events.schema import (
    AssignmentDispatched,
    Envelope,
    ResultReceived,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRequested,
)
from baton.events.tree import child_run_id
from baton.events.values import canonical_json

from .trace import Step, step_of, trace
from .verification import Verification

Read = Callable[[str], Sequence[Envelope]]  # a run's log by its id; [] when the store has none
SUMMARY_TASKS = 20  # a child's tasks a trace that stops at it lists, at most


def trace_down(read: Read, run_id: str, path: Sequence[str], depth: int = 0) -> list[Step]:
    """The chain behind `path[0]`'s outcome in run `run_id`, newest first; where it was
    a subrun's, each child run it started is shown inside, under the dispatch that
    started it: traced on down along the rest of `path` (the last attempt's child), or
    in short (how it ended, and who did each of its tasks) where the path stops."""
    log = read(run_id)
    steps = [replace(step, depth=depth) for step in trace(log, path[0])]
    # The child each attempt took its answer from: the last named for it (a fork's own,
    # when it sent again what was in flight where it was made), under the oldest step
    # that dispatched it (a restart sends the same attempt again).
    children = children_of(log)
    under: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.type == "AssignmentDispatched" and "child_run" in step.facts:
            under[children[f"{path[0]}#{step.detail['attempt']}"]] = i
    started = sorted((at, child) for child, at in under.items())  # the newest first
    if len(path) > 1 and not started:
        raise UnknownTaskError(f"task {path[0]!r} of run {run_id} started no child run: "
                               f"`baton trace {run_id} {path[0]}` ends there")
    # Each child is put in from the last step up, so the places above it stay as they were.
    for at, child in reversed(started):
        child_log = read(child)
        followed = len(path) > 1 and at == started[0][0]  # the last attempt's child
        if followed and not child_log:
            raise UnknownTaskError(f"child run {child} (of task {path[0]!r} of run {run_id}) "
                                   "is not in this store")
        if followed:
            below = trace_down(read, child, path[1:], depth + 1)
        elif not child_log:
            below = [Step(seq=0, type="ChildRun", run_id=child, depth=depth + 1,
                          what=f"child run {child} is not in this store")]
        else:
            below = _in_short(child_log, depth + 1)
        steps[at:at] = below
    return steps


def _in_short(log: Sequence[Envelope], depth: int) -> list[Step]:
    """A child run in a few steps: how it ended, then its tasks' last dispatches (each
    names its handler), newest first."""
    ending = next((e for e in reversed(log) if isinstance(e, RunCompleted | RunFailed)), None)
    last: dict[str, AssignmentDispatched] = {}
    for event in log:
        if isinstance(event, AssignmentDispatched):
            last[event.assignment.task_id] = event
    shown = sorted(last.values(), key=lambda e: -e.seq)
    steps = [replace(step_of(e), depth=depth)
             for e in ([ending] if ending else []) + shown[:SUMMARY_TASKS]]
    if ending is None:
        steps.insert(0, Step(seq=log[-1].seq, type="ChildRun", run_id=log[0].run_id,
                             depth=depth, what="still going"))
    if len(shown) > SUMMARY_TASKS:
        steps.append(Step(seq=0, type="ChildRun", run_id=log[0].run_id, depth=depth,
                          what=f"… and {len(shown) - SUMMARY_TASKS} more tasks"))
    return steps


@dataclass(frozen=True)
class BrokenLink:
    """A parent result that is not its child's recorded output, or a child whose
    parent never started it."""

    run_id: str
    seq: int
    child: str
    problem: str

    def describe(self) -> str:
        return f"{self.run_id} seq {self.seq}, child run {self.child}: {self.problem}"


@dataclass(frozen=True)
class TreeVerification:
    """A run and every run under it verified, each with its own recorded policy, and
    the links between them checked."""

    reports: tuple[Verification, ...]  # the run's first, then the runs under it
    broken: tuple[BrokenLink, ...]

    @property
    def reproduced(self) -> bool:
        return not self.broken and all(r.reproduced for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        return {"reproduced": self.reproduced, "runs": [r.as_dict() for r in self.reports],
                "broken_links": [{"run_id": b.run_id, "seq": b.seq, "child": b.child,
                                  "problem": b.problem} for b in self.broken]}


def broken_links(read: Read, runs: Sequence[str]) -> list[BrokenLink]:
    """Check the links of the tree `runs` (a run and every run under it): each child's
    request names an assignment its parent dispatched to that child, and each result
    the parent received from a child is byte for byte the child's final output."""
    logs = {run_id: read(run_id) for run_id in runs}
    started = {run_id: children_of(log) for run_id, log in logs.items()}
    broken: list[BrokenLink] = []
    for run_id, log in logs.items():
        children = started[run_id]
        for event in log:
            if isinstance(event, ResultReceived) and event.result.assignment_id in children:
                child = children[event.result.assignment_id]
                broken += _received(run_id, event, child, logs.get(child) or read(child))
        request = next((e for e in log[:1] if isinstance(e, RunRequested)), None)
        link = request.parent if request else None
        if link is not None and link.run_id in logs and \
                started[link.run_id].get(link.assignment_id) != run_id:
            broken.append(BrokenLink(link.run_id, 0, run_id, (
                f"it names assignment {link.assignment_id}, which started no such child")))
    return broken


def children_of(log: Sequence[Envelope]) -> dict[str, str]:
    """The child run each of the run's subrun assignments took its answer from (or is
    waiting on), by assignment id: the last named for it. A fork's copy of its parent's
    dispatches names children of the fork's id, as its decider would; the children that
    ran them are the parent's (the run the next RunForked names), and those are given."""
    owner = log[-1].run_id if log else ""
    found: dict[str, str] = {}
    for event in reversed(log):
        if isinstance(event, RunForked):
            owner = event.parent_run_id
        elif isinstance(event, AssignmentDispatched) and "child_run" in event.reason.facts:
            found.setdefault(event.assignment.id, child_run_id(owner, event.assignment.id))
    return dict(reversed(found.items()))  # in the order of their last dispatches


def runs_under(read: Read, run_id: str) -> list[str]:
    """Every run whose answers `run_id`'s took, and theirs, and so on: depth first. (A
    fork's include its parent's children that answered before the fork.)"""
    found: list[str] = []
    below = list(reversed(children_of(read(run_id)).values()))
    while below:
        run = below.pop()
        log = read(run)
        if log and run not in found:  # (one not in the store: broken_links says so)
            found.append(run)
            below += reversed(children_of(log).values())
    return found


def _received(run_id: str, event: ResultReceived, child: str,
              log: Sequence[Envelope]) -> list[BrokenLink]:
    ending = next((e for e in reversed(log) if isinstance(e, RunCompleted)), None)
    if ending is None:
        return [BrokenLink(run_id, event.seq, child, "the parent received a result, and "
                           "the child has no RunCompleted")]
    if canonical_json(event.result.output) != canonical_json(ending.output):
        return [BrokenLink(run_id, event.seq, child, (
            f"the result received is not the child's output at its seq {ending.seq}"))]
    return []
