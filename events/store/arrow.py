"""A run's log as an Arrow table: one row per event, for Parquet files, DuckDB, pandas
and polars, and back into a store byte for byte.

Each row holds the event's bytes as recorded (`data`, plain even when the store seals
them: what the key decrypts) beside columns read out of them for querying. The store
keeps those columns as it appends (chunks.py), so an export reads them with the rows
instead of parsing every event; where no chunk does, they are derived from `data`
with Arrow's own JSON reader. An import derives them again and refuses a row that
disagrees.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.json as pj
import pyarrow.parquet as pq

from ..errors import BadLogError
from ..schema import ENDINGS, RunRequested
from ..tree import ParentLink
from . import chunks
from .rows import LogRow, Packed

if TYPE_CHECKING:
    from .event_store import EventStore

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
    # What it spent on models (a result's or a failure's usage), where it reported any.
    pa.field("model", pa.string()),
    pa.field("requests", pa.int64()),
    pa.field("input_tokens", pa.int64()),
    pa.field("output_tokens", pa.int64()),
    pa.field("cost_usd", pa.float64()),
    # The run a child run answers, and the assignment of it (events.tree): on every row
    # of the child's, so a tree is one join away.
    pa.field("parent_run", pa.string()),
    pa.field("parent_assignment", pa.string()),
    pa.field("data", pa.binary(), nullable=False),
], metadata={b"baton": b"events/4"})  # 1 lacked node … ended_at; 2, model … cost; 3, parent
LINKED = ["parent_run", "parent_assignment"]  # of the run, not read out of each event

_RAN = ["node", "pid", "replica", "started_at", "ended_at"]
_EXECUTION = pa.struct([(name, SCHEMA.field(name).type) for name in _RAN])
_SPENT = ["model", "requests", "input_tokens", "output_tokens", "cost_usd"]
_USAGE = pa.struct([(name, SCHEMA.field(name).type) for name in _SPENT])
# What Arrow's JSON reader reads out of each record; everything else is skipped.
_READ = pa.schema([
    ("type", pa.string()), ("schema_version", pa.int64()), ("cause", pa.int64()),
    ("recorded_at", pa.float64()), ("state_digest", pa.string()),
    ("reason", pa.struct([("rule", pa.string())])),
    ("task_id", pa.string()), ("assignment_id", pa.string()), ("handler", pa.string()),
    ("outcome", pa.string()), ("action", pa.string()),
    ("assignment", pa.struct([("id", pa.string()), ("task_id", pa.string()),
                              ("handler", pa.string())])),
    ("result", pa.struct([("assignment_id", pa.string()), ("execution", _EXECUTION),
                          ("usage", _USAGE)])),
    ("failure", pa.struct([("assignment_id", pa.string()), ("kind", pa.string()),
                           ("execution", _EXECUTION), ("usage", _USAGE)])),
])
_OPTIONS = pj.ParseOptions(explicit_schema=_READ, unexpected_field_behavior="ignore")
DERIVED = [f.name for f in SCHEMA if f.name not in ("run_id", "seq", "data", *LINKED)]
DERIVED_SCHEMA = pa.schema([(name, SCHEMA.field(name).type) for name in DERIVED])
PAGE = 50_000  # events read into one batch
# Events' bytes are all different and their min and max say nothing: a dictionary of
# them, or statistics, would cost time and space for no reader.
_QUERIED = [name for name in SCHEMA.names if name != "data"]
_PARQUET = {"use_dictionary": _QUERIED, "write_statistics": _QUERIED}
_AT_DERIVED = DERIVED_SCHEMA.get_field_index("recorded_at")
_VERSION = DERIVED_SCHEMA.get_field_index("schema_version")


def table(store: EventStore, run_ids: Iterable[str]) -> pa.Table:
    """The runs' logs, one row per event, in run and seq order."""
    return pa.Table.from_batches(list(batches(store, run_ids)), schema=SCHEMA)


def columns(store: EventStore, run_id: str) -> pa.Table:
    """The run's rows without their data or its parent (what statistics read): from the
    columns kept beside its log, reading and deriving only the events no chunk covers."""
    def uncovered(seq: int, end: int) -> pa.Table:
        return derive([r.data for r in store.read_raw(run_id, after=seq - 1, until=end - 1)],
                      run_id=run_id, first_seq=seq)

    last = store.require_every_seq(run_id)
    kept = store.column_chunks(run_id)
    derived = _Kept(run_id, kept).columns(1, last, uncovered)
    if last and derived.column("type")[-1].as_py() in ENDINGS:
        keep_derived(store, run_id, kept, derived)
    return pa.table([pa.repeat(pa.scalar(run_id, pa.string()), last),
                     _seqs(1, last),
                     *derived.columns],
                    schema=pa.schema([SCHEMA.field(name) for name in ("run_id", "seq",
                                                                       *DERIVED)]))


