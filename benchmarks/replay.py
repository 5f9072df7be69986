"""Replay on a long log: the ledger and the state at random seqs, and verify's rate.

A completed run of 1,000,000 events (333,333 tasks on two handlers) is decided by the
real decider and written to SQLite in batches, with snapshots where a coordinator
would have taken them. Then, each beside what it replaces or is measured against:

- ledger_at: the ledger at random seqs (seeded), read from the run's timeline (target:
  <= 200 ms), beside folding the log to those seqs, as `replay --until` did before; and
  the first read, which derives the timeline and keeps it;
- state_at: the state at random seqs, from the nearest full snapshot, the deltas after it
  and the tail (target: <= 500 ms, stretch 50 ms), beside folding the log to those seqs;
- verify: every stimulus re-decided and every decision compared with its stored bytes
  (target: >= 100,000 events/s), beside the eventsourcing library's own Aggregate
  reconstructing an aggregate of as many events from SQLite;
- verify --parallel: the same in pieces at once on Ray workers (2, or --workers N),
  beside the serial verify (target: >= 1.7x on this 2-core machine). Ray is started
  first, and its workers warmed on a small run, as on a cluster already up.

    .venv/bin/python benchmarks/replay.py [--quick] [--nodes 2 --postgres URL]
    (--quick: 100,000 events; --nodes 2: a two-node cluster on loopback, whose pieces
    reach the store only through a server: PostgreSQL, a schema of its own)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack

import ray

from baton import HandlerInfo, Task, open_store
from baton.events.decider import decide_in_place
from baton.events.model import Execution, Result
from baton.events.policy import DefaultPolicy
from baton.events.schema import ResultReceived, RunRequested
from baton.events.state import RunState
from baton.events.store import collector_paused
from baton.projections.ledger import ledger
from baton.replay import ledger_at, state_at, verify
from workload import cluster, eventsourcing_reference, machine, scratch_dir, scratch_schema

SAMPLES = 12
FOLDED = 3  # of those seqs, how many the fold is measured at (it takes seconds)
EPOCH = 1_800_000_000.0  # when a timed run begins
POLICY = "baton.events.policy:DefaultPolicy"  # the policy the run records


def record_run(url: str, run_id: str, events: int, *, timed: bool = False) -> int:
    """Decide and store a completed run of about `events` events; returns its length.
    `timed`: stimuli carry a time and results where and when they ran, as a
    coordinator records them (a result every millisecond, its handler started 3 ms before)."""
    tasks = (events - 2) // 3
    plan = tuple(Task(id=f"t{i}", capability="work", inputs={"item": i}) for i in range(tasks))
    handlers = tuple(HandlerInfo(name=f"w{j}", capabilities=("work",), capacity=8)
                     for j in range(2))
    state, policy = RunState(), DefaultPolicy()
    with open_store(url) as store, collector_paused():
        pending = decide_in_place(state, RunRequested(run_id=run_id, seq=1, tasks=plan,
                                                      handlers=handlers, policy=POLICY,
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
                store.keep_state(state)  # as a coordinator keeps them
        assert state.status == "completed"
    return state.seq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default=None, help="a server to record to (a schema "
                        "of its own); else a SQLite file")
    args = parser.parse_args()
    if args.nodes > 1 and not args.postgres:
        parser.error("--nodes 2 needs --postgres: a piece on the other node cannot open "
                     "this machine's SQLite file")
    events = 100_000 if args.quick else 1_000_000
    made = cluster(args.nodes)
    where = "PostgreSQL" if args.postgres else "SQLite"
    print(f"replay on {where} — {machine()}, {args.nodes} node(s)")
    try:
        with scratch_dir() as tmp, ExitStack() as scratch:
            def url(name: str) -> str:
                return (scratch.enter_context(scratch_schema(args.postgres)) if args.postgres
                        else f"sqlite:///{tmp / name}.db")

            measure(url("replay"), url("warm"), events, args.workers)
    finally:
        if made is not None:
            ray.shutdown()
            made.shutdown()


def measure(url: str, warm: str, events: int, workers: int) -> None:
    started = time.perf_counter()
    length = record_run(url, "bench", events)
    print(f"recorded {length:,} events in {time.perf_counter() - started:.0f}s")
    rng = random.Random(5)
    seqs = sorted(rng.randrange(2, length + 1) for _ in range(SAMPLES))
    record_run(warm, "warm", 20_000)
    with open_store(warm) as store:  # Ray's workers started, and Baton imported in them
        verify(store, "warm", parallel=workers)
    with open_store(url) as store:
        first = timed(lambda: ledger_at(store, "bench"))
        read = [timed(lambda seq=seq: ledger_at(store, "bench", seq)) for seq in seqs]
        folded = [timed(lambda seq=seq: ledger(store.read_recorded("bench", until=seq)))
                  for seq in seqs[::SAMPLES // FOLDED][:FOLDED]]
        states = [timed(lambda seq=seq: state_at(store, "bench", seq)) for seq in seqs]
        unkept = [timed(lambda seq=seq: store.state("bench", until=seq, from_snapshot=False))
                  for seq in seqs[::SAMPLES // FOLDED][:FOLDED]]
        serial = timed(lambda: verify(store, "bench", DefaultPolicy())) / 1e3
        started = time.perf_counter()
        report = verify(store, "bench", parallel=workers)
        parallel = time.perf_counter() - started
        assert report.reproduced and report.events == length, report
    _, reference = eventsourcing_reference(length, batch=1_000)
    rate = length / serial
    print(f"{'':28} {'median':>10} {'slowest':>10} {'before':>10} {'ratio':>7}")
    median = statistics.median(read)
    before = statistics.median(folded)
    print(f"{'ledger_at, ms':<28} {median:>10,.1f} {max(read):>10,.1f} {before:>10,.0f} "
          f"{before / median:>6,.0f}x   (before: the log folded to the seq, "
          f"{len(folded)} of the seqs)")
    print(f"{'  first read, ms':<28} {first:>10,.1f}   (derives the timeline and keeps it)")
    median, before = statistics.median(states), statistics.median(unkept)
    print(f"{'state_at, ms':<28} {median:>10,.1f} {max(states):>10,.1f} {before:>10,.0f} "
          f"{before / median:>6,.0f}x   (before: the log folded to the seq)")
    print(f"{'verify, events/s':<28} {rate:>10,.0f} {'':>10} {reference:>10,.0f} "
          f"{rate / reference:>6.2f}x   (against: eventsourcing's Aggregate reconstruction)")
    print(f"{f'verify in {workers} pieces, ev/s':<28} {length / parallel:>10,.0f} {'':>10} "
          f"{rate:>10,.0f} {serial / parallel:>6.2f}x   (against: the serial verify)")
    print(f"median of {SAMPLES} random seqs; targets on 1,000,000 events: ledger_at <= 200 ms, "
          "state_at <= 500 ms (stretch 50), verify >= 100,000 events/s, in pieces >= 1.7x")


def timed(call: Callable[[], object]) -> float:
    """Milliseconds `call` takes."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e3


if __name__ == "__main__":
    main()
