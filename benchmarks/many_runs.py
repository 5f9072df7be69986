"""Aggregate assignments/s of 1, 2, 4 and 8 runs going at once on one Ray cluster:
SQLite (a file per run) beside PostgreSQL (one database for all), beside raw Ray making
the same number of calls, in the same run.

Each run is an echo fan-out of 2,000 tasks (--quick: 300) on one worker replica of
0.2 CPU, so eight runs fit on two cores; the runs are launched from threads at once.
Aggregate rate: every run's assignments over the wall time from the first launch to the
last finish (for Baton that includes starting each run's workers and coordinator). The
raw Ray baseline: as many driver threads, each starting its own plain actor and sending
it the same number of calls, timed the same way. Target: with 4 runs, PostgreSQL >= 0.8
of SQLite (the shared database is not the bottleneck).

Then how long `baton runs` takes with 10,000 runs in the store (--quick: 1,000), on
each kind of store. Target: under 1 s.

    .venv/bin/python benchmarks/many_runs.py [--quick] [--postgres URL]

The PostgreSQL column needs a server: --postgres URL or $BATON_TEST_POSTGRES; each
measurement gets a fresh schema (bench_…), dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

import baton
from baton import Assignment, Spec, Task
from baton.actors.cluster import ensure_ray
from baton.actors.progress import RunResult
from workload import machine, scratch_dir, scratch_schema

CONCURRENCY = (1, 2, 4, 8)
NUM_CPUS = 0.2  # per run's one replica: eight runs fit on two cores
POSTGRES_HOWTO = ('start one with eval "$(.ci/postgres start)" (it sets '
                  "BATON_TEST_POSTGRES), or pass --postgres URL")


@baton.handler(capabilities=["echo"], replicas=1, num_cpus=NUM_CPUS)
def echo(assignment: Assignment) -> Any:
    return assignment.inputs


def echo_spec(tasks: int) -> Spec:
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i}) for i in range(tasks)]
    return Spec(goal=f"echo x{tasks}", tasks=plan, handlers=[echo])


def at_once(jobs: list[Callable[[], Any]]) -> tuple[list[Any], float, float]:
    """Each job's result, the perf_counter time they started at, and the seconds from
    then to the last finish: the jobs run in threads released together."""
    gate = threading.Barrier(len(jobs) + 1)
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        gate.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as error:  # re-raised in the caller, below
            errors.append(error)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return results, started, elapsed


def through_baton(runs: int, tasks: int, store_for: Callable[[int], str]) -> float:
    """Aggregate assignments/s of `runs` concurrent runs, run i writing to store_for(i)."""
    tag = secrets.token_hex(2)

    def one(i: int) -> tuple[RunResult, float]:
        result = baton.run(echo_spec(tasks), store=store_for(i), run_id=f"bench-{tag}-{i}")
        return result, time.perf_counter()

    ended, started, elapsed = at_once([lambda i=i: one(i) for i in range(runs)])
    for result, _ in ended:
        assert result.ok and result.progress.dispatched == tasks, result
    # A coordinator's elapsed_s runs from its start (its workers already up) to the run's
    # end: the span while any coordinator was up is when the store was being written.
    first_up = min(at - result.progress.elapsed_s for result, at in ended)
    up = max(at for _, at in ended) - first_up
    print(f"    ({runs} x {store_for(0).split(':')[0]}: coordinators up {up:.2f}s of "
          f"{elapsed:.2f}s wall, {runs * tasks / up:,.0f} a/s meanwhile; the first "
          f"{first_up - started:.2f}s went to starting workers)")
    return runs * tasks / elapsed


def on_sqlite(runs: int, tasks: int) -> float:
    with scratch_dir() as tmp:
        return through_baton(runs, tasks, lambda i: f"sqlite:///{tmp / f'run{i}.db'}")


def on_postgres(runs: int, tasks: int, server: str) -> float:
    """As on_sqlite, every run in one fresh schema of `server`, dropped afterwards."""
    with scratch_schema(server) as url:
        return through_baton(runs, tasks, lambda i: url)


@ray.remote(num_cpus=NUM_CPUS)
class PlainEcho:
    def echo(self, value: Any) -> Any:
        return value


def raw_ray(runs: int, tasks: int) -> float:
    """Aggregate calls/s of `runs` driver threads, each starting its own plain actor and
    sending it `tasks` calls, collecting every result."""

    def driver() -> int:
        actor = PlainEcho.remote()  # type: ignore[attr-defined]
        results = ray.get([actor.echo.remote({"i": i}) for i in range(tasks)])
        ray.kill(actor)
        return len(results)

    counts, _, elapsed = at_once([driver] * runs)
    assert counts == [tasks] * runs
    return runs * tasks / elapsed


def listing(url: str, runs: int) -> tuple[float, float]:
    """Seconds `baton runs --json` takes on a store holding `runs` small runs: the first
    time (the runs index takes in every event) and again (nothing new to take in)."""
    from typer.testing import CliRunner

    from baton.cli import app
    from baton.testing import Scenario

    with baton.open_store(url) as store:
        for i in range(runs):
            run = Scenario([Task(id="a", capability="echo")],
                           [baton.HandlerInfo(name="echo", capabilities=("echo",))],
                           run_id=f"listed-{i}", goal=f"run {i}")
            run.succeed("a#1", {"ok": True})
            store.append(run.run_id, run.log, 0)
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        done = CliRunner().invoke(app, ["runs", "--store", url, "--json"])
        timings.append(time.perf_counter() - started)
        assert done.exit_code == 0 and done.stdout.count('"run_id"') == runs, done.stdout
    return timings[0], timings[1]


def print_listing(runs: int, server: str | None) -> None:
    with scratch_dir() as tmp:
        first, again = listing(f"sqlite:///{tmp / 'listed.db'}", runs)
    print(f"baton runs, {runs:,} runs, sqlite:     {first:.2f}s first (index catches up), "
          f"{again:.2f}s after")
    if server:
        with scratch_schema(server) as url:
            first, again = listing(url, runs)
        print(f"baton runs, {runs:,} runs, postgresql: {first:.2f}s first (index catches "
              f"up), {again:.2f}s after")
    print("target: baton runs under 1 s with 10,000 runs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", default=os.environ.get("BATON_TEST_POSTGRES"),
                        help="server for the PostgreSQL column (default $BATON_TEST_POSTGRES)")
    args = parser.parse_args()
    tasks = 300 if args.quick else 2_000
    ensure_ray()
    print(f"many runs: {tasks:,} echo assignments per run, 1 replica of {NUM_CPUS:g} CPU "
          f"each — {machine()}, Ray {ray.__version__}")
    if not args.postgres:
        print(f"PostgreSQL column skipped: no server; {POSTGRES_HOWTO}")
    print(f"{'runs':>4} {'sqlite a/s':>11} {'postgresql a/s':>15} {'raw ray a/s':>12} "
          f"{'pg/sqlite':>10}")
    for runs in CONCURRENCY:
        raw = raw_ray(runs, tasks)
        lite = on_sqlite(runs, tasks)
        if args.postgres:
            pg = on_postgres(runs, tasks, args.postgres)
            shown, ratio = f"{pg:>15,.0f}", f"{pg / lite:>10.2f}"
        else:
            shown, ratio = f"{'-':>15}", f"{'-':>10}"
        print(f"{runs:>4} {lite:>11,.0f} {shown} {raw:>12,.0f} {ratio}")
    print("target: with 4 runs, postgresql >= 0.8 of sqlite")
    print_listing(1_000 if args.quick else 10_000, args.postgres)


if __name__ == "__main__":
    main()
