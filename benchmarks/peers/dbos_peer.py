"""The fan-out-validate-combine workload in DBOS Transact, durable on SQLite.

Two ways, each its own row (`--mode`):

- `queue`: a workflow enqueues one child workflow per task (it returns its input
  number) on a DBOS queue, whose worker thread hands them to this process's executor;
  it then waits on each child's handle, checks each result (>= 0) and sums them;
- `gather`: an async workflow runs one async step per task (it returns its input
  number) at once, with `asyncio.gather` (DBOS's way of running steps concurrently in
  one workflow: they are started in a deterministic order), then checks and sums.

The system database is a SQLite file in a temporary directory (DBOS's default for local
use), put in WAL mode here before DBOS opens it: DBOS 3.4.0 sets busy_timeout and
foreign_keys on SQLite but leaves the journal mode alone (rollback journal);
synchronous stays SQLite's default, FULL. The tuning, in the row's notes, each settable
on the command line:

- a system database pool of 4 connections, not DBOS's 20: SQLite takes one writer at a
  time, and connections waiting for its lock back off in sleeps of up to 100 ms;
- gather: at most 4 executor threads (`max_executor_threads`; DBOS's default is
  unbounded, and each step's checkpoint reads and writes go through asyncio.to_thread,
  so a gather of N steps would start up to N threads, all waiting on the database);
- queue: `worker_concurrency` 20 (unbounded by default: one thread per dequeued child),
  no global limit, and the queue and the handles polled every 0.05 s (every second by
  default, which on a run of a few seconds is much of the run).

On 2 cores the pool and the threads move the gather row by a third or so; the queue
row moves little with any of these. The time counted runs from starting the workflow
to having its checked sum; launching DBOS is not counted. `events` is the rows DBOS
wrote for the run: workflow status, inputs and outputs, and operation outputs (one per
step; in the queue, one per enqueue and one per result read).

Then recovery: the same workflow in a subprocess whose last task kills the process
(os._exit, as a crash would); the seconds from DBOS.launch() on that database (which
finds the pending workflows and re-enqueues them on its internal queue, polled every
second) to the workflow's checked sum, and how many tasks ran again.

Nothing leaves 127.0.0.1: DBOS connects to DBOS Conductor only when given a
conductor_key or when DBOS__CLOUD=true, and exports OpenTelemetry only with
enable_otlp (and the opentelemetry packages, not installed here); none is given, and
DBOS__CLOUD is removed from the environment before dbos is imported.

Runs in its own virtual environment (benchmarks/peers/.venv-dbos); prints one JSON
line for compare.py:

    benchmarks/peers/.venv-dbos/bin/python benchmarks/peers/dbos_peer.py 2000 [--mode gather]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Read when dbos is imported: with DBOS__CLOUD=true DBOS would start a Conductor websocket.
os.environ.pop("DBOS__CLOUD", None)

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID

QUEUE = "peers"
queue: Queue | None = None  # set by register_queue(), after DBOS is launched
CRASH = 3  # the exit status of the subprocess whose last task "crashes"


class Tuning:
    """What the run changes from DBOS's defaults (set from the command line)."""

    pool: int | None = 4  # sys_db_pool_size (DBOS: 20)
    threads: int | None = 4  # max_executor_threads, gather only (DBOS: unbounded)
    worker_concurrency: int | None = 20
    queue_polling_s: float = 0.05
    result_polling_s: float = 0.05
    crash_at: int | None = None  # the task that ends the process (the recovery run)


ran: list[int] = []  # every task run in this process, in the order they ran


def task(i: int) -> int:
    ran.append(i)
    if i == Tuning.crash_at:
        os._exit(CRASH)
    return i


def checked_sum(results: list[int], tasks: int) -> int:
    if len(results) != tasks or any(value < 0 for value in results):
        raise ValueError(f"{len(results)} results for {tasks} tasks, or a negative one")
    return sum(results)


@DBOS.workflow()
def echo(i: int) -> int:
    return task(i)


