"""The coordinator: one Ray actor per run that decides, records, then acts.

Each turn it takes the stimuli that have arrived (worker results and failures, in the
order they finished), folds each into the run's state and decides what follows, appends
the turn's stimuli and decisions to the log in one transaction, and only then performs
the effects — dispatching assignments to worker actors (write-ahead: invariant 3).
Sequence numbers are assigned here and nowhere else. No handler code runs in this
process (invariant 1): it holds worker handles, never handlers.
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import ray
from pydantic import BaseModel
from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayError

from baton.events.decider import turn
from baton.events.model import Failure, Result, register_schema
from baton.events.policy import Policy
from baton.events.schema import (
    AssignmentDispatched,
    Envelope,
    FailureReported,
    ResultReceived,
    RunRequested,
    Stimulus,
)
from baton.events.store import open_store

StimulusMaker = Callable[[int], Stimulus]  # given the seq it will have


@dataclass
class Progress:
    """How a run stands, as the coordinator sees it now."""

    run_id: str
    status: str  # running, waiting (on people), completed, failed
    tasks: int = 0
    accepted: int = 0
    abandoned: int = 0
    in_flight: int = 0
    escalations: int = 0
    dispatched: int = 0
    failures: int = 0
    rejections: int = 0
    recoveries: int = 0
    events: int = 0
    coordinator_pid: int = 0
    turns: int = 0
    deciding_s: float = 0.0
    appending_s: float = 0.0
    elapsed_s: float = 0.0
    output: Any = None
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def assignments_per_s(self) -> float:
        return self.dispatched / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        # Shallow: a large run's output is not worth a deep copy.
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Coordinator:
    """The coordinator of one run (wrapped with ray.remote by the launcher).

    `drive` holds one thread for the whole run; the actor gets a second so `progress`
    can be read meanwhile (it only reads counters)."""

    def __init__(
        self,
        run_id: str,
        store_url: str,
        policy: Policy,
        pools: dict[str, Sequence[ActorHandle[Any]]],
        request: RunRequested | None = None,
        schemas: dict[str, type[BaseModel]] | None = None,
    ):
        for topic, model in (schemas or {}).items():
            register_schema(topic, model)
        self.run_id = run_id
        self.store = open_store(store_url)
        self.policy = policy
        self.pools = {name: list(workers) for name, workers in pools.items()}
        self.held: dict[tuple[str, int], int] = {
            (name, i): 0 for name, workers in self.pools.items() for i in range(len(workers))
        }
        self.request = request
        self.state = self.store.state(run_id)
        self.pending: dict[ray.ObjectRef[Any], tuple[str, tuple[str, int]]] = {}
        self.started = time.monotonic()
        self.tally: Counter[str] = Counter()
        self.timing = [0, 0.0, 0.0]  # turns, seconds deciding, seconds appending

    # --- the loop ----------------------------------------------------------------------

    def drive(self) -> dict[str, Any]:
        """Run until the run ends, or only people can move it on; its final progress."""
        if self.state.seq == 0:
            if self.request is None:
                raise ValueError(f"run {self.run_id!r} has no log and no request to start it")
            request, self.request = self.request, None
            self._turn([lambda seq: request])
        while self.state.status == "running" and self.pending:
            refs = list(self.pending)
            # Everything finished by now joins this turn, in the order Ray reports it.
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if not ready:
                ready, _ = ray.wait(refs, num_returns=1)
            try:
                outcomes = ray.get(ready)
            except RayError:  # one of them failed: fetch each alone to tell which
                outcomes = [None] * len(ready)
            arrived = zip(ready, outcomes, strict=True)
            self._turn([self._arrived(ref, outcome) for ref, outcome in arrived])
        return self.progress_now().as_dict()

    def _arrived(
        self, ref: ray.ObjectRef[Any], outcome: Result | Failure | None
    ) -> StimulusMaker:
        assignment_id, worker = self.pending.pop(ref)
        self.held[worker] -= 1
        try:
            if outcome is None:
                outcome = ray.get(ref)
        except RayActorError as error:
            outcome = Failure(assignment_id=assignment_id, kind="worker_lost",
                              error_type=type(error).__name__,
                              message=f"worker {worker[0]}[{worker[1]}] was lost: {error}")
        except RayError as error:
            outcome = Failure(assignment_id=assignment_id, kind="error",
                              error_type=type(error).__name__, message=str(error))
        return _stimulus_for(self.run_id, outcome)

    def _turn(self, makers: Sequence[StimulusMaker]) -> None:
        expected = self.state.seq
        events: list[Envelope] = []
        recorded: list[bytes] = []
        started = time.perf_counter()
        for make in makers:
            for event, data in turn(self.state, make(self.state.seq + 1), self.policy):
                events.append(event)
                recorded.append(data)
        decided_at = time.perf_counter()
        # Write-ahead: the turn is durable before any of its effects happen.
        self.store.append(self.run_id, events, expected, recorded)
        self.timing[0] += 1
        self.timing[1] += decided_at - started
        self.timing[2] += time.perf_counter() - decided_at
        for event in events:
            self.tally[event.type] += 1  # type: ignore[attr-defined]
        for event in events:
            if isinstance(event, AssignmentDispatched):
                self._dispatch(event)

    def _dispatch(self, decision: AssignmentDispatched) -> None:
        assignment = decision.assignment
        name = assignment.handler
        index = min(range(len(self.pools[name])), key=lambda i: (self.held[(name, i)], i))
        self.held[(name, index)] += 1
        ref: ray.ObjectRef[Any] = self.pools[name][index].run.remote(assignment)
        self.pending[ref] = (assignment.id, (name, index))

    # --- reading -----------------------------------------------------------------------

    def progress_now(self) -> Progress:
        s = self.state
        status: str = s.status
        if status == "running" and s.waiting_on_people and not len(self.pending):
            status = "waiting"
        abandoned = sum(1 for r in s.tasks.values() if r.status == "abandoned") if (
            status != "running") else 0
        return Progress(
            run_id=self.run_id,
            status=status,
            tasks=len(s.tasks),
            accepted=s.accepted,
            abandoned=abandoned,
            in_flight=len(s.in_flight),
            escalations=len(s.escalations),
            dispatched=self.tally["AssignmentDispatched"],
            failures=self.tally["FailureReported"],
            rejections=self.tally["ResultValidated"] - s.accepted,
            recoveries=self.tally["RecoveryChosen"],
            events=s.seq,
            coordinator_pid=os.getpid(),
            turns=int(self.timing[0]),
            deciding_s=self.timing[1],
            appending_s=self.timing[2],
            elapsed_s=time.monotonic() - self.started,
            output=s.output if status == "completed" else None,
            error=s.error,
            counts=dict(self.tally),
        )

    def progress(self) -> dict[str, Any]:
        """The run's progress now (callable while `drive` runs)."""
        progress = self.progress_now()
        progress.output = None  # the final output travels once, with drive()'s answer
        return progress.as_dict()

    def pid(self) -> int:
        """The coordinator's process id (tests prove handlers never run here)."""
        return os.getpid()

    def peak_memory_mb(self) -> float:
        """The coordinator process's peak resident memory, in MB."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stimulus_for(run_id: str, outcome: Result | Failure) -> StimulusMaker:
    now = time.time()
    if isinstance(outcome, Result):
        return lambda seq: ResultReceived(run_id=run_id, seq=seq, recorded_at=now,
                                          result=outcome)
    return lambda seq: FailureReported(run_id=run_id, seq=seq, recorded_at=now,
                                       failure=outcome)

