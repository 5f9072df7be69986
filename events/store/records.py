"""A state read back from a chain of snapshots (snapshot.py), its task records each made
a TaskRecord only when touched.

A run of a third of a million tasks has as many records, and decoding every one was
most of what loading its state cost: seconds. `Records` is such a state's `tasks`: a
record is decoded the first time it is looked up (its snapshot's records file is read a
batch at a time); a walk over them all (the plan view at a run's end, a copy, the next
full snapshot) decodes the rest, and from then on it is a dict in plan order like any.
The queues and the dependents are rebuilt whole from the snapshots' lines: a queue holds
its live entries in the order they joined it (the stale entries a fold leaves behind
were only ever skipped).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import from_json

from ..model import Assignment, Task
from ..record import TaskRecord, shared_tally
from ..state import RunState
from .snapshot import BLOCK, LINE, Head, Layer, head_fields

Queue = deque[tuple[str, int]]
_TASK = Task.__pydantic_validator__.validate_json  # (model_validate_json, less a call)
_ASSIGNMENT = Assignment.__pydantic_validator__.validate_json


def restore(layers: list[Layer]) -> RunState:
    """The state a chain of snapshots holds (its full one first, then its deltas)."""
    chain = Chain(layers)
    head = layers[-1].head
    state = RunState.__new__(RunState)
    state.__dict__.update(head_fields(head))
    state.tasks = Records(chain)
    state.ready, state.pinned = chain.queues(head)
    state.dependents = chain.dependents()
    state.changed, state.frozen = None, False
    return state


class Chain:
    """The records a chain of snapshots holds: for each place in plan order, the layer
    with its latest version and its row there, and where its task is."""

    def __init__(self, layers: list[Layer]):
        self.layers = layers
        self.count = layers[-1].head["tasks"]
        self.in_full = layers[0].head["tasks"]
        stacked = _stacked(layers)
        # The latest version of each place a delta holds (the full snapshot holds the
        # rest, in plan order), and of each place past the full one's, where its task is.
        self.changes = _latest(stacked)
        self.latest: dict[int, tuple[int, int]] = _where(self.changes)
        self.new = stacked.filter(stacked.column("new")).sort_by("index")
        self.task_at = _where(self.new)
        self._batches: dict[tuple[int, int], dict[str, list[Any]]] = {}
        self._tallies: dict[bytes, tuple[tuple[str, int], ...]] = {}

    @cached_property
    def ids(self) -> list[str]:
        """Every task id, in plan order."""
        ids: list[str] = self.layers[0].line.column("id").to_pylist()
        ids.extend(self.new.column("id").to_pylist())
        return ids

    @cached_property
    def places(self) -> dict[str, int]:
        return dict(zip(self.ids, range(self.count), strict=True))

    def record(self, place: int) -> TaskRecord:
        """The record at `place`, decoded from its latest version."""
        layer, row = self.latest.get(place, (0, place))
        fields, at = self._batch(layer, row // BLOCK), row % BLOCK
        record = TaskRecord.__new__(TaskRecord)
        layer, row = (0, place) if place < self.in_full else self.task_at[place]
        record.task = _TASK(self._batch(layer, row // BLOCK)["task"][row % BLOCK])
        record.index, record.status = fields["index"][at], fields["status"][at]
        record.blockers, record.attempts = fields["blockers"][at], fields["attempts"][at]
        record.handler, record.pinned = fields["handler"][at], fields["pinned"][at]
        record.token, record.queued_at = fields["token"][at], fields["queued_at"][at]
        record.escalation = fields["escalation"][at]
        assignment = fields["assignment"][at]
        record.assignment = None if assignment is None else _ASSIGNMENT(assignment)
        record.tried, record.lost = self._tally(fields["tried"][at]), self._tally(
            fields["lost"][at])
        record.feedback = tuple(fields["feedback"][at])
        received, output = fields["received"][at], fields["output"][at]
        record.received = None if received is None else _json(received)
        record.output = None if output is None else _json(output)
        return record

    def _tally(self, data: bytes | None) -> tuple[tuple[str, int], ...]:
        """Handlers tried (or lost) as a record holds them; nearly every record of a
        large run holds one of a few, so each is decoded once."""
        if data is None:
            return ()
        found = self._tallies.get(data)
        if found is None:
            found = self._tallies[data] = shared_tally(tuple(
                (handler, count) for handler, count in from_json(data)))
        return found

    def _batch(self, layer: int, number: int) -> dict[str, list[Any]]:
        """A batch of a layer's records file, as lists by column (decoded once)."""
        found = self._batches.get((layer, number))
        if found is None:
            batch = self.layers[layer].records.get_batch(number)
            found = self._batches[layer, number] = {
                name: batch.column(name).to_pylist() for name in batch.schema.names}
        return found

    def queues(self, head: Head) -> tuple[dict[str, Queue], dict[str, Queue]]:
        """The ready and pinned queues: the records queued, each in its queue, in the
        order they joined."""
        full = self.layers[0].line
        current = full.filter(pc.invert(pc.is_in(full.column("index"),
                                                 value_set=self.changes.column("index"))))
        lines = pa.concat_tables([current, self.changes.select(LINE.names)])
        waiting = lines.filter(pc.equal(lines.column("status"), "queued"))
        waiting = waiting.take(pc.sort_indices(waiting.column("queued_at")))
        pinned = waiting.column("pinned")
        ready = {capability: self._queue(waiting.filter(pc.and_(
            pc.is_null(pinned), pc.equal(waiting.column("capability"), capability))))
            for capability in head["ready"]}
        return ready, {handler: self._queue(waiting.filter(pc.fill_null(
            pc.equal(pinned, handler), False))) for handler in head["pinned"]}

    @staticmethod
    def _queue(entries: pa.Table) -> Queue:
        return deque(zip(entries.column("id").to_pylist(),
                         entries.column("token").to_pylist(), strict=True))

    def dependents(self) -> dict[str, deque[str]]:
        """Each task's dependents, in plan order (each task's dependencies are in the
        snapshot that first held it)."""
        found: dict[str, deque[str]] = {}
        for layer in self.layers:
            line = layer.line.filter(pc.fill_null(
                pc.greater(pc.list_value_length(layer.line.column("dependencies")), 0), False))
            for task_id, dependencies in zip(line.column("id").to_pylist(),
                                             line.column("dependencies").to_pylist(),
                                             strict=True):
                for dependency in dependencies:
                    found.setdefault(dependency, deque()).append(task_id)
        return found