@DBOS.workflow()
def fan_out_queue(tasks: int) -> int:
    peers = queue or DBOS.retrieve_queue(QUEUE)
    assert peers is not None, "register_queue() first"
    handles = [peers.enqueue(echo, i) for i in range(tasks)]
    results = [h.get_result(polling_interval_sec=Tuning.result_polling_s) for h in handles]
    return checked_sum(results, tasks)


@DBOS.step()
async def echo_step(i: int) -> int:
    return task(i)


@DBOS.workflow()
async def fan_out_gather(tasks: int) -> int:
    results = await asyncio.gather(*(echo_step(i) for i in range(tasks)))
    return checked_sum(list(results), tasks)


# --- DBOS on a SQLite file ------------------------------------------------------------


def wal(path: Path) -> None:
    """Create the database file in WAL mode (kept in the file: DBOS's connections get it)."""
    with sqlite3.connect(path) as db:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode


def launch(path: Path) -> None:
    config: DBOSConfig = {
        "name": "baton-peers",
        "system_database_url": f"sqlite:///{path}",
        "application_version": "peers",  # the same in the crashed run and its recovery
        "log_level": "WARNING",
        "enable_otlp": False,  # no OpenTelemetry export (DBOS's default, said explicitly)
        "sys_db_pool_size": Tuning.pool,
        "max_executor_threads": Tuning.threads,
    }
    # No conductor_key (nor conductor_url, nor DBOS__CLOUD, removed above): DBOS opens no
    # websocket to DBOS Conductor and asks no one for entitlements (no auto_upgrade, no
    # sharding); the only connections are to the SQLite file.
    DBOS(config=config, conductor_key=None)
    DBOS.launch()


def register_queue() -> None:
    """Register the queue and wait for DBOS's thread for it (it looks for new queues
    every second), so that the time counted does not include that wait."""
    global queue
    queue = DBOS.register_queue(QUEUE, worker_concurrency=Tuning.worker_concurrency,
                                polling_interval_sec=Tuning.queue_polling_s)
    deadline = time.monotonic() + 10
    while not any(t.name == f"queue-worker-{QUEUE}" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"DBOS started no worker for queue {QUEUE}")
        time.sleep(0.01)


def run(mode: str, tasks: int, workflow_id: str) -> int:
    if mode == "queue":
        with SetWorkflowID(workflow_id):
            return fan_out_queue(tasks)
    return asyncio.run(run_async(tasks, workflow_id))


async def run_async(tasks: int, workflow_id: str) -> int:
    with SetWorkflowID(workflow_id):
        return await fan_out_gather(tasks)


