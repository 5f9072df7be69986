"""Events/s decoded from a SQLite store and folded into RunState, and what a turn costs.

Runs of 100 and of 100,000 tasks side by side: the per-event cost of folding (`evolve`)
and of deciding (`decide_in_place`: evolve + decide) must not grow with the number of tasks (target:
within 2x). Beside them, the eventsourcing library's own Aggregate reconstructing the
same number of events from SQLite, in the same run, and the ratio.
Target: >= 200,000 events/s folded.

    .venv/bin/python benchmarks/fold.py [--quick]
"""

from __future__ import annotations

import sys
import time

from baton import open_store
from workload import eventsourcing_reference, generate_run, machine, scratch_dir


def fold_seconds(store_url: str, run_id: str, min_seconds: float) -> tuple[float, int]:
    """Best seconds to fold the run from the store (repeated for at least `min_seconds`)."""
    with open_store(store_url) as store:
        best, spent, events = float("inf"), 0.0, 0
        while spent < min_seconds or best == float("inf"):
            started = time.perf_counter()
            state = store.state(run_id, from_snapshot=False)
            took = time.perf_counter() - started
            best, spent, events = min(best, took), spent + took, state.seq
        assert state.status == "completed"
    return best, events


def main() -> None:
    sizes = (100, 10_000) if "--quick" in sys.argv else (100, 100_000)
    print(f"fold from SQLite — {machine()}")
    print(f"{'tasks':>8} {'events':>8} {'fold ev/s':>11} {'fold µs/ev':>11} "
          f"{'decide µs/ev':>13} {'eventsourcing ev/s':>19} {'ratio':>6}")
    per_event = {}
    for tasks in sizes:
        log, deciding = generate_run(tasks)
        with scratch_dir() as tmp:
            url = f"sqlite:///{tmp / 'fold.db'}"
            with open_store(url) as store:
                for start in range(0, len(log), 1_000):
                    store.append("bench", log[start : start + 1_000], start)
            seconds, events = fold_seconds(url, "bench", min_seconds=1.0)
        _, reference = eventsourcing_reference(events, batch=1_000)
        rate = events / seconds
        per_event[tasks] = (seconds / events * 1e6, deciding / len(log) * 1e6)
        print(f"{tasks:>8} {events:>8} {rate:>11,.0f} {per_event[tasks][0]:>11.2f} "
              f"{per_event[tasks][1]:>13.2f} {reference:>19,.0f} {rate / reference:>6.2f}")
    small, large = per_event[sizes[0]], per_event[sizes[1]]
    print(f"per-event cost, {sizes[1]:,} tasks vs {sizes[0]:,}: fold {large[0] / small[0]:.2f}x, "
          f"decide {large[1] / small[1]:.2f}x (target: within 2x)")
    print("target: >= 200,000 events/s folded")


if __name__ == "__main__":
    main()