def columns_between(store: EventStore, run_id: str, first: int, last: int,
                    recorded_at: float | None = None) -> pa.Table:
    """The query columns (DERIVED) of the run's seqs first … last, from the chunks
    kept near them; the events no chunk covers are decoded (so a damaged one is named,
    as a fold names it) and their columns taken as the coordinator takes them.
    `recorded_at` is the time of the stimulus before `first`, which the decisions
    opening the stretch carry."""
    def decoded(seq: int, end: int) -> pa.Table:
        events = store.read(run_id, after=seq - 1, until=end - 1)
        lines = [chunks.line(event) for event in events]
        if all(lines):
            parsed = _parsed("\n".join(lines).encode(), len(lines))  # type: ignore[arg-type]
            if parsed is not None:
                return _timed(parsed)
        # A text with a line break, which no line holds: read out of the records.
        return derive([r.data for r in store.read_raw(run_id, after=seq - 1, until=end - 1)],
                      run_id=run_id, first_seq=seq)

    reader = _Kept(run_id, store.columns.kept(run_id, near=(first, last)))
    reader.recorded_at = pa.scalar(recorded_at, pa.float64())
    return reader.columns(first, last - first + 1, decoded)


def keep_derived(store: EventStore, run_id: str, kept: list[tuple[int, int, bytes]],
                 derived: pa.Table) -> None:
    """Keep as chunks the columns of an ended run's events that no chunk covered (`kept`,
    as read before `derived`, its columns from seq 1, were made), so the next reader
    reads them instead of deriving them again: the projection brought up to date by a
    reader, as the runs index is. A piece with a line break in a text is left to be
    derived, as the writer leaves it; a store that refuses the first write (a reader
    who may not write) is not asked again for the rest."""
    seq, end = 1, derived.num_rows + 1
    for start, rows, _ in [*kept, (end, 0, b"")]:
        for first in range(seq, start, chunks.SIZE):
            piece = derived.slice(first - 1, min(chunks.SIZE, start - first))
            body = _csv(piece)
            if body is not None and not store.columns.keep(
                    run_id, first, chunks.framed(run_id, first, body)):
                return
        seq = max(seq, start + rows)


_CSV_WRITE = pcsv.WriteOptions(include_header=False, quoting_style="needed")


def _csv(columns: pa.Table) -> bytes | None:
    """Columns as chunk lines (`chunks.COLUMNS`, text quoted, null as nothing); None
    when a text holds a line break."""
    texts = [name for name in chunks.COLUMNS if pa.types.is_string(columns.schema.field(name).type)]
    for name in texts:
        if pc.any(pc.match_substring_regex(columns.column(name), "[\r\n]")).as_py():
            return None
    sink = io.BytesIO()
    pcsv.write_csv(columns.select(list(chunks.COLUMNS)), sink, _CSV_WRITE)
    return sink.getvalue().rstrip(b"\n")


