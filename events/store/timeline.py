"""A run's timeline: what each of its events did to the plan's tasks, as numbers, kept
beside its log so that any moment of the run reads at once (projections/moment.py).

The query columns (chunks.py) hold about 120 bytes an event, most of it text and
digests: 117 MB for a run of a million events, too much to read each time a person
moves along the run. The timeline keeps of each event only what a moment's ledger
reads: its type, the place in plan order of the task it is about, the attempt, the
handler, outcome and rule (as dictionary codes), the time of the stimulus it follows,
what it reported spending, and on a PlanChanged the tasks it added (id, capability,
required, dependencies). Its first piece carries the run's request in short: goal,
parent, budget and when it was requested.

It is a cache of the log, as the query columns are, and brought up to date the same
way: a reader derives the stretch no piece covers (from the query columns, and from the
bodies of the few events that add tasks) and keeps it as a piece, in Arrow's IPC format
compressed, filed under its run and first seq. Pieces are read in seq order from seq 1;
one that does not start where the one before ends is passed over, and what it would
have covered is derived again.
"""

from __future__ import annotations

import io
import json
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from ..errors import BadLogError
from ..model import Task
from ..schema import ENDINGS
from . import arrow, chunks

if TYPE_CHECKING:
    from .event_store import EventStore

TOPIC = "baton.timeline:1"  # changes whenever a piece's layout does
KEEP_FROM = chunks.SIZE  # a shorter stretch derived is kept only when it ends its run

_CODE = pa.dictionary(pa.int32(), pa.string())
TASK = pa.struct([("id", pa.string()), ("capability", pa.string()),
                  ("required", pa.bool_()), ("dependencies", pa.list_(pa.string()))])
