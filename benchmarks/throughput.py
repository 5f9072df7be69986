"""Assignments/s through Baton (durable SQLite log) beside raw Ray, in the same run.

5,000 assignments of a handler that returns its input, with 2 and with 4 worker
replicas, then 2,000 and 20,000 with 2 (the ratio should not fall with the run's size),
logged to SQLite and (with --postgres URL or $BATON_TEST_POSTGRES) to PostgreSQL.
The raw Ray baseline: a driver sending the same calls, one an item, to the same number
of plain actors and collecting every result. Target: Baton >= 0.8 of raw Ray.
Baton sends a fast handler its assignments in batches; raw Ray here does not.
Then the coordinator's peak memory on a large run (target: under 300 MB at 100,000 tasks).

    .venv/bin/python benchmarks/throughput.py [--quick] [--memory-tasks N]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import ExitStack
from typing import Any

import ray

import baton
from baton import Assignment, Spec, Task
from baton.actors.cluster import ensure_ray
from workload import machine, scratch_dir, scratch_schema


@baton.handler(capabilities=["echo"], replicas=1, num_cpus=0.5)
def echo(assignment: Assignment) -> Any:
    return assignment.inputs


def echo_spec(tasks: int, replicas: int) -> Spec:
    handler = baton.handler(capabilities=["echo"], replicas=replicas, num_cpus=0.5,
                            name="echo")(echo.target)
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i}) for i in range(tasks)]
    return Spec(goal=f"echo x{tasks}", tasks=plan, handlers=[handler])


@ray.remote(num_cpus=0.5)
class PlainEcho:
    def echo(self, value: Any) -> Any:
        return value


def raw_ray(tasks: int, replicas: int) -> float:
    actors = [PlainEcho.remote() for _ in range(replicas)]
    ray.get([a.echo.remote(None) for a in actors])
    started = time.perf_counter()
    refs = [actors[i % replicas].echo.remote({"i": i}) for i in range(tasks)]
    results = ray.get(refs)
    elapsed = time.perf_counter() - started
    assert len(results) == tasks
    for actor in actors:
        ray.kill(actor)
    return tasks / elapsed


def through_baton(tasks: int, replicas: int, postgres: str | None = None
                  ) -> tuple[float, int]:
    with scratch_dir() as tmp, ExitStack() as scratch:
        url = (scratch.enter_context(scratch_schema(postgres)) if postgres
               else f"sqlite:///{tmp / 'bench.db'}")
        result = baton.run(echo_spec(tasks, replicas), store=url)
    assert result.ok and result.progress.dispatched == tasks, result
    p = result.progress
    print(f"    (baton: {p.calls:,} calls, {p.turns:,} turns, deciding {p.deciding_s:.2f}s, "
          f"appending {p.appending_s:.2f}s, of {p.elapsed_s:.2f}s)")
    return tasks / p.elapsed_s, p.calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-tasks", type=int, default=100_000,
                        help="the run whose coordinator memory is measured (0: none)")
    parser.add_argument("--postgres", default=os.environ.get("BATON_TEST_POSTGRES"),
                        help="a server for the PostgreSQL rows (each run gets a schema)")
    args = parser.parse_args()
    runs = [(1_000, 2), (1_000, 4)] if args.quick else [
        (5_000, 2), (5_000, 4), (2_000, 2), (20_000, 2)]
    ensure_ray()
    print(f"throughput: echo assignments — {machine()}, Ray {ray.__version__}")
    print(f"{'tasks':>7} {'replicas':>8} {'store':>10} {'baton a/s':>10} {'raw ray a/s':>12} "
          f"{'ratio':>6} {'a/call':>7}")
    for tasks, replicas in runs:
        raw = raw_ray(tasks, replicas)
        stores = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
        for name, url in stores:
            rate, calls = through_baton(tasks, replicas, url)
            print(f"{tasks:>7,} {replicas:>8} {name:>10} {rate:>10,.0f} {raw:>12,.0f} "
                  f"{rate / raw:>6.2f} {tasks / calls:>7.1f}")
    print("target: baton >= 0.8 of raw Ray (a/call: assignments a Ray call carried)")
    memory_tasks = 10_000 if args.quick else args.memory_tasks
    if not memory_tasks:
        return
    print(f"coordinator peak memory, {memory_tasks:,}-task run: ", end="", flush=True)
    print(f"{peak_memory_mb(memory_tasks):,.0f} MB (target: under 300 MB at 100,000 tasks)")


def peak_memory_mb(tasks: int) -> float:
    from baton.actors import launcher

    seen: list[float] = []
    original = launcher._stop

    def stop_after_measuring(actors: list[Any]) -> None:
        seen.append(ray.get(actors[0].peak_memory_mb.remote()))
        original(actors)

    launcher._stop = stop_after_measuring
    try:
        with scratch_dir() as tmp:
            baton.run(echo_spec(tasks, 2), store=f"sqlite:///{tmp / 'memory.db'}")
    finally:
        launcher._stop = original
    return seen[0]


if __name__ == "__main__":
    main()
