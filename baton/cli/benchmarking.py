"""Benchmarking: `baton bench`, Baton beside plain Ray on the cluster at hand."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from baton.events.errors import BadInputError

from .common import Address, AsJson, app, emit_json, err, out, progress

if TYPE_CHECKING:
    from baton.actors import bench as measure

QUICK_TASKS = 300
QUICK_REPLICAS = (1, 2)


@app.command()
def bench(
    address: Address = None,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="URL", help="Keep the bench runs in this store (default: a "
        "scratch SQLite file, removed after).")] = None,
    tasks: Annotated[int, typer.Option("--tasks", metavar="N", min=1,
                                       help="Assignments per run.")] = 5_000,
    replicas: Annotated[str, typer.Option(
        "--replicas", metavar="1,2,4", help="Replica counts to measure, one row each.")] = (
            "1,2,4"),
    work_ms: Annotated[float, typer.Option(
        "--work-ms", metavar="MS", min=0, help="What each assignment sleeps, as work.")] = 0.0,
    payload_bytes: Annotated[int, typer.Option(
        "--payload-bytes", metavar="B", min=0,
        help="Bytes of padding in each assignment's input and output.")] = 0,
    workload: Annotated[str, typer.Option(
        "--workload", metavar="echo|dag|chaos",
        help="echo: a fan-out of trivial assignments; dag: layers, each task reading two "
        "outputs of the layer before; chaos: echo with seeded crashes and wrong answers, "
        "so retries are part of the cost.")] = "echo",
    seed: Annotated[int, typer.Option("--seed", help="The chaos workload's seed.")] = 0,
    quick: Annotated[bool, typer.Option(
        "--quick", help=f"{QUICK_TASKS} tasks at 1 and 2 replicas: a smoke test.")] = False,
    chart: Annotated[Path | None, typer.Option(
        "--chart", metavar="FILE.png", help="Draw assignments/s against replicas, Baton "
        "beside plain Ray (needs matplotlib: pip install 'baton[bench]').")] = None,
    as_json: AsJson = False,
) -> None:
    """Measure what Baton costs here: the same work through Baton and through plain Ray.

    For each replica count, the workload runs through plain Ray actors (one call an
    item, every call submitted at once) and then through Baton (every decision recorded
    in the store), on the same cluster, one after the other. The table shows
    assignments/s, latency percentiles (Baton: a task's first dispatch to its accepted
    result, so the wait before dispatch, while a handler holds as much as its replicas'
    queue_depth allows, is not in it; plain Ray: a call's submission to its end, its wait
    in the actor's queue included: the two say different things), the events Baton
    recorded, and Baton's rate over plain Ray's.

    \b
    baton bench --quick                       a smoke test on a local Ray
    baton bench --address auto --replicas 2,4,8 --work-ms 5
    baton bench --workload chaos --json > chaos.json
    """
    from baton.actors import bench as measure  # Ray: only for the command that uses it
    from baton.actors.cluster import ensure_ray

    if workload not in measure.WORKLOADS:
        raise BadInputError(f"--workload {workload!r}: choose one of "
                            f"{', '.join(measure.WORKLOADS)}")
    counts = QUICK_REPLICAS if quick else measure.parse_replicas(replicas)
    options = measure.Options(workload=workload,
                              tasks=QUICK_TASKS if quick else tasks, replicas=counts,
                              work_ms=work_ms, payload_bytes=payload_bytes, seed=seed)
    if chart is not None:
        _matplotlib()
    ensure_ray(address)
    with progress("{task.description:<32}", hidden=as_json) as bar:
        step = bar.add_task("starting", total=None)
        report = measure.bench(options, store, on_step=lambda what, done, steps: (
            bar.update(step, description=what, completed=done, total=steps)))
    if chart is not None:
        _draw(report, chart)
        err.print(f"chart written to {chart}", highlight=False)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report)


def _print(report: measure.Report) -> None:
    o, c = report.options, report.cluster
    out.print(f"cluster: {c.nodes} node{'s' if c.nodes != 1 else ''}, {c.cpus:g} CPUs",
              highlight=False)
    out.print(f"workload: {o.workload}, {o.tasks:,} tasks, {o.work_ms:g} ms of work, "
              f"{o.payload_bytes:,} B payload", highlight=False)
    table = Table(box=None, caption="latency in ms; ratio: Baton's rate over plain Ray's",
                  caption_justify="left")
    for header in ("replicas", "baton a/s", "ray a/s", "ratio", "baton p50/95/99",
                   "ray p50/95/99", "events"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in report.rows:
        table.add_row(str(row.replicas), f"{row.baton.assignments_per_s:,.0f}",
                      f"{row.ray.assignments_per_s:,.0f}", f"{row.ratio:.2f}",
                      _percentiles(row.baton), _percentiles(row.ray), f"{row.events:,}")
    out.print(table)


def _percentiles(m: measure.Measured) -> str:
    return "/".join("-" if v is None else f"{v * 1000:,.0f}"
                    for v in (m.p50_s, m.p95_s, m.p99_s))


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInputError("--chart needs matplotlib: pip install 'baton[bench]'") from None
    return plt


def _draw(report: measure.Report, path: Path) -> None:
    plt = _matplotlib()
    counts = [row.replicas for row in report.rows]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(counts, [r.baton.assignments_per_s for r in report.rows], marker="o",
              label="Baton")
    axes.plot(counts, [r.ray.assignments_per_s for r in report.rows], marker="s",
              label="plain Ray")
    axes.set_xlabel("replicas")
    axes.set_ylabel("assignments/s")
    axes.set_xticks(counts)
    o, c = report.options, report.cluster
    axes.set_title(f"{o.workload}, {o.tasks:,} tasks; {c.nodes} node(s), {c.cpus:g} CPUs")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