def _json(data: bytes) -> Any:
    """A value the snapshot holds as JSON: read by pydantic's reader, as the log's events
    are (ten times json's speed), or by json's past the 200 levels of nesting pydantic's
    stops at (the log reads those with json too)."""
    try:
        return from_json(data)
    except ValueError:
        return json.loads(data)


def _stacked(layers: list[Layer]) -> pa.Table:
    """The deltas' lines, one table, each row with its layer, its row there, and whether
    its place is new there (its task is then in that layer's records)."""
    count = layers[-1].head["tasks"]
    parts = [_STACKED.empty_table()]
    for k, layer in enumerate(layers[1:], start=1):
        line, rows = layer.line, layer.line.num_rows
        parts.append(line.append_column("layer", pa.array([k] * rows, pa.int32()))
                     .append_column("row", pa.array(range(rows), pa.int32()))
                     .append_column("new", pc.greater_equal(
                         line.column("index"), layer.head.get("new_from", count))))
    return pa.concat_tables(parts)


def _latest(stacked: pa.Table) -> pa.Table:
    """Of the rows of each place, the latest layer's."""
    ordered = stacked.sort_by([("index", "ascending"), ("layer", "descending")])
    places = ordered.column("index").combine_chunks()
    if len(places) < 2:
        return ordered
    first = pc.not_equal(places.slice(1), places.slice(0, len(places) - 1))
    return ordered.filter(pa.concat_arrays([pa.array([True]), first]))


def _where(rows: pa.Table) -> dict[int, tuple[int, int]]:
    """Place -> (layer, row) of `rows`."""
    where = zip(rows.column("layer").to_pylist(), rows.column("row").to_pylist(), strict=True)
    return dict(zip(rows.column("index").to_pylist(), where, strict=True))


_STACKED = LINE.append(pa.field("layer", pa.int32())).append(
    pa.field("row", pa.int32())).append(pa.field("new", pa.bool_()))


class Records(dict[str, TaskRecord]):
    """A state's task records, decoded from its snapshots as they are touched. Looking a
    task up is a dict's own lookup once it has been touched; only walking over them all,
    or asking for a task never touched, goes through the chain."""

    def __init__(self, chain: Chain):
        super().__init__()
        self.chain = chain
        self.whole = False
        self.added = 0  # records added after the snapshots
        # A coordinator reads its state from two threads (its progress, and its drive):
        # a record decoded, or the walk that decodes the rest, is one step.
        self.decoding = threading.RLock()

    def __missing__(self, task_id: str) -> TaskRecord:
        with self.decoding:
            if dict.__contains__(self, task_id):
                return dict.__getitem__(self, task_id)
            place = None if self.whole else self.chain.places.get(task_id)
            if place is None:
                raise KeyError(task_id)
            record = self.chain.record(place)
            dict.__setitem__(self, task_id, record)
            return record

    def __contains__(self, task_id: object) -> bool:
        return dict.__contains__(self, task_id) or (
            not self.whole and task_id in self.chain.places)

    def get(self, task_id: str, default: Any = None) -> Any:
        if task_id in self:  # (dict.get would not ask __missing__)
            return self[task_id]
        return default

    def __setitem__(self, task_id: str, record: TaskRecord) -> None:
        if task_id not in self:
            self.added += 1
        dict.__setitem__(self, task_id, record)

    def __len__(self) -> int:
        return dict.__len__(self) if self.whole else self.chain.count + self.added

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self._whole())

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return dict.keys(self._whole())

    def values(self) -> ValuesView[TaskRecord]:  # type: ignore[override]
        return dict.values(self._whole())

    def items(self) -> ItemsView[str, TaskRecord]:  # type: ignore[override]
        return dict.items(self._whole())

    def _whole(self) -> Records:
        """Decode every record not yet touched, and order them all by plan."""
        with self.decoding:
            if not self.whole:
                self._decode_all()
        return self

    def _decode_all(self) -> None:
        ids = self.chain.ids
        kept = [(task_id, dict.get(self, task_id) or self.chain.record(place))
                for place, task_id in enumerate(ids)]
        places = self.chain.places
        added = [(task_id, record) for task_id, record in dict.items(self)
                 if task_id not in places]
        dict.clear(self)
        dict.update(self, kept)
        dict.update(self, added)
        self.whole = True
