"""`baton bench`: the same work through Baton and through plain Ray actors, side by side.

Three workloads, each a spec Baton runs and the same calls made to plain Ray actors:

- echo: a fan-out of independent assignments that return their input;
- dag: layers of tasks, each reading two outputs of the layer before it (plain Ray
  passes the two results' ObjectRefs as arguments, and Ray resolves them);
- chaos: the echo fan-out where a seeded share of first attempts crash (raise) or
  answer wrong (rejected by a check), so retries are part of the cost (plain Ray's
  driver checks each answer and sends the call again itself).

Latency is per task, from its first dispatch to its accepted result, read from the
run's log; for plain Ray, from submitting the first call to the end of the call that
gave the good answer, by the worker's clock.
"""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import ray

from baton.events.errors import BadInputError, BenchError
from baton.events.model import Assignment, Budget, Check, FromTask, Task
from baton.events.store import arrow, open_store

from .handlers import Handler, handler
from .launcher import run as launch
from .progress import RunResult
from .spec import Spec

Workload = Literal["echo", "dag", "chaos"]
WORKLOADS: tuple[Workload, ...] = ("echo", "dag", "chaos")
DAG_LAYERS = 10
CRASH_SHARE = 0.05  # of first attempts, in chaos
WRONG_SHARE = 0.05


@dataclass(frozen=True)
class Options:
    """What to measure: the workload, its size, and the replica counts to try."""

    workload: Workload = "echo"
    tasks: int = 5_000
    replicas: tuple[int, ...] = (1, 2, 4)
    work_ms: float = 0.0
    payload_bytes: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Measured:
    """One side of one row: assignments a second and latency percentiles (seconds)."""

    assignments_per_s: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    assignments: int
    seconds: float


@dataclass(frozen=True)
class Row:
    replicas: int
    baton: Measured
    ray: Measured
    events: int  # what Baton recorded
    run_id: str

    @property
    def ratio(self) -> float:
        return self.baton.assignments_per_s / self.ray.assignments_per_s


@dataclass(frozen=True)
class Cluster:
    nodes: int
    cpus: float

    @classmethod
    def now(cls) -> Cluster:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        return cls(nodes=len(alive), cpus=float(ray.cluster_resources().get("CPU", 0)))


@dataclass
class Report:
    options: Options
    cluster: Cluster
    rows: list[Row] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"options": asdict(self.options), "cluster": asdict(self.cluster),
                "rows": [{**asdict(row), "ratio": row.ratio} for row in self.rows]}


# --- the handlers (importable by worker processes on any node) ------------------------


# The work itself, on plain values: what Baton's handlers and the plain actors both run.


def _echo(inputs: dict[str, Any], attempt: int) -> Any:
    _work(inputs)
    return inputs


def _layer(inputs: dict[str, Any], attempt: int) -> Any:
    _work(inputs)
    return {"i": inputs["i"], "pad": inputs.get("pad", "")}


def _chaos(inputs: dict[str, Any], attempt: int) -> Any:
    _work(inputs)
    i = inputs["i"]
    if attempt == 1:
        draw = random.Random(f"{inputs['seed']}:{i}").random()
        if draw < CRASH_SHARE:
            raise RuntimeError(f"seeded crash of task {i}")
        if draw < CRASH_SHARE + WRONG_SHARE:
            return {"i": -1}  # wrong: the check rejects it
    return {"i": i}


def _work(inputs: dict[str, Any]) -> None:
    if ms := inputs.get("work_ms"):
        time.sleep(ms / 1000)


WORK: dict[str, Callable[[dict[str, Any], int], Any]] = {
    "echo": _echo, "dag": _layer, "chaos": _chaos}


def echo(assignment: Assignment) -> Any:
    return _echo(assignment.inputs, assignment.attempt)


def layer(assignment: Assignment) -> Any:
    return _layer(assignment.inputs, assignment.attempt)


def chaos(assignment: Assignment) -> Any:
    return _chaos(assignment.inputs, assignment.attempt)


HANDLERS: dict[str, Callable[[Assignment], Any]] = {"echo": echo, "dag": layer,
                                                    "chaos": chaos}


# --- the specs -------------------------------------------------------------------------


