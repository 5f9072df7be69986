"""Time from a coordinator kill to its next recorded decision, on long logs.

For runs whose logs hold 10,000 and 100,000 events: a coordinator is resumed on the
run, killed with Ray (`ray.kill(..., no_restart=False)`), restarted by Ray, and the time
until the log gains its next decision is measured. Beside it, the time to fold the same
log from scratch (no snapshot) and from the latest snapshot. Target: under 2 s at
100,000 events.

    .venv/bin/python benchmarks/recovery.py [--quick]
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import ray

import baton
from baton import Assignment, HandlerInfo, Spec, Task, open_store
from baton.actors.cluster import ensure_ray
from baton.events.decider import decide_in_place
from baton.events.model import Result
from baton.events.policy import DefaultPolicy
from baton.events.schema import Decision, ResultReceived, RunRequested
from baton.events.state import RunState
from workload import machine, scratch_dir

TAIL_TASKS = 40


@baton.handler(capabilities=["echo"], replicas=2, num_cpus=0.5, name="echo")
def slow_echo(assignment: Assignment) -> Any:
    time.sleep(0.1)
    return assignment.inputs


def record_partial_run(url: str, run_id: str, events: int) -> None:
    """A run whose log holds about `events` events, TAIL_TASKS tasks still to do, and
    snapshots where a coordinator would have taken them."""
    tasks = events // 3 + TAIL_TASKS
    plan = tuple(Task(id=f"t{i}", capability="echo", inputs={"i": i}) for i in range(tasks))
    handlers = (HandlerInfo(name="echo", capabilities=("echo",), capacity=8),)
    state, policy = RunState(), DefaultPolicy()
    with open_store(url) as store:
        pending = decide_in_place(state, RunRequested(run_id=run_id, seq=1, tasks=plan,
                                                      handlers=handlers), policy)
        while state.seq < events:
            aid = next(iter(state.in_flight))
            received = ResultReceived(run_id=run_id, seq=state.seq + 1,
                                      result=Result(assignment_id=aid, output={"i": 0}))
            pending += decide_in_place(state, received, policy)
            if len(pending) >= 1_000 or state.seq >= events:
                store.append(run_id, [e for e, _ in pending], state.seq - len(pending),
                             [b for _, b in pending])
                pending = []
            if not pending:
                store.keep_state(state)  # as a coordinator keeps them


def fold_seconds(url: str, run_id: str, from_snapshot: bool) -> float:
    with open_store(url) as store:
        started = time.perf_counter()
        store.state(run_id, from_snapshot=from_snapshot)
        return time.perf_counter() - started


def kill_to_next_decision(url: str, run_id: str) -> float:
    spec = Spec(goal="recover", tasks=[Task(id="unused", capability="echo")],
                handlers=[slow_echo])
    with open_store(url) as store:
        start_seq = store.last_seq(run_id)
    outcome: list[Any] = []
    driver = threading.Thread(target=lambda: outcome.append(
        baton.resume(run_id, store=url, spec=spec)))
    driver.start()
    with open_store(url) as store:
        while store.last_seq(run_id) <= start_seq + 2:  # the first restart is recorded
            time.sleep(0.01)
        coordinator = ray.get_actor(f"baton:{run_id}", namespace="baton")
        killed_at_seq = store.last_seq(run_id)
        killed = time.perf_counter()
        ray.kill(coordinator, no_restart=False)
        restarts = 0
        while True:
            for event in store.read(run_id, after=killed_at_seq):
                restarts += event.type == "CoordinatorRestarted"
                if restarts and isinstance(event, Decision):
                    elapsed = time.perf_counter() - killed
                    driver.join()
                    assert outcome and outcome[0].ok, outcome
                    return elapsed
            time.sleep(0.005)


def main() -> None:
    sizes = (10_000,) if "--quick" in sys.argv else (10_000, 100_000)
    ensure_ray()
    print(f"recovery — {machine()}, Ray {ray.__version__}")
    print(f"{'events':>8} {'kill -> next decision':>22} {'fold, no snapshot':>18} "
          f"{'fold from snapshot':>19}")
    for events in sizes:
        with scratch_dir() as tmp:
            url = f"sqlite:///{tmp / 'recovery.db'}"
            record_partial_run(url, "long", events)
            full = fold_seconds(url, "long", from_snapshot=False)
            snap = fold_seconds(url, "long", from_snapshot=True)
            recovery = kill_to_next_decision(url, "long")
        print(f"{events:>8} {recovery:>21.2f}s {full:>17.2f}s {snap:>18.2f}s")
    print("target: kill -> next decision under 2 s at 100,000 events")


if __name__ == "__main__":
    main()