SCHEMA = pa.schema([
    ("type", _CODE),
    ("task", pa.int32()),  # its place in plan order; null for an event about no task
    ("attempt", pa.int32()),  # of the assignment it names
    ("handler", _CODE),
    ("outcome", _CODE),  # as in the query columns
    ("rule", _CODE),
    ("recorded_at", pa.float64()),  # of the stimulus it is, or follows
    ("requests", pa.int64()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("added", pa.list_(TASK)),  # the tasks a PlanChanged added, in plan order
])
_WRITE = pa.ipc.IpcWriteOptions(compression="zstd")
_HEAD = b"head"  # the schema metadata key of the first piece's request in short
_BUDGET = pa.struct([("max_cost_usd", pa.float64()), ("max_tokens", pa.int64()),
                     ("max_duration_s", pa.float64())])
_READ_TASK = pa.struct([("id", pa.string()), ("capability", pa.string()),
                        ("required", pa.bool_()), ("depends_on", pa.list_(pa.string()))])


@dataclass(frozen=True)
class Timeline:
    """A run's events from seq 1 as the timeline keeps them (row i is seq i + 1), and
    its request in short: goal, parent ({run_id, assignment_id} or None), budget (its
    limits set, or None) and requested_at."""

    run_id: str
    events: pa.Table
    head: dict[str, Any]

    def plan(self, until: int) -> pa.Table:
        """The tasks added by seq `until`, in plan order (TASK's fields), each with
        `added_at`: the seq of the PlanChanged that added it."""
        added = self.events.column("added").slice(0, until).combine_chunks()
        tasks = pa.Table.from_struct_array(added.flatten()) if len(added) else (
            pa.schema(list(TASK)).empty_table())
        rows = pc.list_parent_indices(added) if len(added) else pa.array([], pa.int64())
        return tasks.append_column("added_at", pc.add(pc.cast(rows, pa.int64()), 1))


def timeline(store: EventStore, run_id: str, until: int) -> Timeline:
    """The run's timeline from seq 1 to at least `until` (at most its last seq): the
    pieces kept, then the rest derived, and kept where it is worth keeping."""
    pieces, head = _kept(store, run_id, until)
    covered = sum(piece.num_rows for piece in pieces)
    if covered < until:
        known = pa.concat_tables(pieces).column("added") if pieces else None
        ids = (pc.struct_field(pc.list_flatten(known), "id").combine_chunks()
               if known is not None else pa.array([], pa.string()))
        at = pieces[-1].column("recorded_at")[-1].as_py() if pieces else None
        derived, found = derive(store, run_id, covered + 1, until, ids, at)
        head = head if covered else found
        ended = derived.column("type")[-1].as_py() in ENDINGS
        if until - covered >= KEEP_FROM or ended:
            _keep(store, run_id, covered + 1, derived, None if covered else head)
        pieces.append(derived)
    return Timeline(run_id, pa.concat_tables(pieces), head or {})


def stream(run_id: str) -> str:
    """Where a run's timeline pieces of this layout are filed."""
    return f"{run_id} {TOPIC}"


def _kept(store: EventStore, run_id: str, until: int
          ) -> tuple[list[pa.Table], dict[str, Any] | None]:
    """The pieces kept that run on from seq 1 without a break, as far as `until`; the
    request in short the first one carries."""
    pieces: list[pa.Table] = []
    head = None
    covered = 0
    for stored in store.columns.recorder.select_events(stream(run_id), lte=until):
        first = stored.originator_version
        if stored.topic != TOPIC or first != covered + 1:
            continue
        try:
            data = store.sealer.open(stored.state, run_id=run_id, seq=first, what="timeline")
            piece = pa.ipc.open_stream(data).read_all()
        except (pa.ArrowInvalid, OSError, BadLogError):
            break  # damaged, or not sealed as the store is: derived again from here
        if not piece.schema.equals(SCHEMA) or not piece.num_rows:
            break
        if first == 1:
            head = json.loads((piece.schema.metadata or {}).get(_HEAD, b"{}"))
        pieces.append(piece.replace_schema_metadata(None))
        covered += piece.num_rows
    return pieces, head


def _keep(store: EventStore, run_id: str, first: int, piece: pa.Table,
          head: dict[str, Any] | None) -> None:
    """Keep a derived piece; a database that refuses (a reader who may not write, or
    another reader that kept it first) loses nothing: it is derived again."""
    if head is not None:
        piece = piece.replace_schema_metadata({_HEAD: json.dumps(head).encode()})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, piece.schema, options=_WRITE) as writer:
        writer.write_table(piece)
    stored = StoredEvent(stream(run_id), first, TOPIC, store.sealer.seal(sink.getvalue()))
    with suppress(IntegrityError, PersistenceError):
        store.columns.recorder.insert_events([stored])


def derive(store: EventStore, run_id: str, first: int, last: int, ids: pa.Array,
           recorded_at: float | None) -> tuple[pa.Table, dict[str, Any] | None]:
    """The timeline of seqs first … last, given the ids of the tasks added before
    `first` (in plan order) and the time of the stimulus before it; and, from seq 1,
    the run's request in short."""
    columns = arrow.columns_between(store, run_id, first, last, recorded_at)
    count = columns.num_rows
    types = columns.column("type")
    changes = [first + i for i in pc.indices_nonzero(pc.equal(types, "PlanChanged")).to_pylist()]
    head, requested = None, None
    added: list[pa.Array] = []
    seq = 1
    try:
        if first == 1:
            head, requested = _request(_body(store, run_id, 1))
        for seq in changes:
            body = _body(store, run_id, seq)
            if _read(body, pa.schema([("requested", pa.bool_())])).column("requested")[0].as_py():
                if requested is None:
                    _, requested = _request(_body(store, run_id, 1))
                added.append(requested)
            else:
                added.append(_tasks(body, "added"))
    except (pa.ArrowInvalid, ValueError, KeyError, TypeError) as error:
        raise BadLogError(f"the tasks it adds do not read as tasks ({error})",
                          run_id=run_id, seq=seq) from None
    lengths = pa.repeat(pa.scalar(0, pa.int32()), count)
    if changes:
        rows = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count),
                                 start=pa.scalar(first - 1, pa.int64()))
        lengths = pc.replace_with_mask(lengths, pc.is_in(rows, value_set=pa.array(changes)),
                                       pa.array([len(a) for a in added], pa.int32()))
    offsets = pc.cumulative_sum(pa.concat_arrays([pa.array([0], pa.int32()), lengths]))
    values = pa.concat_arrays(added) if added else pa.array([], TASK)
    every_id = pa.concat_arrays([ids, pc.struct_field(values, "id")]) if added else ids
    attempts = pc.struct_field(pc.extract_regex(columns.column("assignment_id"),
                                                r"#(?P<n>[0-9]+)$"), "n")
    table = pa.table({
        "type": _coded(types),
        "task": pc.cast(pc.index_in(columns.column("task_id"), value_set=every_id),
                        pa.int32()),
        "attempt": pc.cast(attempts, pa.int32()),
        "handler": _coded(columns.column("handler")),
        "outcome": _coded(columns.column("outcome")),
        "rule": _coded(columns.column("rule")),
        **{name: columns.column(name).combine_chunks()
           for name in ("recorded_at", "requests", "input_tokens", "output_tokens",
                        "cost_usd")},
        "added": pa.ListArray.from_arrays(offsets, values),
    }, schema=SCHEMA)
    return table, head