def spec_for(options: Options, replicas: int, cpus: float) -> Spec:
    """The workload as a spec, its handler with `replicas` replicas of `cpus` CPUs."""
    target = HANDLERS[options.workload]
    worker: Handler = handler(capabilities=[options.workload], replicas=replicas,
                              num_cpus=cpus, name=options.workload)(target)
    inputs = _inputs(options)
    if options.workload == "dag":
        width = max(2, options.tasks // DAG_LAYERS)
        tasks = []
        for n in range(options.tasks):
            level, i = divmod(n, width)
            ins: dict[str, Any] = {"i": n, **inputs}
            if level:
                below = (level - 1) * width
                ins |= {"a": FromTask(from_task=f"t{below + i}"),
                        "b": FromTask(from_task=f"t{below + (i + 1) % width}")}
            tasks.append(Task(id=f"t{n}", capability="dag", inputs=ins))
    elif options.workload == "chaos":
        tasks = [Task(id=f"t{i}", capability="chaos", inputs={"i": i, "seed": options.seed,
                                                              **inputs},
                      done_when=(Check(field="i", op=">=", value=0),), budget=Budget(attempts=2))
                 for i in range(options.tasks)]
    else:
        tasks = [Task(id=f"t{i}", capability="echo", inputs={"i": i, **inputs})
                 for i in range(options.tasks)]
    return Spec(goal=f"bench {options.workload} x{options.tasks}", tasks=tasks,
                handlers=[worker])


def _inputs(options: Options) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if options.work_ms:
        inputs["work_ms"] = options.work_ms
    if options.payload_bytes:
        inputs["pad"] = "x" * options.payload_bytes
    return inputs


# --- measuring -------------------------------------------------------------------------


def bench(options: Options, store: str | None = None,
          on_step: Callable[[str, int, int], None] | None = None) -> Report:
    """Run the workload through Baton and through plain Ray at each replica count;
    `on_step(what, steps done, steps in all)` is told as each side of each row starts."""
    if options.tasks < 1:
        raise BadInputError("--tasks must be at least 1")
    if not options.replicas or min(options.replicas) < 1:
        raise BadInputError("--replicas must be positive counts, e.g. 1,2,4")
    report = Report(options, Cluster.now())
    cpus = min(1.0, report.cluster.cpus / max(options.replicas))
    steps = 2 * len(options.replicas)
    with _store(store) as url:
        for row, replicas in enumerate(options.replicas):
            step = f"{options.workload}, {replicas} replica{'s' if replicas > 1 else ''}"
            if on_step:
                on_step(f"{step}: plain Ray", 2 * row, steps)
            plain = plain_ray(options, replicas, cpus)
            if on_step:
                on_step(f"{step}: Baton", 2 * row + 1, steps)
            run_id = (f"bench-{options.workload}-{replicas}-{time.strftime('%H%M%S')}-"
                      f"{secrets.token_hex(2)}")
            result = launch(spec_for(options, replicas, cpus), url, run_id=run_id)
            if not result.ok:
                raise BenchError(f"the bench run {run_id} ended {result.status}: "
                                 f"{result.error}")
            report.rows.append(Row(replicas, through_baton(result, url), plain,
                                   result.progress.events, run_id))
    return report


@contextmanager
def _store(url: str | None) -> Iterator[str]:
    """The store to record bench runs in: `url` (opened once first, so a bad one is
    refused before anything is measured), or a scratch SQLite file removed after."""
    if url:
        with open_store(url):
            pass
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as scratch:
        yield f"sqlite:///{Path(scratch) / 'bench.db'}"


def through_baton(result: RunResult, url: str) -> Measured:
    """The run's rate, and each task's latency from first dispatch to acceptance."""
    with open_store(url) as store:
        rows = arrow.columns(store, result.run_id).select(
            ["type", "task_id", "recorded_at", "outcome"])
    dispatched = rows.filter(pc.equal(rows["type"], "AssignmentDispatched")).group_by(
        "task_id").aggregate([("recorded_at", "min")])
    accepted = rows.filter(pc.and_(pc.equal(rows["type"], "ResultValidated"),
                                   pc.equal(rows["outcome"], "accepted")))
    spans = accepted.join(dispatched, "task_id")
    latency = pc.subtract(spans["recorded_at"], spans["recorded_at_min"])
    p = result.progress
    return _measured(latency, p.dispatched, p.elapsed_s)


@ray.remote
class PlainWorker:
    """The baseline: the same work in a plain Ray actor, one call an item."""

    def run(self, workload: str, inputs: dict[str, Any], attempt: int,
            *upstream: Any) -> tuple[Any, float]:
        """The work's answer (or the error it raised), and when the call ended."""
        try:
            value = WORK[workload](inputs, attempt)
        except RuntimeError as error:
            value = {"error": str(error)}
        return value, time.time()


def plain_ray(options: Options, replicas: int, cpus: float) -> Measured:
    """The same calls to plain actors, one an item, all submitted at once (so a call's
    latency includes its wait in the actor's queue); chaos's wrong or failed answers are
    sent again by the driver."""
    remote: Any = PlainWorker
    actors = [remote.options(num_cpus=cpus).remote() for _ in range(replicas)]
    try:
        ray.get([a.__ray_ready__.remote() for a in actors])
        extra = _inputs(options) | ({"seed": options.seed} if options.workload == "chaos"
                                    else {})
        started = time.perf_counter()
        sent_at = [0.0] * options.tasks  # each task's first call
        ends = [0.0] * options.tasks  # the end of the call that answered it well
        calls = options.tasks
        if options.workload == "dag":
            width = max(2, options.tasks // DAG_LAYERS)
            refs: list[Any] = []
            for n in range(options.tasks):
                level, i = divmod(n, width)
                below = [] if not level else [refs[(level - 1) * width + i][0],
                                              refs[(level - 1) * width + (i + 1) % width][0]]
                sent_at[n] = time.time()
                refs.append(actors[n % replicas].run.options(num_returns=2).remote(
                    "dag", {"i": n, **extra}, 1, *below))
            ends = ray.get([end for _, end in refs])
        else:
            pending = {}
            for i in range(options.tasks):
                sent_at[i] = time.time()
                pending[i] = actors[i % replicas].run.remote(options.workload,
                                                             {"i": i, **extra}, 1)
            # Each answer is checked as it comes, and a bad one sent again at once (echo
            # has none: it is collected in one ray.get, as a plain Ray program would).
            task_of = {ref: (i, 1) for i, ref in pending.items()}
            if options.workload == "echo":
                for i, (_, end) in zip(pending, ray.get(list(task_of)), strict=True):
                    ends[i] = end
                task_of = {}
            while task_of:
                refs = list(task_of)
                ray.wait(refs, num_returns=1)
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref, (value, end) in zip(ready, ray.get(ready), strict=True):
                    i, attempt = task_of.pop(ref)
                    if "error" not in value and value.get("i", 0) >= 0:
                        ends[i] = end
                    else:
                        again = actors[i % replicas].run.remote(
                            options.workload, {"i": i, **extra}, attempt + 1)
                        task_of[again] = (i, attempt + 1)
                        calls += 1
        seconds = time.perf_counter() - started
    finally:
        for actor in actors:
            ray.kill(actor)
    latency = pa.array([end - sent for end, sent in zip(ends, sent_at, strict=True)],
                       pa.float64())
    return _measured(latency, calls, seconds)


def _measured(latency: pa.Array | pa.ChunkedArray, assignments: int,
              seconds: float) -> Measured:
    if len(latency):
        p50, p95, p99 = pc.quantile(latency, q=[0.5, 0.95, 0.99],
                                    interpolation="nearest").to_pylist()
    else:
        p50 = p95 = p99 = None
    return Measured(assignments / seconds if seconds > 0 else 0.0, p50, p95, p99,
                    assignments, seconds)


def parse_replicas(text: str) -> tuple[int, ...]:
    """`1,2,4` as (1, 2, 4); BadInputError naming what is wrong otherwise."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BadInputError(f"--replicas {text!r}: give counts separated by commas, "
                            "e.g. 1,2,4") from None
    if not counts or min(counts) < 1:
        raise BadInputError(f"--replicas {text!r}: each count must be at least 1")
    return counts

