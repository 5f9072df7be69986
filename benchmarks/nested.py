"""Nested runs beside one flat run: the same trivial assignments, in one process run.

100,000 assignments (--quick: 20,000) of a handler that returns its input: as one run
with 2 replicas, then as a parent whose 10 and 20 children (one `@baton.subrun`
assignment each) share them out, each child with its own coordinator, log and 1
replica. Printed: aggregate assignments/s from the parent's start to its end (the ratio
to the flat run; target at least 0.9), and each coordinator's CPU seconds and peak
memory, read from /proc while it lives (every process is on this machine).

On this machine every coordinator shares the same cores, so the tree cannot be faster
than the flat run; the last column says what each coordinator did with the CPU it got
(assignments per CPU second), which is what a cluster where each coordinator has a core
of its own would multiply. --nodes 2 runs it all on a two-node cluster on loopback.

    .venv/bin/python benchmarks/nested.py [--quick] [--tasks N] [--nodes 2]
        [--postgres URL]
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import ray

import baton
from baton import Assignment, Spec, Task
from workload import cluster, machine, scratch_dir, scratch_schema

TICK = os.sysconf("SC_CLK_TCK")


def echo(assignment: Assignment) -> Any:
    return assignment.inputs


def echo_handler(replicas: int) -> baton.Handler:
    return baton.handler(capabilities=["echo"], replicas=replicas, num_cpus=0.1,
                         name="echo")(echo)


def flat_spec(tasks: int) -> Spec:
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i}) for i in range(tasks)]
    return Spec(goal=f"echo x{tasks}", tasks=plan, handlers=[echo_handler(2)])


@baton.subrun(capabilities=["share"], concurrency=64)
def share(assignment: Assignment) -> Spec:
    """A child: its part of the assignments, `first` to `first + count`."""
    first, count = assignment.inputs["first"], assignment.inputs["count"]
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i})
            for i in range(first, first + count)]
    return Spec(goal=f"echo {count} from {first}", tasks=plan, handlers=[echo_handler(1)])


def nested_spec(tasks: int, children: int) -> Spec:
    each = tasks // children  # (main makes `tasks` a multiple of every count of children)
    plan = [Task(id=f"part-{c}", capability="share",
                 inputs={"first": c * each, "count": each}) for c in range(children)]
    return Spec(goal=f"echo x{tasks} in {children} children", tasks=plan, handlers=[share])


class Coordinators:
    """Each coordinator's CPU seconds and peak resident memory, sampled from /proc
    while it lives (its last sample stands for it once it is gone)."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.seen: dict[str, tuple[float, float]] = {}  # run id -> (cpu s, peak MB)
        self.stop = threading.Event()

    @contextmanager
    def watching(self) -> Iterator[Coordinators]:
        thread = threading.Thread(target=self._watch, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join()

    def _watch(self) -> None:
        while not self.stop.wait(0.25):
            for entry in ray.util.list_named_actors(all_namespaces=True):
                name = entry["name"]
                run_id = name.removeprefix("baton:")
                if entry["namespace"] != "baton" or ":" in run_id or run_id in self.pids:
                    continue
                try:
                    actor = ray.get_actor(name, namespace="baton")
                    self.pids[run_id] = ray.get(actor.pid.remote(), timeout=5)
                except Exception:  # gone already, or still starting: look again
                    continue
            for run_id, pid in self.pids.items():
                with suppress(FileNotFoundError, ProcessLookupError, StopIteration):
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu = (int(fields[11]) + int(fields[12])) / TICK
                    peak = next(int(line.split()[1]) for line in
                                Path(f"/proc/{pid}/status").read_text().splitlines()
                                if line.startswith("VmHWM:")) / 1024
                    self.seen[run_id] = (cpu, peak)


def measured(spec: Spec, url: str, tasks: int) -> tuple[float, dict[str, tuple[float, float]]]:
    with Coordinators().watching() as coordinators:
        started = time.perf_counter()
        result = baton.run(spec, store=url)
        elapsed = time.perf_counter() - started
    assert result.ok, result.error
    return tasks / elapsed, coordinators.seen


def row(label: str, rate: float, flat: float, seen: dict[str, tuple[float, float]],
        tasks: int) -> str:
    children = {r: v for r, v in seen.items() if "." in r}
    top = {r: v for r, v in seen.items() if "." not in r}
    working = children or top  # the coordinators that did the assignments
    cpu = [c for c, _ in working.values()]
    peak = max((m for _, m in seen.values()), default=0.0)
    per_cpu_s = tasks / sum(cpu) if cpu and sum(cpu) else 0.0
    mean = sum(cpu) / len(cpu) if cpu else 0.0
    top_cpu = sum(c for c, _ in top.values())
    return (f"{label:<12} {rate:>9,.0f} {rate / flat:>6.2f} {len(seen):>6} {top_cpu:>9.1f} "
            f"{mean:>10.1f} {peak:>9.0f} {per_cpu_s:>10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--children", default="10,20", help="comma-separated counts")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--postgres", default=os.environ.get("BATON_TEST_POSTGRES"),
                        help="a server to log to (each run gets a schema); else SQLite")
    args = parser.parse_args()
    counts = [int(c) for c in args.children.split(",")]
    tasks = 20_000 if args.quick else args.tasks
    tasks -= tasks % math.lcm(*counts)
    made = cluster(args.nodes)
    store = "postgresql" if args.postgres else "sqlite"
    print(f"nested: {tasks:,} echo assignments, flat and in children — {machine()}, "
          f"Ray {ray.__version__}, {args.nodes} node(s), {store}")
    print(f"{'run':<12} {'a/s':>9} {'ratio':>6} {'coords':>6} {'top cpu s':>9} "
          f"{'cpu s/coord':>10} {'peak MB':>9} {'a/cpu s':>10}")
    try:
        with scratch_dir() as tmp, ExitStack() as scratch:
            def url(name: str) -> str:
                return (scratch.enter_context(scratch_schema(args.postgres)) if args.postgres
                        else f"sqlite:///{tmp / name}.db")

            flat, seen = measured(flat_spec(tasks), url("flat"), tasks)
            print(row("flat", flat, flat, seen, tasks), flush=True)
            for children in counts:
                rate, seen = measured(nested_spec(tasks, children), url(f"n{children}"),
                                      tasks)
                print(row(f"{children} children", rate, flat, seen, tasks), flush=True)
    finally:
        if made is not None:
            ray.shutdown()
            made.shutdown()
    print("target: nested >= 0.9 of flat (a/s: from the top run's start to its end; "
          "a/cpu s: assignments per CPU second of the coordinators that did them)")


if __name__ == "__main__":
    main()
