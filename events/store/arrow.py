"""A run's log as an Arrow table: one row per event, for Parquet files, DuckDB, pandas
and polars, and back into a store byte for byte.

Each row holds the event's bytes as recorded (`data`, plain even when the store seals
them: what the key decrypts) beside columns read out of them for querying. The columns
are derived from `data` with Arrow's own JSON reader, so an export costs little more
than reading the rows; an import derives them again and refuses a row that disagrees.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..errors import BadLog, BadSpec, RunExists
from ..state import RunState
from .recorder import EventStore, Recorded

SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("type", pa.string(), nullable=False),
    pa.field("schema_version", pa.int64()),
    pa.field("cause", pa.int64()),
    pa.field("recorded_at", pa.float64()),  # a decision's: its stimulus's
    pa.field("rule", pa.string()),
    pa.field("task_id", pa.string()),
    pa.field("assignment_id", pa.string()),
    pa.field("handler", pa.string()),
    pa.field("outcome", pa.string()),  # validated outcome, recovery action, failure kind
    pa.field("state_digest", pa.string()),
    # Where and when a handler ran (a result's or a handler failure's execution).
    pa.field("node", pa.string()),
    pa.field("pid", pa.int64()),
    pa.field("replica", pa.int64()),
    pa.field("started_at", pa.float64()),
    pa.field("ended_at", pa.float64()),
    pa.field("data", pa.binary(), nullable=False),
], metadata={b"baton": b"events/2"})  # events/1 lacked node … ended_at

_RAN = ["node", "pid", "replica", "started_at", "ended_at"]
_EXECUTION = pa.struct([(name, SCHEMA.field(name).type) for name in _RAN])
# What Arrow's JSON reader reads out of each record; everything else is skipped.
_READ = pa.schema([
    ("type", pa.string()), ("schema_version", pa.int64()), ("cause", pa.int64()),
    ("recorded_at", pa.float64()), ("state_digest", pa.string()),
    ("reason", pa.struct([("rule", pa.string())])),
    ("task_id", pa.string()), ("assignment_id", pa.string()), ("handler", pa.string()),
    ("outcome", pa.string()), ("action", pa.string()),
    ("assignment", pa.struct([("id", pa.string()), ("task_id", pa.string()),
                              ("handler", pa.string())])),
    ("result", pa.struct([("assignment_id", pa.string()), ("execution", _EXECUTION)])),
    ("failure", pa.struct([("assignment_id", pa.string()), ("kind", pa.string()),
                           ("execution", _EXECUTION)])),
])
_OPTIONS = pj.ParseOptions(explicit_schema=_READ, unexpected_field_behavior="ignore")
DERIVED = [f.name for f in SCHEMA if f.name not in ("run_id", "seq", "data")]
PAGE = 50_000  # events read into one batch
_AT = SCHEMA.get_field_index("recorded_at")


def table(store: EventStore, run_ids: Iterable[str]) -> pa.Table:
    """The runs' logs, one row per event, in run and seq order."""
    return pa.Table.from_batches(list(batches(store, run_ids)), schema=SCHEMA)


