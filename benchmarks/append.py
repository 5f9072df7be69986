"""Events/s appended to a SQLite store in batches of 1, 10, 100 and 1,000.

Beside each row, the eventsourcing library's own Aggregate saving the same number of
events in saves of the same size, on the same machine in the same run, and the ratio.
Target: >= 100,000 events/s at batch 1,000.

    .venv/bin/python benchmarks/append.py [--quick]
"""

from __future__ import annotations

import sys
import time

from baton import open_store
from workload import eventsourcing_reference, generate_run, machine, scratch_dir

SIZES = {1: 2_000, 10: 20_000, 100: 100_000, 1_000: 200_000}


def appended_per_second(events: list, batch: int, path: str) -> float:
    with open_store(f"sqlite:///{path}") as store:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            store.append("bench", events[start : start + batch], start)
        return len(events) / (time.perf_counter() - started)


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = {b: n // 10 for b, n in SIZES.items()} if quick else SIZES
    log, _ = generate_run(max(sizes.values()) // 3 + 1)
    print(f"append to SQLite — {machine()}")
    print(f"{'batch':>6} {'events':>8} {'baton ev/s':>12} {'eventsourcing ev/s':>19} {'ratio':>6}")
    for batch, count in sizes.items():
        with scratch_dir() as tmp:
            rate = appended_per_second(log[:count], batch, str(tmp / "append.db"))
        reference, _ = eventsourcing_reference(count, batch)
        print(f"{batch:>6} {count:>8} {rate:>12,.0f} {reference:>19,.0f} {rate / reference:>6.2f}")
    print("target: >= 100,000 events/s at batch 1,000")


if __name__ == "__main__":
    main()