def batches(store: EventStore, run_ids: Iterable[str]) -> Iterator[pa.RecordBatch]:
    """The runs' rows a page at a time. A page's columns are taken from those kept
    beside the log, or derived where none were, on a second thread while the next page
    is read: Arrow's JSON reader and kernels let go of the GIL, so reading and deriving
    overlap on two cores."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-arrow") as deriving:
        for run_id in run_ids:
            # One thread takes the pages in turn, so each page's rows carry the time of
            # the one before.
            first = store.read(run_id, until=1)
            link = first[0].parent if first and isinstance(first[0], RunRequested) else None
            kept = _Kept(run_id, store.column_chunks(run_id), link)
            ahead: Future[pa.RecordBatch] | None = None
            pages: Iterable[Packed | Sequence[LogRow]] | None = store.read_packed(
                run_id, size=PAGE)
            if pages is None:
                pages = store.read_pages(run_id, size=PAGE)
            for page in pages:
                future = deriving.submit(kept.rows, page)
                if ahead is not None:
                    yield ahead.result()
                ahead = future
            if ahead is not None:
                yield ahead.result()


def write_parquet(store: EventStore, run_ids: Iterable[str], path: Path,
                  on_rows: Callable[[int], None] = lambda rows: None) -> int:
    """Write the runs' rows to one Parquet file as they are read, a page at a time (so
    memory stays bounded by a few pages); `on_rows(n)` after each. The file appears
    only once whole: should reading fail, what was at `path` is left as it was.
    Returns the rows."""
    written = 0
    with _replacing(path) as partial, pq.ParquetWriter(partial, SCHEMA, **_PARQUET) as writer, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-parquet") as writing:
        behind: Future[None] | None = None
        for rows in batches(store, run_ids):
            if behind is not None:
                behind.result()
            behind = writing.submit(writer.write_batch, rows)
            written += rows.num_rows
            on_rows(rows.num_rows)
        if behind is not None:
            behind.result()
    return written


def write_dataset(store: EventStore, run_ids: Iterable[str], directory: Path,
                  on_rows: Callable[[int], None] = lambda rows: None) -> int:
    """Write the runs' rows to a Parquet dataset partitioned by run (run_id=…/), as
    they are read; `on_rows(n)` after each page. Each run's directory replaces the one
    there only once every run is written: should reading fail, nothing there changes.
    Returns the rows."""
    written = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal written
        for rows in batches(store, run_ids):
            written += rows.num_rows
            on_rows(rows.num_rows)
            yield rows

    directory.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".baton-export-", dir=directory))
    try:
        ds.write_dataset(pa.RecordBatchReader.from_batches(SCHEMA, counted()), partial,
                         format="parquet", partitioning=["run_id"],
                         partitioning_flavor="hive",
                         file_options=ds.ParquetFileFormat().make_write_options(**_PARQUET))
        for run in partial.iterdir():
            shutil.rmtree(directory / run.name, ignore_errors=True)
            run.rename(directory / run.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return written


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A file beside `path` to write; it becomes `path` when the block ends without
    an error, and is removed when it ends with one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def _seqs(first: int, count: int) -> pa.Array:
    """first, first + 1, … (count of them), made in Arrow, not from a Python range."""
    ones = pa.repeat(pa.scalar(1, pa.int64()), count)
    return pc.cumulative_sum(ones, start=pa.scalar(first - 1, pa.int64()))


def _binary(page: Packed | Sequence[LogRow], run_id: str) -> tuple[int, pa.BinaryArray]:
    """The first seq of a page of records, and their bytes as one Arrow array."""
    if not isinstance(page, Packed):
        return page[0][0], pa.array([data for _, _, data in page], pa.binary())
    seqs = pc.cast(pc.split_pattern(page.seqs, ",").values, pa.int64())
    lengths = pc.cast(pc.split_pattern(page.lengths, ",").values, pa.int32())
    offsets = pc.cumulative_sum(pa.concat_arrays([pa.array([0], pa.int32()), lengths]))
    # The database packs seqs, lengths and bytes in one pass, in the order it was asked
    # for; should it ever not, this export would be wrong, so it is refused.
    if not (len(seqs) == len(lengths) == page.records and seqs[0].as_py() == page.first
            and pc.all(pc.equal(pc.pairwise_diff(seqs), 1)).as_py() is not False
            and offsets[-1].as_py() == len(page.data)):
        raise BadLogError("the store packed these records out of seq order; export with "
                          "a newer Baton", run_id=run_id, seq=page.first)
    return page.first, pa.Array.from_buffers(pa.binary(), page.records,
                                             [None, offsets.buffers()[1],
                                              pa.py_buffer(page.data)])


class _Kept:
    """A run's query columns kept beside its log (chunks.py), and the columns of any
    range of its events: from them, and derived from the events' data where none is."""

    def __init__(self, run_id: str, kept: list[tuple[int, int, bytes]],
                 parent: ParentLink | None = None):
        self.run_id = run_id
        self.parent = (parent.run_id, parent.assignment_id) if parent else (None, None)
        self.chunks = kept  # (first seq, events, lines), in seq order; parsed when needed
        self.parsed: dict[int, pa.Table | None] = {}
        self.recorded_at = pa.scalar(None, pa.float64())  # of the rows given so far

    def rows(self, page: Packed | Sequence[LogRow]) -> pa.RecordBatch:
        """Export rows for the run's next consecutive records."""
        first, data = _binary(page, self.run_id)
        derived = self.columns(first, len(data), lambda seq, end: derive(
            data.slice(seq - first, end - seq).to_pylist(), run_id=self.run_id, first_seq=seq))
        return pa.RecordBatch.from_arrays(
            [pa.repeat(pa.scalar(self.run_id, pa.string()), len(data)),
             _seqs(first, len(data)),
             *(column.combine_chunks() for column in derived.columns),
             *(pa.repeat(pa.scalar(value, pa.string()), len(data)) for value in self.parent),
             data],
            schema=SCHEMA)

    def _parse(self, first: int, end: int) -> None:
        """Parse, in one go, every chunk not parsed yet with events in seqs first …
        end - 1: one large read is split across cores by Arrow, many small ones are not."""
        todo = [(start, rows, lines) for start, rows, lines in self.chunks
                if start < end and start + rows > first and start not in self.parsed]
        read = _parsed(b"\n".join(lines for _, _, lines in todo),
                       sum(rows for _, rows, _ in todo))
        offset = 0
        for start, rows, lines in todo:
            if read is None:  # one is damaged: each on its own, to find which
                alone = _parsed(lines, rows)
                self.parsed[start] = None if alone is None else _timed(alone)
            else:
                self.parsed[start] = _timed(read.slice(offset, rows))
                offset += rows

    def columns(self, first: int, count: int,
                uncovered: Callable[[int, int], pa.Table]) -> pa.Table:
        """The columns of seqs first … first + count - 1; `uncovered(seq, end)` gives
        those of seqs seq … end - 1, which no chunk covers."""
        parts: list[pa.Table] = []
        seq, end = first, first + count
        for start, rows, _ in self.chunks:
            stop = min(start + rows, end)
            if stop <= seq or start >= end:
                continue
            if start not in self.parsed:
                self._parse(seq, end)
            chunk = self.parsed[start]
            if start + rows <= end:
                del self.parsed[start]  # no later page reads it
            if chunk is None:  # damaged: derived like any event no chunk covers
                continue
            if start > seq:
                parts.append(uncovered(seq, start))
                seq = start
            parts.append(chunk.slice(seq - start, stop - seq))
            seq = stop
        if seq < end:
            parts.append(uncovered(seq, end))
        # Each part was derived on its own: the decisions opening one are timed by the
        # stimulus that ends the one before.
        carried = []
        for part in parts:
            at = part.column("recorded_at")
            if at.null_count and self.recorded_at.is_valid:
                part = part.set_column(_AT_DERIVED, "recorded_at",
                                       pc.fill_null(at, self.recorded_at))
            carried.append(part)
            self.recorded_at = part.column("recorded_at")[-1]
        return pa.concat_tables(carried) if carried else DERIVED_SCHEMA.empty_table()


