"""A run's state as a snapshot: versioned JSON that can hold data and nothing else.

A snapshot is a cache of the log (losing one costs time, never facts), and a shared
database is written by many machines, so reading one must not be able to run code: the
state is written field by field as JSON and read back through one pydantic schema,
which refuses anything of another shape. Snapshots of another version are not read; the
log is folded instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ..errors import BadLog
from ..model import Assignment, HandlerInfo, Json, Task
from ..state import RunState, TaskRecord

# The topic snapshots are filed under; the version changes whenever the layout does.
TOPIC = "baton.RunState:json1"

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


class _Snapshot(TypedDict):
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
    handlers: dict[str, HandlerInfo]
    by_capability: dict[str, tuple[str, ...]]
    load: dict[str, int]
    streak: dict[str, int]
    tasks: dict[str, _Record]
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


_ADAPTER = TypeAdapter(_Snapshot)
_NOT_KEPT = {"frozen", "_set", "_put", "_del", "_push", "_popleft"}


def encode_state(state: RunState) -> bytes:
    """The state as snapshot bytes."""
    kept = {name: value for name, value in vars(state).items() if name not in _NOT_KEPT}
    unknown = kept.keys() - _Snapshot.__annotations__.keys()
    if unknown:  # a field RunState gained that the snapshot would silently drop
        raise TypeError(f"RunState fields the snapshot does not keep: {sorted(unknown)}")
    kept["tasks"] = {tid: {name: getattr(record, name) for name in TaskRecord.__slots__}
                     for tid, record in state.tasks.items()}
    return _ADAPTER.dump_json(kept)  # type: ignore[arg-type]


def decode_state(data: bytes, *, run_id: str, seq: int) -> RunState:
    """The state a snapshot holds; BadLog naming the run and seq when it is not one."""
    try:
        kept: dict[str, Any] = dict(_ADAPTER.validate_json(data))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadLog(f"snapshot is malformed: {where}: {first['msg']}",
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
    state.__setstate__({**kept, "frozen": False})
    if (state.run_id, state.seq) != (run_id, seq):
        raise BadLog(f"snapshot holds run {state.run_id!r} at seq {state.seq}, not the "
                     "place it is filed under", run_id=run_id, seq=seq)
    return state
