"""The worker replicas of each handler, as the coordinator sees them.

The decider chooses a handler; the pool chooses which of its replicas takes the
assignment: the one with the fewest queued, avoiding replicas known to be down (a call
to them failed; Ray is restarting them) or stuck (still running an attempt that timed
out). A down replica is probed until it answers again.
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


def worker_name(run_id: str, launch: str, handler: str, index: int) -> str:
    """The Ray name of a worker actor: unique per launch, so a resumed run's workers
    never collide with a previous launch's that are still shutting down."""
    return f"baton:{run_id}:{launch}:{handler}:{index}"


class Pool:
    """Replica bookkeeping for every handler of a run."""

    def __init__(self, workers: dict[str, Sequence[ActorHandle[Any]]]):
        self.workers = {name: list(handles) for name, handles in workers.items()}
        self.held: dict[Replica, int] = {
            (name, i): 0 for name, handles in self.workers.items() for i in range(len(handles))
        }
        self.stuck: set[Replica] = set()
        self.down: set[Replica] = set()
        self.restarting: set[Replica] = set()  # killed on purpose, not yet answering
        self.probes: dict[ray.ObjectRef[Any], Replica] = {}
        self.reprobe_at: dict[Replica, float] = {}

    @classmethod
    def named(cls, workers: dict[str, Sequence[str]]) -> Pool:
        """The pool of the worker actors with these names, by handler."""
        return cls({handler: [ray.get_actor(name, namespace=NAMESPACE) for name in names]
                    for handler, names in workers.items()})

    def choose(self, handler: str) -> tuple[Replica, ActorHandle[Any]] | None:
        """The replica of `handler` to send the next assignment to (and count it held),
        or None while every one of them is down."""
        if all((handler, i) in self.down for i in range(len(self.workers[handler]))):
            return None
        index = min(range(len(self.workers[handler])), key=lambda i: (
            (handler, i) in self.down, (handler, i) in self.stuck, self.held[(handler, i)], i))
        replica = (handler, index)
        self.held[replica] += 1
        return replica, self.workers[handler][index]

    def returned(self, replica: Replica) -> None:
        """A call to `replica` came back (with a result or an error)."""
        self.held[replica] -= 1
        self.stuck.discard(replica)

    def timed_out(self, replica: Replica) -> None:
        self.stuck.add(replica)

    def replaced(self, replica: Replica) -> None:
        """`replica` was killed to be started afresh: its calls are gone; avoid it until
        it answers."""
        self.held[replica] = 0
        self.stuck.discard(replica)
        self.restarting.add(replica)
        self.lost(replica)

    def restarting_handler(self, handler: str) -> bool:
        """Is one of `handler`'s replicas being started afresh after a replacement?"""
        return any(name == handler for name, _ in self.restarting)

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
            self.restarting.discard(replica)
