"""Replay on a long log: verify's rate, and state_at at random seqs.

A completed run of 1,000,000 events (333,333 tasks on two handlers) is decided by the
real decider and written to SQLite in batches, with snapshots where a coordinator
would have taken them. Then:

- verify: every stimulus re-decided and every decision compared with its stored bytes
  (target: >= 100,000 events/s);
- state_at: the state at random seqs (seeded), from the nearest snapshot plus the tail
  (target: <= 50 ms);
- beside them, in the same run, the eventsourcing library's own Aggregate reconstructing
  an aggregate of as many events from SQLite.

    .venv/bin/python benchmarks/replay.py [--quick]    (--quick: 100,000 events)
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from baton import HandlerInfo, Task, open_store
from baton.actors.coordinator import snapshot_due
from baton.events.decider import decide_in_place
from baton.events.model import Execution, Result
from baton.events.policy import DefaultPolicy
from baton.events.schema import ResultReceived, RunRequested
from baton.events.state import RunState
from baton.events.store import collector_paused
from baton.replay import state_at, verify
from workload import eventsourcing_reference, machine, scratch_dir

SAMPLES = 12
EPOCH = 1_800_000_000.0  # when a timed run begins


def record_run(url: str, run_id: str, events: int, *, timed: bool = False) -> int:
    """Decide and store a completed run of about `events` events; returns its length.
    `timed`: stimuli carry a time and results where and when they ran, as a
    coordinator records them (a result every millisecond, its handler started 3 ms before)."""
    tasks = (events - 2) // 3
    plan = tuple(Task(id=f"t{i}", capability="work", inputs={"item": i}) for i in range(tasks))
    handlers = tuple(HandlerInfo(name=f"w{j}", capabilities=("work",), capacity=8)
                     for j in range(2))
    state, policy, snapshot_at = RunState(), DefaultPolicy(), 0
    with open_store(url) as store, collector_paused():
        pending = decide_in_place(state, RunRequested(run_id=run_id, seq=1, tasks=plan,
                                                      handlers=handlers,
                                                      recorded_at=EPOCH if timed else None), policy)
        while state.in_flight:
            aid = next(iter(state.in_flight))
            now = EPOCH + state.seq / 3000 if timed else None
            ran = Execution(node="bench", pid=1, replica=0, started_at=now - 0.003,
                            ended_at=now - 0.001) if now is not None else None
            received = ResultReceived(run_id=run_id, seq=state.seq + 1, recorded_at=now,
                                      result=Result(assignment_id=aid, output={"lines": 42},
                                                    execution=ran))
            pending += decide_in_place(state, received, policy)
            if len(pending) >= 1_000 or not state.in_flight:
                store.append(run_id, [e for e, _ in pending], state.seq - len(pending),
                             [b for _, b in pending])
                pending = []
                if snapshot_due(state.seq, snapshot_at):  # the coordinator's schedule
                    store.save_snapshot(state)
                    snapshot_at = state.seq
        assert state.status == "completed"
    return state.seq


def main() -> None:
    events = 100_000 if "--quick" in sys.argv else 1_000_000
    print(f"replay on SQLite — {machine()}")
    with scratch_dir() as tmp:
        url = f"sqlite:///{tmp / 'replay.db'}"
        started = time.perf_counter()
        length = record_run(url, "bench", events)
        print(f"recorded {length:,} events in {time.perf_counter() - started:.0f}s")
        with open_store(url) as store:
            started = time.perf_counter()
            report = verify(store, "bench", DefaultPolicy())
            verifying = time.perf_counter() - started
            assert report.reproduced and report.events == length, report
            rng = random.Random(5)
            took: list[float] = []
            for seq in sorted(rng.randrange(2, length + 1) for _ in range(SAMPLES)):
                started = time.perf_counter()
                state = state_at(store, "bench", seq)
                took.append(time.perf_counter() - started)
                assert state.seq == seq
    _, reference = eventsourcing_reference(length, batch=1_000)
    rate = length / verifying
    print(f"{'':24} {'Baton':>12} {'eventsourcing':>14} {'ratio':>6}")
    print(f"{'verify, events/s':<24} {rate:>12,.0f} {reference:>14,.0f} "
          f"{rate / reference:>6.2f}   (eventsourcing: Aggregate reconstruction)")
    median, worst = statistics.median(took) * 1e3, max(took) * 1e3
    print(f"{'state_at, ms':<24} {median:>12,.1f}   median of {SAMPLES} random seqs; "
          f"slowest {worst:,.1f}")
    print("targets: verify >= 100,000 events/s; state_at <= 50 ms (on 1,000,000 events)")


if __name__ == "__main__":
    main()
