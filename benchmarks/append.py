"""Events/s appended to a SQLite store, and to a PostgreSQL one, in batches of 1, 10,
100 and 1,000.

Beside each SQLite row, the eventsourcing library's own Aggregate saving the same number
of events in saves of the same size, on the same machine in the same run, and the
ratio. The PostgreSQL column needs a server: --postgres URL or $BATON_TEST_POSTGRES
(each batch size gets a fresh schema, dropped afterwards). Target: >= 100,000 events/s
at batch 1,000.

    .venv/bin/python benchmarks/append.py [--quick] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import time

from baton import open_store
from workload import (
    eventsourcing_reference,
    generate_run,
    machine,
    scratch_dir,
    scratch_schema,
)

SIZES = {1: 2_000, 10: 20_000, 100: 100_000, 1_000: 200_000}


def appended_per_second(events: list, batch: int, url: str) -> float:
    with open_store(url) as store:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            store.append("bench", events[start : start + batch], start)
        return len(events) / (time.perf_counter() - started)


def on_postgres(events: list, batch: int, server: str) -> float:
    with scratch_schema(server) as url:
        return appended_per_second(events, batch, url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", default=os.environ.get("BATON_TEST_POSTGRES"))
    args = parser.parse_args()
    sizes = {b: n // 10 for b, n in SIZES.items()} if args.quick else SIZES
    log, _ = generate_run(max(sizes.values()) // 3 + 1)
    print(f"append — {machine()}")
    if not args.postgres:
        print('PostgreSQL column skipped: no server; eval "$(.ci/postgres start)" gives one')
    print(f"{'batch':>6} {'events':>8} {'sqlite ev/s':>12} {'eventsourcing ev/s':>19} "
          f"{'ratio':>6} {'postgresql ev/s':>16}")
    for batch, count in sizes.items():
        with scratch_dir() as tmp:
            rate = appended_per_second(log[:count], batch, f"sqlite:///{tmp / 'append.db'}")
        reference, _ = eventsourcing_reference(count, batch)
        pg = (f"{on_postgres(log[:count], batch, args.postgres):>16,.0f}" if args.postgres
              else f"{'-':>16}")
        print(f"{batch:>6} {count:>8} {rate:>12,.0f} {reference:>19,.0f} "
              f"{rate / reference:>6.2f} {pg}")
    print("target: >= 100,000 events/s at batch 1,000")


if __name__ == "__main__":
    main()