def rows(path: Path) -> int:
    """The rows DBOS wrote for the workflows in this database."""
    with sqlite3.connect(path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal", mode
        return sum(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in
                   ("workflow_status", "workflow_input", "workflow_output",
                    "operation_outputs"))


# --- the measurements -----------------------------------------------------------------


def measure(tasks: int, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="peer-dbos-") as scratch:
        path = Path(scratch) / "dbos.sqlite"
        wal(path)
        launch(path)
        try:
            if mode == "queue":
                register_queue()
            started = time.perf_counter()
            total = run(mode, tasks, "fan-out")
            seconds = time.perf_counter() - started
        finally:
            DBOS.destroy(workflow_completion_timeout_sec=0)
        assert total == tasks * (tasks - 1) // 2, total
        events = rows(path)
        recovering, rerun = recovery(tasks, mode, Path(scratch) / "recovery.sqlite")
    if mode == "queue":
        notes = [f"child workflows on a Queue: worker_concurrency="
                 f"{Tuning.worker_concurrency or 'unbounded'}, no global limit, polled every "
                 f"{Tuning.queue_polling_s:g} s", f"get_result polled every "
                 f"{Tuning.result_polling_s:g} s"]
    else:
        notes = ["async steps, asyncio.gather in one workflow"]
    if Tuning.threads or mode == "gather":
        notes.append(f"max_executor_threads={Tuning.threads or 'unbounded'}")
    notes.append(f"sys_db_pool_size={Tuning.pool or 20}, WAL")
    return {
        "system": f"DBOS ({mode})",
        "tasks": tasks,
        "seconds": seconds,
        "per_s": tasks / seconds,
        "store": "SQLite (system database)",
        "replay": f"recover {recovering:,.2f} s, re-ran {rerun:,}",
        "events": events,
        "notes": "; ".join(notes),
        "versions": {"dbos": version("dbos"), "SQLite": sqlite3.sqlite_version},
    }


def recovery(tasks: int, mode: str, path: Path) -> tuple[float, int]:
    """A run whose last task ends its process; the seconds from launching DBOS again on
    its database to the recovered workflow's checked sum, and how many tasks ran again."""
    wal(path)
    crashed = subprocess.run([sys.executable, __file__, str(tasks), "--mode", mode,
                              *tuning_args(), "--crash", str(path)],
                             capture_output=True, text=True, timeout=1_800)
    if crashed.returncode != CRASH:
        raise RuntimeError(f"the crashing run ended with {crashed.returncode}: "
                           f"{crashed.stderr.strip()[-300:]}")
    ran.clear()
    started = time.perf_counter()
    launch(path)
    try:
        if mode == "queue":
            register_queue()
        total = DBOS.retrieve_workflow("recovery").get_result(
            polling_interval_sec=Tuning.result_polling_s)
        seconds = time.perf_counter() - started
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=0)
    assert total == tasks * (tasks - 1) // 2, total
    return seconds, len(ran)


def crash(tasks: int, mode: str, path: Path) -> None:
    """The run that crashes: its last task ends the process before it returns."""
    Tuning.crash_at = tasks - 1
    launch(path)
    if mode == "queue":
        register_queue()
    run(mode, tasks, "recovery")
    raise AssertionError("the last task did not end the process")


def tuning_args() -> list[str]:
    return ["--pool", str(Tuning.pool or 0), "--threads", str(Tuning.threads or 0),
            "--worker-concurrency", str(Tuning.worker_concurrency or 0),
            "--queue-polling", str(Tuning.queue_polling_s),
            "--result-polling", str(Tuning.result_polling_s)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", type=int)
    parser.add_argument("--mode", choices=("queue", "gather"), default="queue")
    parser.add_argument("--pool", type=int, default=Tuning.pool,
                        help="connections to the system database (0: DBOS's default, 20)")
    parser.add_argument("--threads", type=int,
                        help="gather: most executor threads (0: unbounded; default "
                             f"{Tuning.threads}); queue: unbounded unless given")
    parser.add_argument("--worker-concurrency", type=int, default=Tuning.worker_concurrency,
                        help="queue: most child workflows running at once here (0: unbounded)")
    parser.add_argument("--queue-polling", type=float, default=Tuning.queue_polling_s,
                        help="queue: seconds between the queue worker's polls (DBOS: 1)")
    parser.add_argument("--result-polling", type=float, default=Tuning.result_polling_s,
                        help="seconds between a handle's polls for its result (DBOS: 1)")
    parser.add_argument("--crash", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    Tuning.pool = args.pool or None
    Tuning.threads = (args.threads if args.threads is not None
                      else Tuning.threads if args.mode == "gather" else None) or None
    Tuning.worker_concurrency = args.worker_concurrency or None
    Tuning.queue_polling_s = args.queue_polling
    Tuning.result_polling_s = args.result_polling
    if args.crash:
        crash(args.tasks, args.mode, args.crash)
    try:
        found = measure(args.tasks, args.mode)
    except Exception as error:  # one line for compare.py, saying why
        found = {"system": f"DBOS ({args.mode})", "tasks": args.tasks,
                 "error": f"{type(error).__name__}: {error}",
                 "versions": {"dbos": version("dbos")}}
    print(json.dumps(found), flush=True)
    sys.exit(1 if "error" in found else 0)


if __name__ == "__main__":
    main()
