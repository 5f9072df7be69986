"""Shared by the benchmarks: a generated run log and the eventsourcing reference lines."""

from __future__ import annotations

import gc
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from baton import HandlerInfo, Task
from baton.events.decider import decide_in_place
from baton.events.model import Result
from baton.events.policy import DefaultPolicy
from baton.events.schema import Envelope, ResultReceived, RunRequested
from baton.events.state import RunState
from baton.events.store import collector_paused
from baton.events.store.repository import full_due


def generate_run(tasks: int, run_id: str = "bench") -> tuple[list[Envelope], float]:
    """A completed run of `tasks` independent tasks on two handlers (capacity 8 each),
    made by the real decider; returns the log and the seconds spent deciding it."""
    policy = DefaultPolicy()
    state = RunState()
    plan = tuple(Task(id=f"t{i}", capability="work", inputs={"item": i}) for i in range(tasks))
    handlers = tuple(HandlerInfo(name=f"w{j}", capabilities=("work",), capacity=8)
                     for j in range(2))
    started = time.perf_counter()
    request = RunRequested(run_id=run_id, seq=1, tasks=plan, handlers=handlers)
    log: list[Envelope] = [event for event, _ in decide_in_place(state, request, policy)]
    # The collector is kept from rescanning what lives long as the coordinator keeps it:
    # frozen once the plan is in, and again at each of its full snapshots' seqs.
    gc.freeze()
    frozen_at = state.seq
    while state.in_flight:
        aid = next(iter(state.in_flight))
        received = ResultReceived(run_id=run_id, seq=state.seq + 1,
                                  result=Result(assignment_id=aid, output={"lines": 42}))
        log.append(received)
        log.extend(event for event, _ in decide_in_place(state, received, policy)[1:])
        if full_due(state.seq, frozen_at):
            gc.freeze()
            frozen_at = state.seq
    seconds = time.perf_counter() - started
    gc.unfreeze()
    return log, seconds


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as name:
        yield Path(name)


@contextmanager
def scratch_schema(server: str) -> Iterator[str]:
    """A store URL on `server` in a fresh schema, dropped with everything in it on exit."""
    parts = urlsplit(server)
    schema = f"bench_{secrets.token_hex(6)}"
    try:
        yield urlunsplit(parts._replace(query=f"schema={schema}"))
    finally:
        with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Ledger(Aggregate):
    """The reference aggregate: one small event per change, as in the library's docs."""

    def __init__(self) -> None:
        self.total = 0

    @event("Recorded")
    def record(self, amount: int) -> None:
        self.total += amount


def eventsourcing_reference(events: int, batch: int) -> tuple[float, float]:
    """The eventsourcing library's own Aggregate on SQLite: events/s saved (in saves of
    `batch` events) and events/s reconstructed, for one aggregate of `events` events."""
    with scratch_dir() as tmp:
        app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                               "SQLITE_DBNAME": str(tmp / "reference.db")})
        ledger = Ledger()
        app.save(ledger)
        saved = 1
        elapsed = 0.0
        while saved < events:
            for _ in range(min(batch, events - saved)):
                ledger.record(1)
            started = time.perf_counter()
            app.save(ledger)
            elapsed += time.perf_counter() - started
            saved = ledger.version
        started = time.perf_counter()
        with collector_paused():
            back = app.repository.get(ledger.id)
        reconstruct = time.perf_counter() - started
        assert back.version == events
        app.close()
    return (events - 1) / elapsed, events / reconstruct


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


def cluster(nodes: int) -> Any:
    """`nodes` nodes on loopback sharing this machine's cores; None for one local Ray."""
    import ray
    from ray.cluster_utils import Cluster

    from baton.actors.cluster import ensure_ray

    if nodes == 1:
        ensure_ray()
        return None

    cores = os.cpu_count() or 2
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": cores // nodes})
    for _ in range(nodes - 1):
        made.add_node(num_cpus=max(1, cores // nodes))
    made.wait_for_nodes()
    ray.init(address=made.address, namespace="baton",
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    return made
