"""Baton beside its peers on one workload, on this machine, in one run: one table.

The workload: fan out N trivial tasks (each returns its input number), check each
result (>= 0), combine them (a sum). Each system runs it its own way:

- raw Ray: N calls, one an item, to 2 plain actors; the driver checks each answer, and
  one more call sums them (nothing is recorded);
- Baton: a spec of N `echo` tasks, each with a `Check` (i >= 0), and a `sum` task
  reading every one of them (`from_task`), on 2 echo replicas and 1 sum replica, logged
  to SQLite; then `baton.replay.verify` on the run's log;
- LangGraph (langgraph_peer.py), Temporal (temporal_peer.py, with the server's
  defaults and tuned) and DBOS Transact (dbos_peer.py, on a SQLite system database: child
  workflows on a queue, and async steps gathered in one workflow), each in its own
  virtual environment under benchmarks/peers/, run as a subprocess that prints one JSON
  line.

tasks/s is N over the time from starting the work to having the checked sum; starting
Ray, a server, a worker or DBOS is not counted. The peers run first, before Ray starts, so
that an idle Ray does not share the 2 cores with them.

    make bench-peers    # creates the peers' venvs, then runs this with .venv's python
    .venv/bin/python benchmarks/peers/compare.py [--quick] [--tasks 2000,5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ray

import baton
from baton import Assignment, Check, Spec, Task, from_task, open_store
from baton.actors.cluster import ensure_ray

PEERS = Path(__file__).resolve().parent
SYSTEMS = ("ray", "baton", "langgraph", "temporal", "dbos")
REPLICAS = 2


@dataclass(frozen=True)
class Row:
    system: str
    tasks: int
    per_s: float | None
    store: str
    replay: str
    events: int | None
    notes: str

    @classmethod
    def failed(cls, system: str, tasks: int, why: str) -> Row:
        """A row for a peer that gave no figures, saying why."""
        return cls(system, tasks, None, "-", "-", None, why)


# --- raw Ray --------------------------------------------------------------------------


@ray.remote(num_cpus=0.5)
class Plain:
    def echo(self, i: int) -> int:
        return i

    def total(self, values: list[int]) -> int:
        return sum(values)


def raw_ray(tasks: int) -> Row:
    actors = [Plain.remote() for _ in range(REPLICAS)]
    try:
        ray.get([a.echo.remote(0) for a in actors])
        started = time.perf_counter()
        values = ray.get([actors[i % REPLICAS].echo.remote(i) for i in range(tasks)])
        if any(value < 0 for value in values):
            raise AssertionError("a negative result")
        total = ray.get(actors[0].total.remote(values))
        seconds = time.perf_counter() - started
    finally:
        for actor in actors:
            ray.kill(actor)
    assert total == tasks * (tasks - 1) // 2, total
    return Row("raw Ray", tasks, tasks / seconds, "none", "-", None,
               f"{REPLICAS} actors, one call an item; driver checks")


# --- Baton ----------------------------------------------------------------------------


@baton.handler(capabilities=["echo"], replicas=REPLICAS, num_cpus=0.5)
def echo(assignment: Assignment) -> dict[str, int]:
    return {"i": assignment.inputs["i"]}


@baton.handler(capabilities=["sum"], num_cpus=0.5)
def total(assignment: Assignment) -> dict[str, int]:
    return {"total": sum(output["i"] for output in assignment.inputs.values())}


def spec(tasks: int) -> Spec:
    work = [Task(id=f"t{i}", capability="echo", inputs={"i": i},
                 done_when=(Check(field="i", op=">=", value=0),)) for i in range(tasks)]
    combine = Task(id="sum", capability="sum", inputs={t.id: from_task(t.id) for t in work})
    return Spec(goal=f"fan out {tasks}, check, sum", tasks=[*work, combine],
                handlers=[echo, total])


def through_baton(tasks: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="peer-baton-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'baton.db'}"
        result = baton.run(spec(tasks), store=url, run_id=f"peers-{tasks}")
        assert result.ok, result
        assert result.output["sum"]["total"] == tasks * (tasks - 1) // 2, result.output
        with open_store(url) as store:
            started = time.perf_counter()
            report = baton.replay.verify(store, result.run_id)
            verifying = time.perf_counter() - started
        assert report.reproduced, report.divergence
    p = result.progress
    return Row("Baton", tasks, tasks / p.elapsed_s, "SQLite (event log)",
               f"verify {report.events / verifying:,.0f} ev/s", p.events,
               f"{REPLICAS} echo replicas + 1 sum; {tasks / p.calls:.0f} assignments a call")


# --- the peers, each in its own venv --------------------------------------------------


def peer(venv: str, module: str, args: list[str], name: str, tasks: int,
         timeout_s: float) -> tuple[Row, dict[str, str]]:
    """Run a peer's module with its venv's python; its row, and the versions it used."""
    python = PEERS / venv / "bin" / "python"
    if not python.exists():
        return Row.failed(name, tasks,
                          f"not installed: {venv} missing (make bench-peers creates it)"), {}
    try:
        done = subprocess.run([str(python), str(PEERS / module), *args], capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Row.failed(name, tasks, f"FAILED: not done in {timeout_s:,.0f} s"), {}
    lines = done.stdout.strip().splitlines()
    try:
        found: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        found = {}
    if "error" in found or "per_s" not in found or done.returncode:
        why = found.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Row.failed(name, tasks, f"FAILED: {why[:160]}"), found.get("versions", {})
    return Row(found["system"], tasks, found["per_s"], found["store"], found["replay"],
               found["events"], found["notes"]), found["versions"]


def baton_version() -> str:
    """Baton's version, and the commit it was built from when this is a git checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(PEERS), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return f"{version('baton-ray')} ({commit})" if commit else version("baton-ray")


