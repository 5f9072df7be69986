"""Assignments/s of an async handler that waits 100 ms (as a model call waits), at 1, 4
and 16 assignments at once per replica, beside raw Ray doing the same in the same run.

1,000 assignments (--quick: 200) on 2 replicas of an `async def` handler whose body is
`await asyncio.sleep(0.1)`. The raw Ray baseline: a driver sending the same calls, one
an item, round robin to 2 plain async actors allowed the same concurrency, and
collecting every result. The ideal is replicas x concurrency / 0.1 s. Target: Baton at
least 0.8 of raw Ray at each concurrency.

    .venv/bin/python benchmarks/async_handlers.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import ray

import baton
from baton import Assignment, Spec, Task
from baton.actors.cluster import ensure_ray
from workload import machine, scratch_dir

WAIT_S = 0.1
REPLICAS = 2


async def waits(assignment: Assignment) -> Any:
    await asyncio.sleep(WAIT_S)
    return assignment.inputs


def wait_spec(tasks: int, concurrency: int) -> Spec:
    handler = baton.handler(capabilities=["wait"], replicas=REPLICAS, num_cpus=0.5,
                            concurrency=concurrency, name="waits")(waits)
    plan = [Task(id=f"t{i}", capability="wait", inputs={"i": i}) for i in range(tasks)]
    return Spec(goal=f"wait x{tasks}", tasks=plan, handlers=[handler])


@ray.remote(num_cpus=0.5)
class PlainWaiter:
    async def wait(self, value: Any) -> Any:
        await asyncio.sleep(WAIT_S)
        return value


def raw_ray(tasks: int, concurrency: int) -> float:
    actors = [PlainWaiter.options(max_concurrency=concurrency).remote()  # type: ignore[attr-defined]
              for _ in range(REPLICAS)]
    ray.get([a.wait.remote(None) for a in actors])
    started = time.perf_counter()
    results = ray.get([actors[i % REPLICAS].wait.remote({"i": i}) for i in range(tasks)])
    elapsed = time.perf_counter() - started
    assert len(results) == tasks
    for actor in actors:
        ray.kill(actor)
    return tasks / elapsed


def through_baton(tasks: int, concurrency: int) -> float:
    with scratch_dir() as tmp:
        result = baton.run(wait_spec(tasks, concurrency), store=f"sqlite:///{tmp / 'a.db'}")
    assert result.ok and result.progress.dispatched == tasks, result
    return tasks / result.progress.elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    tasks = 200 if args.quick else 1_000
    ensure_ray()
    print(f"async handlers: {tasks:,} assignments of a {WAIT_S * 1000:.0f} ms wait on "
          f"{REPLICAS} replicas — {machine()}, Ray {ray.__version__}")
    print(f"{'at once':>8} {'ideal a/s':>10} {'baton a/s':>10} {'raw ray a/s':>12} "
          f"{'ratio':>6}")
    for concurrency in (1, 4, 16):
        ideal = REPLICAS * concurrency / WAIT_S
        raw = raw_ray(tasks, concurrency)
        rate = through_baton(tasks, concurrency)
        print(f"{concurrency:>8} {ideal:>10,.0f} {rate:>10,.0f} {raw:>12,.0f} "
              f"{rate / raw:>6.2f}", flush=True)
    print("target: baton >= 0.8 of raw Ray at each concurrency (at once: per replica)")


if __name__ == "__main__":
    main()
