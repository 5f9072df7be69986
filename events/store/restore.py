"""Restoring exported runs: an export's rows written back into a store, byte for byte,
each run checked first (its seqs, its columns against its bytes, its digest chain).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInputError, BadLogError, RunExistsError
from ..state import RunState
from .arrow import DERIVED, LINKED, SCHEMA, derive
from .event_store import EventStore


def runs_in(rows: pa.Table) -> dict[str, pa.Table]:
    """An export's rows by run, each in seq order; BadInputError when it is not an export."""
    missing = [name for name in ("run_id", "seq", "data") if name not in rows.column_names]
    if missing:
        raise BadInputError(f"not a Baton export: no {', '.join(missing)} column (baton export "
                            "writes them)")
    # An older export lacks the newer columns: they are derived; what it has is checked
    # where it has all the derived ones.
    rows = rows.select([name for name in SCHEMA.names if name in rows.column_names])
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
    run is checked before any is written: RunExistsError when the store has one already,
    BadLogError naming the run and seq when one does not chain. An import of the same export
    that stopped part way is finished: a run it began (the store's part of it is the
    export's, byte for byte) is completed, one it finished is passed over, the rest
    written; which were written is returned."""
    runs = runs_in(rows)
    begun = {run_id: store.last_seq(run_id) for run_id in runs}
    taken = [run_id for run_id, have in begun.items()
             if have and not _begun_from(store, run_id, runs[run_id], have)]
    done = [run_id for run_id, have in begun.items() if have == runs[run_id].num_rows]
    if taken or len(done) == len(runs):
        raise RunExistsError(taken or done, store.shown_url)
    runs = {run_id: part for run_id, part in runs.items() if run_id not in done}
    for run_id, part in runs.items():
        check(run_id, part, store)
    for run_id, part in runs.items():
        data = part.column("data").to_pylist()
        for start in range(begun[run_id], len(data), APPEND_BATCH):
            chunk = data[start:start + APPEND_BATCH]
            events = [store.mapper.codec.decode(raw, run_id=run_id, seq=start + i)
                      for i, raw in enumerate(chunk, start=1)]
            # The columns of an import are derived from its bytes when read, not kept from
            # the decoded events: what is lax in decoding must not reach them.
            store.append(run_id, events, start, chunk, keep_columns=False)
    return {run_id: part.num_rows for run_id, part in runs.items()}


def _begun_from(store: EventStore, run_id: str, rows: pa.Table, have: int) -> bool:
    """Is the store's log of `run_id` (`have` events) a beginning of these rows, byte for
    byte (all of them, or what an import that stopped part way left)?"""
    if have > rows.num_rows:
        return False
    exported: list[bytes] = rows.column("data").slice(0, have).to_pylist()
    return [record.data for record in store.read_raw(run_id)] == exported


def check(run_id: str, rows: pa.Table, store: EventStore) -> None:
    """The rows chain: seqs 1, 2, 3 …, each row's columns what its data says, and every
    decision's digest of the log before it right. BadLogError naming the seq otherwise."""
    seqs = rows.column("seq").to_pylist()
    data = rows.column("data").to_pylist()
    for expected, seq in enumerate(seqs, start=1):
        if seq != expected:
            problem = "repeats an earlier seq" if seq < expected else "leaves a gap"
            raise BadLogError(f"expected seq {expected}, found {seq}: the export {problem}",
                              run_id=run_id, seq=seq)
    if set(DERIVED) <= set(rows.column_names):
        derived = derive(data, run_id=run_id, first_seq=1)
        for name in DERIVED:
            said = rows.column(name).cast(SCHEMA.field(name).type)
            differs = _differs(derived.column(name), said)
            if pc.any(differs).as_py():
                at = pc.index(differs, True).as_py()
                raise BadLogError(f"the row's {name} is not what its data says: the export was "
                                  "edited", run_id=run_id, seq=seqs[at])
    state = RunState()
    for seq, raw in zip(seqs, data, strict=True):
        state.apply(store.mapper.codec.decode(raw, run_id=run_id, seq=seq), raw)
    link = state.parent
    for name, value in zip(LINKED, (link.run_id, link.assignment_id) if link else (None, None),
                           strict=True):
        if name in rows.column_names and set(rows.column(name).to_pylist()) != {value}:
            raise BadLogError(f"the rows' {name} is not the run's: the export was edited",
                              run_id=run_id, seq=1)


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Where two columns disagree, a null agreeing only with a null."""
    same = pc.or_kleene(pc.fill_null(pc.equal(a, b), False),
                        pc.and_(pc.is_null(a), pc.is_null(b)))
    return pc.invert(same)