# --- the table ------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("system", "tasks", "tasks/s", "durable store", "recovery / replay", "events",
            "notes")
    cells = [head] + [(r.system, f"{r.tasks:,}", f"{r.per_s:,.0f}" if r.per_s else "-",
                       r.store, r.replay, f"{r.events:,}" if r.events else "-", r.notes)
                      for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(head) - 1)]
    right = {1, 2, 5}
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(line, widths, strict=False)))
                   + "  " + line[-1])
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 tasks only")
    parser.add_argument("--tasks", default="2000,5000",
                        help="the sizes, separated by commas (default 2000,5000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"which to run (default {','.join(SYSTEMS)})")
    parser.add_argument("--wave", type=int, default=2_000,
                        help="Temporal: most activities pending at once (server cap 2,000)")
    parser.add_argument("--timeout", type=float, default=1_800,
                        help="seconds a peer may take at one size before it is called failed")
    args = parser.parse_args()
    sizes = [500] if args.quick else [int(s.replace("_", "")) for s in args.tasks.split(",")]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown or not sizes or min(sizes) < 1:
        parser.error(f"--systems takes {', '.join(SYSTEMS)}; --tasks positive counts")

    rows: dict[tuple[str, int], list[Row]] = {}
    versions: dict[str, str] = {"Python": sys.version.split()[0]}
    began = time.perf_counter()

    def step(what: str, tasks: int) -> float:
        print(f"  {what}, {tasks:,} tasks ...", file=sys.stderr, flush=True)
        return time.perf_counter()

    peers = []
    if "langgraph" in systems:
        peers.append(("langgraph", ".venv-langgraph", "langgraph_peer.py", [], "LangGraph"))
    if "temporal" in systems:
        wave = ["--wave", str(args.wave)]
        peers += [("temporal", ".venv-temporal", "temporal_peer.py", wave, "Temporal"),
                  ("temporal", ".venv-temporal", "temporal_peer.py", [*wave, "--tuned"],
                   "Temporal (tuned)")]
    if "dbos" in systems:
        peers += [("dbos", ".venv-dbos", "dbos_peer.py", ["--mode", mode], f"DBOS ({mode})")
                  for mode in ("queue", "gather")]
    for tasks in sizes:
        for system, venv, module, extra, name in peers:
            started = step(name, tasks)
            row, used = peer(venv, module, [str(tasks), *extra], name, tasks, args.timeout)
            rows.setdefault((system, tasks), []).append(row)
            versions |= used
            print(f"    {time.perf_counter() - started:,.0f} s", file=sys.stderr, flush=True)
    if {"ray", "baton"} & set(systems):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ensure_ray()
        versions |= {"Ray": ray.__version__, "Baton": baton_version(),
                     "eventsourcing": version("eventsourcing")}
        for tasks in sizes:
            for system, measure in (("ray", raw_ray), ("baton", through_baton)):
                if system in systems:
                    started = step(system, tasks)
                    rows[(system, tasks)] = [measure(tasks)]
                    print(f"    {time.perf_counter() - started:,.0f} s", file=sys.stderr,
                          flush=True)
        ray.shutdown()

    print(f"fan out N trivial tasks, check each, sum — {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - began:,.0f} s in all")
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    ordered = [row for tasks in sizes for system in SYSTEMS
               for row in rows.get((system, tasks), [])]
    print(table(ordered))


if __name__ == "__main__":
    main()
