"""What the coordinator spends per assignment, without Ray: decide, encode, append, wire.

The coordinator's own loop, run in one process against a worker that answers at once:
a run of echo tasks on one handler of two replicas; each turn takes the results that
have come back (1, 16 or 256 of them), folds each into the state and decides what
follows (`decide_in_place`: evolve, decide, encode), appends the turn to a SQLite log, and sends
the dispatched assignments out. The split, in µs per assignment:

- decide: building each stimulus, evolve and the rules (turn's time less its encoding)
- encode: each event's canonical bytes (the stimulus and every decision)
- append: the store's transaction, one per turn
- wire: the coordinator's half of what Ray does per call: pickling the call's batch of
  assignments out and unpickling its list of outcomes back, a call per turn (the
  worker's half is shown beside it, not counted)

Target (issue 10): everything the coordinator adds <= 145 µs per assignment.

    .venv/bin/python benchmarks/hot_path.py [--quick] [--tasks N]
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections import deque
from dataclasses import dataclass

import baton
from baton import Assignment, Task
from baton.actors.outage import Patience
from baton.events.decider import decide_in_place
from baton.events.model import Execution, Result
from baton.events.policy import DefaultPolicy
from baton.events.schema import AssignmentDispatched, ResultReceived, RunRequested, encode
from baton.events.state import RunState
from workload import machine, scratch_dir

TARGET_US = 145.0
NODE = "f" * 56  # a Ray node id's length


@baton.handler(capabilities=["echo"], replicas=2, num_cpus=0.5, name="echo")
def echo(assignment: Assignment) -> object:
    return assignment.inputs


@dataclass
class Split:
    """Seconds spent in each part of the loop, and what it handled."""

    decide: float = 0.0
    encode: float = 0.0
    append: float = 0.0
    wire: float = 0.0  # the coordinator's half
    worker_wire: float = 0.0  # the worker's half, for reference
    assignments: int = 0
    turns: int = 0

    def per_assignment_us(self, part: float) -> float:
        return part / self.assignments * 1e6

    @property
    def total(self) -> float:
        return self.decide + self.encode + self.append + self.wire


def run_loop(tasks: int, per_turn: int, store_url: str) -> Split:
    """Drive one run of `tasks` echo tasks to completion, `per_turn` results a turn."""
    split = Split()
    policy = DefaultPolicy()
    state = RunState()
    run_id = "hot"
    plan = tuple(Task(id=f"t{i}", capability="echo", inputs={"i": i}) for i in range(tasks))
    sent: deque[Assignment] = deque()  # dispatched, not yet sent
    patience = Patience(store_url, run_id)
    with baton.open_store(store_url) as store:
        request = RunRequested(run_id=run_id, seq=1, recorded_at=time.time(), goal="hot",
                               tasks=plan, handlers=(echo.info(),))
        made = decide_in_place(state, request, policy)
        store.append(run_id, [e for e, _ in made], 0, [d for _, d in made])
        _queue(made, sent)
        while sent:
            # One call, carrying the next `per_turn` assignments, as Ray would pickle it.
            started = time.perf_counter()
            call = pickle.dumps([sent.popleft() for _ in range(min(per_turn, len(sent)))],
                                protocol=5)
            split.wire += time.perf_counter() - started

            # The worker's half: take the batch in, answer each at once, send them back.
            started, now = time.perf_counter(), time.time()
            ran = Execution(node=NODE, pid=1, replica=0, started_at=now, ended_at=now)
            back = pickle.dumps([Result(assignment_id=a.id, output=a.inputs, execution=ran)
                                 for a in pickle.loads(call)], protocol=5)
            split.worker_wire += time.perf_counter() - started

            started = time.perf_counter()
            results = pickle.loads(back)
            received = time.perf_counter()
            split.wire += received - started

            expected = state.seq
            events, recorded = [], []
            now = time.time()
            for result in results:
                stimulus = ResultReceived(run_id=run_id, seq=state.seq + 1, recorded_at=now,
                                          result=result)
                for event, data in decide_in_place(state, stimulus, policy):
                    events.append(event)
                    recorded.append(data)
            decided = time.perf_counter()
            for event in events:  # the same encoding again, to tell its share
                encode(event)
            encoded = time.perf_counter()
            split.decide += (decided - received) - (encoded - decided)
            split.encode += encoded - decided

            # Through what the coordinator appends with: it waits out a failing store.
            patience.append(store, events, expected, recorded)
            split.append += time.perf_counter() - encoded
            split.turns += 1
            _queue(zip(events, recorded, strict=True), sent)
        assert state.status == "completed", state.status
    split.assignments = tasks
    return split


def _queue(made: object, sent: deque[Assignment]) -> None:
    for event, _ in made:  # type: ignore[attr-defined]
        if isinstance(event, AssignmentDispatched):
            sent.append(event.assignment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, not 20,000")
    parser.add_argument("--tasks", type=int, help="tasks per run")
    args = parser.parse_args()
    tasks = args.tasks or (2_000 if args.quick else 20_000)
    print(f"hot path: {tasks:,} echo assignments, no Ray — {machine()}")
    print(f"{'results/turn':>12} {'decide':>8} {'encode':>8} {'append':>8} {'wire':>8} "
          f"{'total µs':>9} {'target':>7} {'worker wire':>12}")
    for per_turn in (1, 16, 256):
        with scratch_dir() as tmp:
            split = run_loop(tasks, per_turn, f"sqlite:///{tmp / 'hot.db'}")
        us = split.per_assignment_us
        print(f"{per_turn:>12} {us(split.decide):>8.1f} {us(split.encode):>8.1f} "
              f"{us(split.append):>8.1f} {us(split.wire):>8.1f} {us(split.total):>9.1f} "
              f"{TARGET_US:>7.0f} {us(split.worker_wire):>12.1f}")
    print("µs per assignment; target: total <= 145 (what the coordinator adds to raw Ray)")


if __name__ == "__main__":
    main()
