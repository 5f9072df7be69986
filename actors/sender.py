"""Sender: what the coordinator has dispatched (and recorded) but not yet sent, and the
calls out to workers that carry it.

Dispatched assignments wait here, one queue per handler, until a replica has room (the
pool decides which). They go a batch a call: timed work and retries travel alone (a
timed one so its deadline measures its own handler's time; a retry so an input that
kills its worker takes nothing else down twice), and while replicas sit idle the queue
is shared among them rather than all sent to the first. An assignment no longer in
flight when its turn comes (timed out, cancelled) is dropped, never sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from baton.events.model import Assignment

from .pool import BATCH_MAX, Pool, Replica
from .ratelimit import Throttle

Send = Callable[[Any, list[Assignment]], Any]  # (worker handle, batch) -> the call's ref


@dataclass(slots=True)
class Call:
    """One call out to a worker: the assignments it carries, which it runs in order."""

    ids: tuple[str, ...]
    replica: Replica


def alone(assignment: Assignment) -> bool:
    """Does the assignment go in a call of its own? A timed one does, so its deadline
    measures its own handler's time and a stuck call names the attempt that is stuck; so
    does a retry, so an input that kills its worker takes nothing else down twice."""
    return assignment.timeout_s is not None or assignment.attempt > 1


class Sender:
    """The queues of dispatched work by handler, and the calls out, by their ref."""

    def __init__(self, pool: Pool, send: Send, throttles: dict[str, Throttle] | None = None):
        self.pool = pool
        self.send = send
        self.throttles = throttles or {}  # by handler: those with a rate limit
        self.waiting: dict[str, deque[Assignment]] = {name: deque() for name in pool.workers}
        self.pending: dict[Any, Call] = {}  # by the ref of the call's answer
        self.calls = 0  # sent so far

    def queue(self, assignment: Assignment) -> None:
        """Send `assignment` when its handler has a replica with room, after those queued."""
        self.waiting[assignment.handler].append(assignment)

    def queue_first(self, handler: str, assignments: Iterable[Assignment]) -> None:
        """Send these again ahead of what waits (their call came back without running
        them, or its worker was replaced), in their order."""
        self.waiting[handler].extendleft(reversed(list(assignments)))

    def send_waiting(self, in_flight: Collection[str],
                     timed_send: Callable[[Assignment], None]) -> None:
        """Send what waits, a batch a call, to each replica with room. `timed_send` is
        told of each timed assignment as it goes out: its time starts then."""
        for handler, waiting in self.waiting.items():
            throttle = self.throttles.get(handler)
            while True:
                while waiting and waiting[0].id not in in_flight:
                    waiting.popleft()
                allowed = throttle.room() if throttle is not None else BATCH_MAX
                if not waiting or allowed < 1:
                    break
                head = waiting[0]
                retry = head.attempt > 1
                replica, idle = self.pool.choose(handler, idle=retry)
                if replica is None:
                    break
                if alone(head):
                    batch = [waiting.popleft()]
                    if head.timeout_s is not None:
                        timed_send(head)
                else:
                    size = min(self.pool.batch_size(handler), allowed)
                    if idle:
                        size = min(size, -(-len(waiting) // idle))
                    batch = self._next_batch(waiting, size, in_flight)
                if throttle is not None:
                    throttle.took(len(batch))
                ref = self.send(self.pool.sent(replica, alone=retry), batch)
                self.pending[ref] = Call(tuple(a.id for a in batch), replica)
                self.calls += 1

    @staticmethod
    def _next_batch(waiting: deque[Assignment], size: int,
                    in_flight: Collection[str]) -> list[Assignment]:
        """Up to `size` assignments still in flight off the front of `waiting` (whose first
        need not travel alone), up to the next that must."""
        batch: list[Assignment] = []
        while waiting and len(batch) < size:
            assignment = waiting[0]
            if assignment.id in in_flight:
                if alone(assignment):
                    break
                batch.append(assignment)
            waiting.popleft()
        return batch

    def next_send_in(self) -> float | None:
        """Seconds until a rate limit lets held work go (None when none holds any)."""
        held = [t.next_in() for handler, t in self.throttles.items() if self.waiting[handler]]
        return min((s for s in held if s is not None), default=None)

    def answered(self, ref: Any) -> Call:
        """The call whose answer `ref` is, no longer out."""
        call = self.pending.pop(ref)
        self.pool.returned(call.replica)
        return call

    def dropped(self, replica: Replica) -> list[str]:
        """Forget every call out to `replica` (its worker is being replaced); the ids of
        the assignments they carried, oldest call first."""
        refs = [ref for ref, call in self.pending.items() if call.replica == replica]
        return [aid for ref in refs for aid in self.pending.pop(ref).ids]

    def replica_of(self, assignment_id: str) -> Replica | None:
        """The replica a call carrying `assignment_id` went to, if one is still out."""
        return next((call.replica for call in self.pending.values()
                     if assignment_id in call.ids), None)

    def running(self) -> dict[Replica, list[tuple[Call, Any]]]:
        """The calls each busy replica is running, with their refs: its oldest still out,
        as many as it runs at once (one; an async handler's, its concurrency). A worker
        takes calls in the order they were sent."""
        running: dict[Replica, list[tuple[Call, Any]]] = {}
        for ref, call in self.pending.items():
            calls = running.setdefault(call.replica, [])
            if len(calls) < self.pool.concurrency[call.replica[0]]:
                calls.append((call, ref))
        return running

    def carries(self, in_flight: Collection[str]) -> bool:
        """Is any of `in_flight` waiting here or out in a call?"""
        return any(aid in in_flight for call in self.pending.values() for aid in call.ids) or (
            any(a.id in in_flight for waiting in self.waiting.values() for a in waiting))