_CSV_READ = pcsv.ReadOptions(column_names=list(chunks.COLUMNS))
# An empty field is null; a quoted one, even empty, is text.
_CSV_CONVERT = pcsv.ConvertOptions(column_types=DERIVED_SCHEMA, strings_can_be_null=True,
                                   quoted_strings_can_be_null=False)


def _parsed(lines: bytes, rows: int) -> pa.Table | None:
    """Chunks' columns as their lines say them; None when one is damaged (then the
    events it covers are derived instead)."""
    try:
        read = pcsv.read_csv(io.BytesIO(lines), read_options=_CSV_READ,
                             convert_options=_CSV_CONVERT)
    except pa.ArrowInvalid:
        return None
    if read.num_rows != rows or not read.schema.equals(DERIVED_SCHEMA):
        return None
    return read.set_column(_VERSION, "schema_version",
                           pc.fill_null(read.column("schema_version"), 1))


def _timed(chunk: pa.Table) -> pa.Table:
    """A chunk's columns with each decision timed by the stimulus before it there."""
    return chunk.set_column(_AT_DERIVED, "recorded_at",
                            pc.fill_null_forward(chunk.column("recorded_at")))


def derive(data: list[bytes], *, run_id: str, first_seq: int) -> pa.Table:
    """The query columns of records (given in seq order), read out of their JSON. The
    decisions that open them, answering a stimulus before them, have no time yet:
    `_Kept.columns` gives them that stimulus's."""
    try:
        # A block must hold the longest record whole (a large plan's RunRequested).
        block = max(1 << 20, 2 * max(len(d) for d in data) + 2)
        read = pj.read_json(io.BytesIO(b"\n".join(data) + b"\n"), parse_options=_OPTIONS,
                            read_options=pj.ReadOptions(block_size=block))
    except pa.ArrowInvalid as error:
        raise BadLogError(f"a record is not an event's JSON ({error})", run_id=run_id,
                          seq=first_seq) from None
    if read.num_rows != len(data):
        raise BadLogError("a record is not one line of JSON", run_id=run_id, seq=first_seq)
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
        "recorded_at": pc.fill_null_forward(read.column("recorded_at")),
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
    spent = [pc.struct_field(outcome, "usage") for outcome in (result, failure)]
    for name in _SPENT:
        columns[name] = pc.coalesce(*(pc.struct_field(u, name) for u in spent))
    return pa.table([pa.chunked_array(columns[name]).cast(SCHEMA.field(name).type)
                     for name in DERIVED], names=DERIVED)
