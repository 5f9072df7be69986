"""Exporting and reporting: runs to Parquet and back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from baton.actors.launcher import store_url
from baton.events.errors import BadSpec, BatonError
from baton.events.store import arrow, open_store

from .common import Store, app, err, fail, out, run_log


@app.command(name="export")
def export_runs(
    run_id: Annotated[str | None, typer.Argument(help="The run to export.")] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="PATH",
        help="A .parquet file; with --all, a directory (a dataset partitioned by run).")] = (
            Path("export.parquet")),
    every: Annotated[bool, typer.Option("--all", help="Export every run in the store.")] = False,
    store: Store = None,
) -> None:
    """Write runs to Parquet: one row per event, for DuckDB, pandas or polars.

    Each row has run id, seq, type, schema version, cause, recorded_at, the rule that
    fired, task, assignment, handler, outcome, state digest, and the event's bytes as
    recorded (decrypted, when the store is sealed), so `baton import` restores the run
    exactly.
    """
    if (run_id is None) == (not every):
        fail(BadSpec("name one run to export, or pass --all for every run"))
    try:
        if run_id is not None:
            with run_log(run_id, store) as log:
                run_ids = [run_id]
                table = arrow.table(log, run_ids)
        else:
            with open_store(store_url(store)) as log:
                run_ids = [info.run_id for info in log.runs()]
                table = arrow.table(log, run_ids)
    except BatonError as error:
        fail(error)
    if every:
        pq.write_to_dataset(table, output, partition_cols=["run_id"],
                            existing_data_behavior="delete_matching")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output)
    err.print(f"exported {table.num_rows:,} events of {len(run_ids):,} run"
              f"{'s' if len(run_ids) != 1 else ''} to {output}", highlight=False)


@app.command(name="import")
def import_runs(
    source: Annotated[Path, typer.Argument(
        help="A .parquet file or directory that baton export wrote.", metavar="PATH")],
    store: Store = None,
) -> None:
    """Load exported runs into a store, byte for byte.

    Every run is checked before anything is written: a run id the store already has is
    refused (exit 2); an export whose events do not chain (a gap, an edited row) is
    refused naming the run and seq (exit 1).
    """
    if not source.exists():
        fail(BadSpec(f"{source} does not exist"))
    try:
        rows = pq.read_table(source)
    except (pa.ArrowException, OSError) as error:
        fail(BadSpec(f"{source} is not a Parquet file or dataset: {error}"))
    try:
        with open_store(store_url(store)) as log:
            loaded = arrow.load(log, rows)
    except BatonError as error:
        fail(error)
    for run_id, events in loaded.items():
        out.print(f"imported {run_id}: {events:,} events", highlight=False)