def batches(store: EventStore, run_ids: Iterable[str]) -> Iterator[pa.RecordBatch]:
    """The runs' rows a page at a time. A page's columns are derived on a second thread
    while the next page is read: Arrow's JSON reader and kernels let go of the GIL, so
    reading and deriving overlap on two cores."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-arrow") as deriving:
        for run_id in run_ids:
            recorded_at = None  # the last of the pages before, for its decisions to carry
            ahead: Future[pa.RecordBatch] | None = None
            for page in _pages(store.read_raw(run_id)):
                future = deriving.submit(batch, page)
                if ahead is not None:
                    rows = _carrying(ahead.result(), recorded_at)
                    recorded_at = rows.column(_AT)[-1].as_py()
                    yield rows
                ahead = future
            if ahead is not None:
                yield _carrying(ahead.result(), recorded_at)


def _pages(records: Iterable[Recorded]) -> Iterator[list[Recorded]]:
    page: list[Recorded] = []
    for record in records:
        page.append(record)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def _carrying(rows: pa.RecordBatch, recorded_at: float | None) -> pa.RecordBatch:
    """`rows` with the decisions that open them timed by the stimulus before them."""
    column = rows.column(_AT)
    if recorded_at is None or not column.null_count:
        return rows
    return rows.set_column(_AT, SCHEMA.field(_AT),
                           pc.fill_null(column, pa.scalar(recorded_at, pa.float64())))


def batch(records: list[Recorded], recorded_at: float | None = None) -> pa.RecordBatch:
    """Rows for consecutive records of one run; `recorded_at` is the time of the records
    before them, which decisions at the start of these carry."""
    data = [r.data for r in records]
    derived = derive(data, run_id=records[0].run_id, first_seq=records[0].seq,
                     recorded_at=recorded_at)
    return pa.RecordBatch.from_arrays(
        [pa.repeat(pa.scalar(records[0].run_id, pa.string()), len(records)),
         pa.array(range(records[0].seq, records[0].seq + len(records)), pa.int64()),
         *(derived.column(name).combine_chunks() for name in DERIVED),
         pa.array(data, pa.binary())],
        schema=SCHEMA)


def derive(data: list[bytes], *, run_id: str, first_seq: int,
           recorded_at: float | None = None) -> pa.Table:
    """The query columns of records (given in seq order), read out of their JSON;
    `recorded_at` is the time of the records before them, if any."""
    try:
        # A block must hold the longest record whole (a large plan's RunRequested).
        block = max(1 << 20, 2 * max(len(d) for d in data) + 2)
        read = pj.read_json(io.BytesIO(b"\n".join(data) + b"\n"), parse_options=_OPTIONS,
                            read_options=pj.ReadOptions(block_size=block))
    except pa.ArrowInvalid as error:
        raise BadLog(f"a record is not an event's JSON ({error})", run_id=run_id,
                     seq=first_seq) from None
    if read.num_rows != len(data):
        raise BadLog("a record is not one line of JSON", run_id=run_id, seq=first_seq)
    assignment, result = read.column("assignment"), read.column("result")
    failure = read.column("failure")
    assignment_id = pc.coalesce(
        read.column("assignment_id"), pc.struct_field(assignment, "id"),
        pc.struct_field(result, "assignment_id"), pc.struct_field(failure, "assignment_id"))
    task_of_attempt = pc.replace_substring_regex(assignment_id, r"#[^#]*$", "")
    ending = pc.if_else(pc.equal(read.column("type"), "RunCompleted"), "completed",
                        pc.if_else(pc.equal(read.column("type"), "RunFailed"), "failed",
                                   pa.scalar(None, pa.string())))
    columns = {
        "type": read.column("type"),
        "schema_version": pc.fill_null(read.column("schema_version"), 1),
        "cause": read.column("cause"),
        # Only leading nulls are left after the forward fill: the decisions that answer
        # a stimulus recorded before `data`.
        "recorded_at": pc.fill_null(pc.fill_null_forward(read.column("recorded_at")),
                                    pa.scalar(recorded_at, pa.float64())),
        "rule": pc.struct_field(read.column("reason"), "rule"),
        "task_id": pc.coalesce(read.column("task_id"),
                               pc.struct_field(assignment, "task_id"), task_of_attempt),
        "assignment_id": assignment_id,
        "handler": pc.coalesce(read.column("handler"), pc.struct_field(assignment, "handler")),
        "outcome": pc.coalesce(read.column("outcome"), read.column("action"),
                               pc.struct_field(failure, "kind"), ending),
        "state_digest": read.column("state_digest"),
    }
    ran = [pc.struct_field(outcome, "execution") for outcome in (result, failure)]
    for name in _RAN:
        columns[name] = pc.coalesce(*(pc.struct_field(e, name) for e in ran))
    return pa.table([pa.chunked_array(columns[name]).cast(SCHEMA.field(name).type)
                     for name in DERIVED], names=DERIVED)



def runs_in(rows: pa.Table) -> dict[str, pa.Table]:
    """An export's rows by run, each in seq order; BadSpec when it is not an export."""
    missing = [name for name in ("run_id", "seq", "data") if name not in rows.column_names]
    if missing:
        raise BadSpec(f"not a Baton export: no {', '.join(missing)} column (baton export "
                      "writes them)")
    rows = rows.select(SCHEMA.names if set(SCHEMA.names) <= set(rows.column_names)
                       else ["run_id", "seq", "data"])
    rows = rows.set_column(0, "run_id", pc.cast(rows.column("run_id"), pa.string()))
    rows = rows.sort_by([("run_id", "ascending"), ("seq", "ascending")])
    found: dict[str, pa.Table] = {}
    run_ids = rows.column("run_id")
    for run_id in pc.unique(run_ids).to_pylist():
        found[run_id] = rows.filter(pc.equal(run_ids, run_id))
    return found


APPEND_BATCH = 10_000  # events written in one transaction


def load(store: EventStore, rows: pa.Table) -> dict[str, int]:
    """Write an export's runs into `store`, byte for byte; the events of each run. Every
    run is checked before any is written: RunExists when the store has one already,
    BadLog naming the run and seq when one does not chain."""
    runs = runs_in(rows)
    taken = [run_id for run_id in runs if store.last_seq(run_id)]
    if taken:
        raise RunExists(taken, store.shown_url)
    for run_id, part in runs.items():
        check(run_id, part, store)
    for run_id, part in runs.items():
        data = part.column("data").to_pylist()
        for start in range(0, len(data), APPEND_BATCH):
            chunk = data[start:start + APPEND_BATCH]
            events = [store.codec.decode(raw, run_id=run_id, seq=start + i)
                      for i, raw in enumerate(chunk, start=1)]
            store.append(run_id, events, start, chunk)
    return {run_id: part.num_rows for run_id, part in runs.items()}


def check(run_id: str, rows: pa.Table, store: EventStore) -> None:
    """The rows chain: seqs 1, 2, 3 …, each row's columns what its data says, and every
    decision's digest of the log before it right. BadLog naming the seq otherwise."""
    seqs = rows.column("seq").to_pylist()
    data = rows.column("data").to_pylist()
    for expected, seq in enumerate(seqs, start=1):
        if seq != expected:
            problem = "repeats an earlier seq" if seq < expected else "leaves a gap"
            raise BadLog(f"expected seq {expected}, found {seq}: the export {problem}",
                         run_id=run_id, seq=seq)
    if set(DERIVED) <= set(rows.column_names):
        derived = derive(data, run_id=run_id, first_seq=1)
        for name in DERIVED:
            said = rows.column(name).cast(SCHEMA.field(name).type)
            differs = _differs(derived.column(name), said)
            if pc.any(differs).as_py():
                at = pc.index(differs, True).as_py()
                raise BadLog(f"the row's {name} is not what its data says: the export was "
                             "edited", run_id=run_id, seq=seqs[at])
    state = RunState()
    for seq, raw in zip(seqs, data, strict=True):
        state.apply(store.codec.decode(raw, run_id=run_id, seq=seq), raw)


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Where two columns disagree, a null agreeing only with a null."""
    same = pc.or_kleene(pc.fill_null(pc.equal(a, b), False),
                        pc.and_(pc.is_null(a), pc.is_null(b)))
    return pc.invert(same)
