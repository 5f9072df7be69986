"""The worker replicas of each handler, as the coordinator sees them.

The decider chooses a handler; the pool chooses which of its replicas takes the next
call: one with room (fewer than its window of calls out: one running and one queued
behind it, or for an async handler one for each assignment it may run at once and one
queued behind them), the one with the fewest, never one
known to be down (a call to it failed; Ray is restarting it) or stuck (still running an
attempt that timed out). A down replica is probed until it answers again.

A call carries a batch of assignments, as many as the handler runs in BATCH_BUDGET_S by
what its calls took so far: a fast handler gets hundreds a call, so Ray's cost per call
is paid once for them all; a slow one gets one, so no result waits on another's work.
Timed work travels alone, so its deadline measures its own handler's time; a retry
travels alone to an idle replica, which takes nothing more until it returns, so an input
that kills its worker takes nothing else down a second time. Work beyond the window waits
in the coordinator, where a timeout, a cancel or a lost replica still reaches it, rather
than in a worker's queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

Replica = tuple[str, int]  # (handler name, index)
PROBE_EVERY_S = 0.5
NAMESPACE = "baton"  # Ray namespace of every coordinator and worker actor
BATCH_BUDGET_S = 0.02  # how long a call's batch should take its worker, at most
BATCH_MAX = 256  # assignments in one call, at most


def window(concurrency: int) -> int:
    """Calls out to one replica at once: as many running as it runs at once, and the
    next queued behind them."""
    return concurrency + 1


def worker_name(run_id: str, launch: str, handler: str, index: int) -> str:
    """The Ray name of a worker actor: unique per launch, so a resumed run's workers
    never collide with a previous launch's that are still shutting down."""
    return f"baton:{run_id}:{launch}:{handler}:{index}"


class Pool:
    """Replica bookkeeping for every handler of a run."""

    def __init__(self, workers: dict[str, Sequence[ActorHandle[Any]]],
                 concurrency: dict[str, int] | None = None):
        self.workers = {name: list(handles) for name, handles in workers.items()}
        # How many calls each handler's replicas run at once (async handlers: several).
        self.concurrency = {name: (concurrency or {}).get(name, 1) for name in workers}
        self.held: dict[Replica, int] = {  # calls out
            (name, i): 0 for name, handles in self.workers.items() for i in range(len(handles))
        }
        self.stuck: set[Replica] = set()
        self.alone: set[Replica] = set()  # running a call nothing may queue behind
        self.down: set[Replica] = set()
        self.probes: dict[ray.ObjectRef[Any], Replica] = {}
        self.reprobe_at: dict[Replica, float] = {}
        self.seconds_each: dict[str, float] = {}  # by handler, averaged over recent calls

    @classmethod
    def named(cls, workers: dict[str, Sequence[str]],
              concurrency: dict[str, int] | None = None) -> Pool:
        """The pool of the worker actors with these names, by handler."""
        return cls({handler: [ray.get_actor(name, namespace=NAMESPACE) for name in names]
                    for handler, names in workers.items()}, concurrency)

    def choose(self, handler: str, idle: bool = False) -> tuple[Replica | None, int]:
        """The replica of `handler` to send the next call to, or None while none has room
        (with `idle`: while none has no call out); and how many could take a call and
        have none out."""
        calls = window(self.concurrency[handler])
        room = [replica for replica in ((handler, i) for i in range(len(self.workers[handler])))
                if self.held[replica] < calls and replica not in self.down
                and replica not in self.stuck and replica not in self.alone]
        idle_ones = [replica for replica in room if not self.held[replica]]
        free = idle_ones if idle else room
        return min(free, key=lambda r: (self.held[r], r[1])) if free else None, len(idle_ones)

    def sent(self, replica: Replica, alone: bool = False) -> ActorHandle[Any]:
        """Count a call out to `replica` (with `alone`, the only one it may have until it
        returns): its actor, to make the call on."""
        self.held[replica] += 1
        if alone:
            self.alone.add(replica)
        handler, index = replica
        return self.workers[handler][index]

    def batch_size(self, handler: str) -> int:
        """How many assignments the next call to `handler` carries: one until a call has
        shown how long the handler takes."""
        seconds = self.seconds_each.get(handler)
        if seconds is None:
            return 1
        return max(1, min(BATCH_MAX, int(BATCH_BUDGET_S / max(seconds, 1e-6))))

    def ran(self, handler: str, seconds_each: float) -> None:
        """A call to `handler` showed it takes `seconds_each` an assignment."""
        before = self.seconds_each.get(handler, seconds_each)
        self.seconds_each[handler] = 0.7 * before + 0.3 * seconds_each

    def returned(self, replica: Replica) -> None:
        """A call to `replica` came back (with outcomes or an error)."""
        self.held[replica] -= 1
        self.stuck.discard(replica)
        self.alone.discard(replica)

    def timed_out(self, replica: Replica) -> None:
        self.stuck.add(replica)

    def replaced(self, replica: Replica) -> None:
        """`replica` was killed to be started afresh: its calls are gone; avoid it until
        it answers."""
        self.held[replica] = 0
        self.stuck.discard(replica)
        self.alone.discard(replica)
        self.lost(replica)

    def lost(self, replica: Replica) -> None:
        """A call to `replica` failed because the actor died: avoid it until it answers."""
        if replica not in self.down:
            self.down.add(replica)
            self._probe(replica)

    def _probe(self, replica: Replica) -> None:
        name, index = replica
        self.probes[self.workers[name][index].pid.remote()] = replica

    def probe_refs(self) -> list[ray.ObjectRef[Any]]:
        """Probes in flight, and any scheduled probe whose time has come, sent now."""
        now = time.monotonic()
        for replica, when in list(self.reprobe_at.items()):
            if when <= now:
                del self.reprobe_at[replica]
                self._probe(replica)
        return list(self.probes)

    def next_probe_in(self) -> float | None:
        if not self.reprobe_at:
            return None
        return max(0.0, min(self.reprobe_at.values()) - time.monotonic())

    def probe_returned(self, ref: ray.ObjectRef[Any]) -> None:
        """A probe answered: the replica is back, or still restarting (probe again)."""
        replica = self.probes.pop(ref)
        try:
            ray.get(ref)
        except RayError:
            self.reprobe_at[replica] = time.monotonic() + PROBE_EVERY_S
        else:
            self.down.discard(replica)
