"""A run's state kept as snapshots: versioned data that can hold data and nothing else.

A snapshot is a cache of the log (losing one costs time, never facts), and a shared
database is written by many machines, so reading one must not be able to run code: it
is JSON and Arrow columns, read back through one pydantic schema and Arrow's readers,
which refuse anything of another shape. A snapshot of another layout is not read: the
log is folded instead, and the next one kept is of this layout.

Two kinds, each filed under its run and the seq it was taken at (the topic tells which):
- full: every task record;
- delta: the records changed since the snapshot it names as its base, so that one every
  few thousand events costs what those events changed, not the size of the run.
The state at a seq is then the nearest full snapshot, the deltas after it (each naming
the one before it), and the tail of the log after the last of them.

Each is three parts, framed by their lengths:
- the head: all of RunState but its task records, queues and dependents, as JSON;
- the line: of each record it holds, what rebuilding the queues and the dependents
  reads (id, place in plan order, status, token, queue, capability, dependencies);
- the records: every field of those records, an Arrow IPC file in batches of BLOCK, of
  which records.py decodes a batch only when one of its tasks is first touched.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, NotRequired

import pyarrow as pa
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from typing_extensions import TypedDict

from ..budget import Spend
from ..errors import BadLogError
from ..model import Assignment, HandlerInfo, Json, Task
from ..record import TaskRecord
from ..state import RunState
from ..tree import ParentLink

FULL = "baton.RunState:cols1"  # the topics; they change whenever the layout does
DELTA = "baton.RunState:cols1-delta"
TOPICS = (FULL, DELTA)
BLOCK = 1024  # records a batch of the records file holds


class Head(TypedDict):
    """Everything in a RunState but its task records, queues and dependents; and where
    the snapshot stands in its chain."""

    run_id: str
    seq: int
    digest: str
    status: str
    goal: str
    requested: tuple[Task, ...]
    policy: str
    policy_digest: str
    spec: str
    policy_ref: str
    forked_from: tuple[str, int] | None
    parent: ParentLink | None
    handlers: dict[str, HandlerInfo]
    by_capability: dict[str, tuple[str, ...]]
    load: dict[str, int]
    streak: dict[str, int]
    in_flight: dict[str, str]
    escalations: dict[str, str]
    open_tasks: int
    accepted: int
    queued: int
    inbox_seen: int
    enqueued: int
    output: Json
    error: str
    spend: Spend
    ready: tuple[str, ...]  # the queues, in order (their entries come from the records)
    pinned: tuple[str, ...]
    tasks: int  # how many records the state holds
    full: int  # the seq of the full snapshot its chain starts from
    base: NotRequired[int]  # a delta's: the seq of the snapshot before it
    new_from: NotRequired[int]  # a delta's: the first place not in a snapshot before it


_HEAD = TypeAdapter(Head)
# RunState's fields a snapshot keeps elsewhere than its head, or not at all.
_NOT_IN_HEAD = {"tasks", "ready", "pinned", "dependents", "changed", "frozen"}
_SCALAR = ("index", "status", "blockers", "attempts", "handler", "pinned", "token",
           "escalation", "queued_at")
RECORDS = pa.schema([
    ("index", pa.int32()), ("task", pa.binary()), ("status", pa.string()),
    ("blockers", pa.int32()), ("attempts", pa.int32()), ("tried", pa.binary()),
    ("lost", pa.binary()), ("handler", pa.string()), ("assignment", pa.binary()),
    ("feedback", pa.list_(pa.string())), ("pinned", pa.string()), ("token", pa.int64()),
    ("received", pa.binary()), ("output", pa.binary()), ("escalation", pa.string()),
    ("queued_at", pa.int64()),
])
_ASSIGNMENT = Assignment.__pydantic_serializer__
LINE = pa.schema([
    ("index", pa.int32()), ("id", pa.string()), ("status", pa.string()),
    ("token", pa.int64()), ("queued_at", pa.int64()), ("pinned", pa.string()),
    ("capability", pa.string()), ("dependencies", pa.list_(pa.string())),
])
_WRITE = pa.ipc.IpcWriteOptions(compression="zstd")


@dataclass(frozen=True)
class Layer:
    """One snapshot, read as far as its head and line; its records file open."""

    seq: int
    head: Head
    line: pa.Table
    records: pa.ipc.RecordBatchFileReader

    @property
    def base(self) -> int | None:
        return self.head.get("base")


def encode(state: RunState, base: tuple[int, int, int] | None = None) -> tuple[str, bytes]:
    """`state` as a snapshot: (topic, bytes). A full one, or with `base` (the full
    snapshot's seq, the base snapshot's seq and how many records it held) a delta of
    the records changed since the base (`state.changed`)."""
    head: dict[str, Any] = {name: value for name, value in vars(state).items()
                            if name not in _NOT_IN_HEAD}
    unknown = head.keys() - Head.__annotations__.keys()
    if unknown:  # a field RunState gained that the snapshot would silently drop
        raise TypeError(f"RunState fields the snapshot does not keep: {sorted(unknown)}")
    head.update(ready=tuple(state.ready), pinned=tuple(state.pinned), tasks=len(state.tasks))
    if base is None:
        records = list(state.tasks.values())
        head["full"], new_from = state.seq, 0
    else:
        records = sorted((state.tasks[task_id] for task_id in state.changed or ()),
                         key=lambda record: record.index)
        head["full"], head["base"], head["new_from"] = base[0], base[1], base[2]
        new_from = base[2]
    if base is None:  # every task's dependencies, from the state's dependents
        waits: dict[str, list[str]] = {}
        for dependency, dependents in state.dependents.items():
            for dependent in dependents:
                waits.setdefault(dependent, []).append(dependency)
    return (FULL if base is None else DELTA,
            _framed(_HEAD.dump_json(head),  # type: ignore[arg-type]
                    _stream(_line(records, new_from, waits if base is None else None)),
                    _file(_records(records, new_from))))


def _line(records: list[TaskRecord], new_from: int,
          waits: dict[str, list[str]] | None) -> pa.Table:
    """What rebuilding the queues and dependents reads of `records`: each new one's
    dependencies (from `waits`, when every record is there)."""
    return pa.table({
        "index": [r.index for r in records], "id": [r.task.id for r in records],
        "status": [r.status for r in records], "token": [r.token for r in records],
        "queued_at": [r.queued_at for r in records], "pinned": [r.pinned for r in records],
        "capability": [r.task.capability for r in records],
        "dependencies": [waits.get(r.task.id, []) for r in records] if waits is not None
        else [list(r.task.dependencies) if r.index >= new_from else None for r in records],
    }, schema=LINE)


def _records(records: list[TaskRecord], new_from: int) -> pa.Table:
    """The records' fields as columns: JSON where a field holds more than a scalar (none
    where a tuple is empty or a value None), each task's only where it is new."""
    task_json, assignment_json = Task.__pydantic_serializer__.to_json, _ASSIGNMENT.to_json
    columns: dict[str, list[Any]] = {
        name: [getattr(r, name) for r in records] for name in _SCALAR}
    columns["task"] = [task_json(r.task) if r.index >= new_from else None for r in records]
    columns["assignment"] = [None if r.assignment is None else assignment_json(r.assignment)
                             for r in records]
    columns["feedback"] = [list(r.feedback) for r in records]
    for name in ("tried", "lost"):  # none: ()
        columns[name] = [to_json(value) if value else None
                         for value in (getattr(r, name) for r in records)]
    for name in ("received", "output"):  # none: None
        columns[name] = [None if value is None else to_json(value)
                         for value in (getattr(r, name) for r in records)]
    return pa.table(columns, schema=RECORDS)