def _coded(column: pa.ChunkedArray) -> pa.Array:
    return pc.dictionary_encode(column.combine_chunks()).cast(_CODE)


def _body(store: EventStore, run_id: str, seq: int) -> bytes:
    [record] = store.read_raw(run_id, after=seq - 1, until=seq)
    return record.data


def _request(body: bytes) -> tuple[dict[str, Any], pa.Array]:
    """A RunRequested's request in short, and the tasks it proposed (TASK)."""
    fields = pa.schema([("goal", pa.string()), ("recorded_at", pa.float64()),
                        ("parent", pa.struct([("run_id", pa.string()),
                                              ("assignment_id", pa.string())])),
                        ("budget", _BUDGET)])
    read = _read(body, fields)
    budget = read.column("budget")[0].as_py()
    head = {"goal": read.column("goal")[0].as_py() or "",
            "requested_at": read.column("recorded_at")[0].as_py(),
            "parent": read.column("parent")[0].as_py(),
            "budget": None if budget is None else
            {name: value for name, value in budget.items() if value is not None}}
    return head, _tasks(body, "tasks")


def _tasks(body: bytes, field: str) -> pa.Array:
    """The tasks (TASK) an event's `field` lists. Arrow reads them; where a task could
    name a dependency in its inputs, or names two or more, each is read as the decider
    reads it (Task.dependencies)."""
    if b'"from_task"' not in body:
        read = _read(body, pa.schema([(field, pa.list_(_READ_TASK))]))
        tasks = read.column(field).combine_chunks()
        listed = tasks.flatten() if len(tasks) and tasks.null_count == 0 else None
        if listed is not None:
            depends = pc.struct_field(listed, "depends_on")
            if depends.null_count == 0 and (not len(depends) or (
                    pc.max(pc.list_value_length(depends)).as_py() or 0) < 2):
                return pa.StructArray.from_arrays(
                    [pc.struct_field(listed, "id"), pc.struct_field(listed, "capability"),
                     pc.fill_null(pc.struct_field(listed, "required"), True), depends],
                    fields=list(TASK))
    rows = []
    for task in json.loads(body).get(field) or ():
        inputs = task.get("inputs") or {}
        if any(isinstance(value, dict) and "from_task" in value for value in inputs.values()):
            dependencies = list(Task.model_validate_json(json.dumps(task)).dependencies)
        else:
            dependencies = list(dict.fromkeys(task.get("depends_on") or ()))
        rows.append({"id": task["id"], "capability": task["capability"],
                     "required": task.get("required", True), "dependencies": dependencies})
    return pa.array(rows, TASK)


def _read(body: bytes, fields: pa.Schema) -> pa.Table:
    """`fields` of one event's JSON, read by Arrow (a block must hold it whole)."""
    return pj.read_json(io.BytesIO(body + b"\n"),
                        parse_options=pj.ParseOptions(explicit_schema=fields,
                                                      unexpected_field_behavior="ignore"),
                        read_options=pj.ReadOptions(block_size=max(1 << 20, 2 * len(body) + 2)))
