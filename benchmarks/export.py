"""Export to Parquet and import back, and `baton stats`, on a long log, beside a plain
SELECT of its rows.

A completed run of 1,000,000 events (--quick: 100,000), decided by the real decider and
stored in SQLite with the times and executions a coordinator records, is exported to a
Parquet file (`baton export`'s path: every record read, its query columns derived, the
file written) and imported into a fresh SQLite store (`baton import`'s path: every run
checked, decoded, folded and appended). Beside them, in the same run, a plain `SELECT`
of the same rows from the same file: the store's own limit. Target: export >= 0.5 of the
plain SELECT. And `baton stats`' figures from the same store (the run's table read, then
its statistics computed), each part timed. Target: stats in under 2 s on the 1,000,000
events.

    .venv/bin/python benchmarks/export.py [--quick]
"""

from __future__ import annotations

import sqlite3
import sys
import time

import pyarrow.parquet as pq
from replay import record_run

from baton import open_store
from baton.events.store import arrow, collector_paused, restore
from baton.projections.metrics import run_stats
from workload import machine, scratch_dir


def plain_select(path: str) -> float:
    """Seconds to read every stored row, as the store's own recorder selects them."""
    started = time.perf_counter()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT originator_id, originator_version, topic, state "
                          "FROM stored_events ORDER BY originator_id, originator_version"
                          ).fetchall()
    took = time.perf_counter() - started
    assert rows
    return took


def main() -> None:
    events = 100_000 if "--quick" in sys.argv else 1_000_000
    print(f"export and import, {events:,}-event run — {machine()}")
    with scratch_dir() as tmp:
        source = tmp / "source.db"
        length = record_run(f"sqlite:///{source}", "long", events, timed=True)
        select_s = plain_select(str(source))
        with open_store(f"sqlite:///{source}") as store, collector_paused():
            started = time.perf_counter()
            rows = arrow.columns(store, "long")
            read_s = time.perf_counter() - started
            stats = run_stats(rows)
            stats_s = time.perf_counter() - started
            del rows
        assert stats.events == length and stats.accepted == stats.assignments == sum(
            h.accepted for h in stats.handlers) > 0
        assert all(h.latency_s.count == h.assignments for h in stats.handlers)
        with open_store(f"sqlite:///{source}") as store, collector_paused():
            started = time.perf_counter()
            arrow.write_parquet(store, ["long"], tmp / "long.parquet")
            export_s = time.perf_counter() - started
        with open_store(f"sqlite:///{tmp / 'target.db'}") as store, collector_paused():
            started = time.perf_counter()
            loaded = restore.load(store, pq.read_table(tmp / "long.parquet"))
            import_s = time.perf_counter() - started
        assert loaded == {"long": length}
    print(f"{'':>12} {'events/s':>12} {'vs SELECT':>10}")
    print(f"{'SELECT':>12} {length / select_s:>12,.0f} {1.0:>10.2f}")
    print(f"{'export':>12} {length / export_s:>12,.0f} {select_s / export_s:>10.2f}")
    print(f"{'import':>12} {length / import_s:>12,.0f} {select_s / import_s:>10.2f}")
    print("target: export >= 0.5 of the plain SELECT")
    print(f"stats: {stats_s:.2f}s = read {read_s:.2f}s + compute {stats_s - read_s:.2f}s "
          f"({length / stats_s:,.0f} events/s); target: < 2 s on 1,000,000 events")


if __name__ == "__main__":
    main()
