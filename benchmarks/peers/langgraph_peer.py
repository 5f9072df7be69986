"""The fan-out-validate-combine workload in LangGraph, checkpointed to SQLite.

A StateGraph: START fans out one `Send` per task to a `work` node that returns its
input number; a reducer (operator.add) collects the results; a `combine` node checks
each (value >= 0, one per task) and sums them. Compiled with `SqliteSaver` on a file in
a temporary directory and invoked under one thread_id, with LangGraph's defaults
(durability "async": each step's checkpoint and each finished task's writes are saved
while the graph goes on). Then recovery: a second run whose last task fails once, and
the seconds LangGraph takes to resume it from its checkpoint and saved writes.

Runs in its own virtual environment (benchmarks/peers/.venv-langgraph); prints one JSON
line for compare.py:

    benchmarks/peers/.venv-langgraph/bin/python benchmarks/peers/langgraph_peer.py 2000
"""

from __future__ import annotations

import json
import operator
import sqlite3
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class Work(TypedDict):
    tasks: int
    results: Annotated[list[int], operator.add]
    total: int


def fan_out(state: Work) -> list[Send]:
    return [Send("work", {"i": i}) for i in range(state["tasks"])]


FAIL_ONCE: set[int] = set()  # tasks whose first run raises (the recovery measurement)
ran: list[int] = []  # every task run, in the order they ran


def work(arg: dict[str, int]) -> dict[str, list[int]]:
    i = arg["i"]
    ran.append(i)
    if i in FAIL_ONCE:
        FAIL_ONCE.discard(i)
        raise RuntimeError(f"task {i} fails once")
    return {"results": [i]}


def combine(state: Work) -> dict[str, int]:
    results = state["results"]
    if len(results) != state["tasks"] or any(value < 0 for value in results):
        raise ValueError(f"{len(results)} results for {state['tasks']} tasks, or a negative one")
    return {"total": sum(results)}


def graph(saver: SqliteSaver) -> Any:
    builder = StateGraph(Work)
    builder.add_node("work", work)
    builder.add_node("combine", combine)
    builder.add_conditional_edges(START, fan_out, ["work"])
    builder.add_edge("work", "combine")
    builder.add_edge("combine", END)
    return builder.compile(checkpointer=saver)


def measure(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="peer-langgraph-") as scratch:
        path = Path(scratch) / "checkpoints.db"
        with SqliteSaver.from_conn_string(str(path)) as saver:
            app = graph(saver)
            config = {"configurable": {"thread_id": "bench"}}
            started = time.perf_counter()
            out = app.invoke({"tasks": tasks, "results": []}, config)
            seconds = time.perf_counter() - started
            assert out["total"] == tasks * (tasks - 1) // 2, out["total"]
        with sqlite3.connect(path) as db:
            checkpoints = db.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
            writes = db.execute("SELECT count(*) FROM writes").fetchone()[0]
        resuming, rerun = recovery(tasks, Path(scratch) / "recovery.db")
    return {
        "system": "LangGraph",
        "tasks": tasks,
        "seconds": seconds,
        "per_s": tasks / seconds,
        "store": "SQLite (SqliteSaver)",
        "replay": f"resume {resuming:,.2f} s, re-ran {rerun:,}",
        "events": checkpoints + writes,
        "notes": "defaults (durability=async); one superstep of Sends",
        "versions": {name: version(name) for name in
                     ("langgraph", "langgraph-checkpoint-sqlite")},
    }


def recovery(tasks: int, path: Path) -> tuple[float, int]:
    """LangGraph recovers from its checkpoint and the step's saved writes, not by replay:
    the last task of a run fails once; the seconds to resume the thread (load the
    checkpoint and writes, run what has no write, combine), and how many tasks it ran."""
    FAIL_ONCE.add(tasks - 1)
    with SqliteSaver.from_conn_string(str(path)) as saver:
        app = graph(saver)
        config = {"configurable": {"thread_id": "recovery"}}
        try:
            app.invoke({"tasks": tasks, "results": []}, config)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the failing task did not fail the run")
        ran.clear()
        started = time.perf_counter()
        out = app.invoke(None, config)
        seconds = time.perf_counter() - started
        assert out["total"] == tasks * (tasks - 1) // 2, out["total"]
    return seconds, len(ran)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))), flush=True)