def _stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=_WRITE) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _file(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema, options=_WRITE) as writer:
        for batch in table.to_batches(max_chunksize=BLOCK):
            writer.write_batch(batch)
        if not table.num_rows:
            writer.write_batch(pa.RecordBatch.from_pylist([], schema=table.schema))
    return sink.getvalue()


def _framed(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(8, "little") + part for part in parts)


def _unframed(data: bytes, count: int) -> list[bytes]:
    parts, at = [], 0
    for _ in range(count):
        size = int.from_bytes(data[at:at + 8], "little")
        if at + 8 + size > len(data):
            raise ValueError("cut short")
        parts.append(data[at + 8:at + 8 + size])
        at += 8 + size
    return parts


def decode(data: bytes, *, run_id: str, seq: int) -> Layer:
    """The snapshot in `data`, filed under `run_id` at `seq`; BadLogError naming them
    when it is not one, or holds another place's state."""
    try:
        head_json, line, records = _unframed(data, 3)
        head = _head(head_json)
        layer = Layer(seq, head, pa.ipc.open_stream(line).read_all(),
                      pa.ipc.open_file(pa.py_buffer(records)))
        if not (layer.line.schema.equals(LINE) and layer.records.schema.equals(RECORDS)):
            raise ValueError("its columns are not a snapshot's")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadLogError(f"snapshot is malformed: {where}: {first['msg']}",
                          run_id=run_id, seq=seq) from None
    except (ValueError, pa.ArrowInvalid, OSError) as error:
        raise BadLogError(f"snapshot is malformed: {error}", run_id=run_id, seq=seq) from None
    if (head["run_id"], head["seq"]) != (run_id, seq):
        raise BadLogError(f"snapshot holds run {head['run_id']!r} at seq {head['seq']}, not "
                          "the place it is filed under", run_id=run_id, seq=seq)
    return layer


def _head(data: bytes) -> Head:
    try:
        return _HEAD.validate_json(data)
    except ValidationError as error:
        if error.errors()[0]["type"] != "json_invalid":
            raise
    # pydantic's JSON reader stops at 200 levels of nesting, where a run's output may
    # go deeper: read as the log's codec reads such an event, with json's reader
    return _HEAD.validate_python(json.loads(data))


def head_fields(head: Head) -> dict[str, Any]:
    """The RunState fields a snapshot's head holds."""
    return {name: value for name, value in head.items()
            if name not in ("ready", "pinned", "tasks", "full", "base", "new_from")}
