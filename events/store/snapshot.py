"""A run's state as a snapshot: versioned JSON that can hold data and nothing else.

A snapshot is a cache of the log (losing one costs time, never facts), and a shared
database is written by many machines, so reading one must not be able to run code: the
state is written field by field as JSON and read back through one pydantic schema,
which refuses anything of another shape. Snapshots of another version are not read; the
log is folded instead.

The coordinator writes one while it runs, so writing one must not cost a second copy of
the state: the task records, nearly all of a large run's state, are encoded a chunk at
a time straight into a zlib stream (JSON of a plan compresses about tenfold).
"""

from __future__ import annotations

import zlib
from collections import deque
from itertools import islice
from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ..budget import Spend
from ..errors import BadLogError
from ..model import Assignment, HandlerInfo, Json, Task
from ..record import TaskRecord
from ..state import RunState
from ..tree import ParentLink

# The topic snapshots are filed under; the version changes whenever the layout does.
TOPIC = "baton.RunState:json2"

Queue = deque[tuple[str, int]]  # (task id, token)


class _Record(TypedDict):
    task: Task
    index: int
    status: str
    blockers: int
    attempts: int
    tried: tuple[tuple[str, int], ...]
    lost: NotRequired[tuple[tuple[str, int], ...]]  # older snapshots lack it
    handler: str | None
    assignment: Assignment | None
    feedback: tuple[str, ...]
    pinned: str | None
    token: int
    received: Json
    output: Json
    escalation: str | None


class _Head(TypedDict):
    """Everything but the task records."""

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
    parent: NotRequired[ParentLink | None]  # older snapshots lack it: no parent
    handlers: dict[str, HandlerInfo]
    by_capability: dict[str, tuple[str, ...]]
    load: dict[str, int]
    streak: dict[str, int]
    dependents: dict[str, deque[str]]
    ready: dict[str, Queue]
    pinned: dict[str, Queue]
    in_flight: dict[str, str]
    escalations: dict[str, str]
    open_tasks: int
    accepted: int
    queued: int
    inbox_seen: int
    output: Json
    error: str
    spend: NotRequired[Spend]  # older snapshots lack it: nothing spent, no budget


class _Snapshot(_Head):
    tasks: dict[str, _Record]


_ADAPTER = TypeAdapter(_Snapshot)
_HEAD = TypeAdapter(_Head)
_RECORDS = TypeAdapter(dict[str, _Record])
_CHUNK = 1_000  # task records encoded at a time
_NOT_KEPT = {"frozen"}


def encode_state(state: RunState) -> bytes:
    """The state as snapshot bytes: its JSON, compressed."""
    head = {name: value for name, value in vars(state).items()
            if name not in _NOT_KEPT and name != "tasks"}
    unknown = head.keys() - _Head.__annotations__.keys()
    if unknown:  # a field RunState gained that the snapshot would silently drop
        raise TypeError(f"RunState fields the snapshot does not keep: {sorted(unknown)}")
    stream = zlib.compressobj(1)
    # {head..., "tasks": {chunk, chunk, ...}}: the head's closing brace makes way.
    parts = [stream.compress(_HEAD.dump_json(head)[:-1] + b',"tasks":{')]  # type: ignore[arg-type]
    records = iter(state.tasks.items())
    separator = b""
    while chunk := dict(islice(records, _CHUNK)):
        opened = {tid: {name: getattr(record, name) for name in TaskRecord.__slots__}
                  for tid, record in chunk.items()}
        parts.append(stream.compress(separator + _RECORDS.dump_json(opened)[1:-1]))  # type: ignore[arg-type]
        separator = b","
    parts.append(stream.compress(b"}}"))
    parts.append(stream.flush())
    return b"".join(parts)


def decode_state(data: bytes, *, run_id: str, seq: int) -> RunState:
    """The state a snapshot holds; BadLogError naming the run and seq when it is not one."""
    try:
        kept: dict[str, Any] = dict(_ADAPTER.validate_json(zlib.decompress(data)))
    except zlib.error as error:
        raise BadLogError(f"snapshot is malformed: not zlib data ({error})",
                          run_id=run_id, seq=seq) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadLogError(f"snapshot is malformed: {where}: {first['msg']}",
                          run_id=run_id, seq=seq) from None
    records = {}
    for tid, fields in kept["tasks"].items():
        record = TaskRecord.__new__(TaskRecord)
        record.lost = ()
        for name, value in fields.items():
            setattr(record, name, value)
        records[tid] = record
    kept["tasks"] = records
    state = RunState.__new__(RunState)
    state.__dict__.update({"spend": Spend(), "parent": None, **kept, "frozen": False})
    if (state.run_id, state.seq) != (run_id, seq):
        raise BadLogError(f"snapshot holds run {state.run_id!r} at seq {state.seq}, not the "
                          "place it is filed under", run_id=run_id, seq=seq)
    return state
