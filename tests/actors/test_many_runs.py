"""Several runs at once on one Ray cluster, each with its own coordinator and workers,
all writing to one PostgreSQL database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import baton
from baton import Spec, Task, open_store
from baton.actors.progress import RunProgress, RunResult
from baton.cli.watching import status_of
from baton.events.schema import Event, RunRequested, Stimulus
from baton.replay import verify
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

RUNS = 4
TASKS = 24


def small_echo_spec(tasks: int) -> Spec:
    # One replica of a quarter CPU, so four runs' workers fit on the 2-CPU test cluster
    # beside the Ray workers of other tests.
    echo = baton.handler(capabilities=["echo"], replicas=1, num_cpus=0.25,
                         name="echo")(ray_specs.echo.target)
    # Each run lasts a few seconds: longer than launching four takes on a busy machine,
    # so they are seen to overlap.
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i, "sleep": 0.1})
            for i in range(tasks)]
    return Spec(goal=f"echo x{tasks}", tasks=plan, handlers=[echo])


def requested_at(log: list[Event]) -> float:
    first = log[0]
    assert isinstance(first, RunRequested) and first.recorded_at is not None
    return first.recorded_at


def last_stimulus_at(log: list[Event]) -> float:
    # The run's end is a decision, which carries no clock; the stimulus it answered does.
    return max(e.recorded_at for e in log if isinstance(e, Stimulus) and e.recorded_at)


def test_four_runs_at_once_share_one_postgres_store_and_each_completes_and_replays(
    postgres_url: str,
) -> None:
    """Four concurrent runs on one PostgreSQL store all complete, overlap and replay."""
    run_ids = [f"many-{n}" for n in range(RUNS)]
    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        futures = [pool.submit(baton.run, small_echo_spec(TASKS), store=postgres_url,
                               run_id=run_id) for run_id in run_ids]
        results: list[RunResult] = [f.result() for f in futures]

    for run_id, result in zip(run_ids, results, strict=True):
        assert result.run_id == run_id
        assert result.ok, f"{run_id} ended {result.status}: {result.error}"
        assert result.progress.accepted == TASKS and result.progress.dispatched == TASKS
        assert sorted(result.output) == sorted(f"t{i}" for i in range(TASKS))

    with open_store(postgres_url) as store:
        listed = {info.run_id: info for info in store.runs()}
        assert set(listed) == set(run_ids)
        assert all(listed[r].status == "completed" for r in run_ids)
        logs = {run_id: store.read(run_id) for run_id in run_ids}
        for run_id in run_ids:
            assert logs[run_id][-1].type == "RunCompleted", run_id
            report = verify(store, run_id)
            assert report.reproduced, report.divergence

    # Every run was requested before any run took in its last result: the four were
    # going at the same time, not one after another.
    last_request = max(requested_at(log) for log in logs.values())
    first_finish = min(last_stimulus_at(log) for log in logs.values())
    assert last_request < first_finish, {r: (requested_at(log), last_stimulus_at(log))
                                         for r, log in logs.items()}


def test_more_runs_than_the_cluster_holds_at_once_take_turns_and_all_complete(
    store_url: str,
) -> None:
    """Five runs, each of two replicas of half a CPU, at once on the 2-CPU cluster: at
    most two can hold their workers together. The others wait whole, say so (progress
    and `baton status`: queued), and every run completes; none fails for waiting."""
    spec = Spec(goal="take turns", handlers=[ray_specs.echo], tasks=[
        Task(id=f"t{i}", capability="echo", inputs={"i": i, "sleep": 0.1})
        for i in range(16)])
    queued: dict[str, list[str]] = {}
    statuses: dict[str, str] = {}

    def watch(progress: RunProgress) -> None:
        if not progress.waiting_for:
            return
        seen = queued.setdefault(progress.run_id, [])
        seen.append(progress.waiting_for)
        if len(seen) == 2:  # its launcher has beaten for it by now
            statuses[progress.run_id] = status_of(progress.run_id, store_url)["status"]

    run_ids = [f"turn-{n}" for n in range(5)]
    with ThreadPoolExecutor(max_workers=len(run_ids)) as pool:
        futures = [pool.submit(baton.run, spec, store=store_url, run_id=run_id,
                               on_progress=watch) for run_id in run_ids]
        results = [f.result(timeout=600) for f in futures]
    assert all(r.ok for r in results), [(r.run_id, r.status, r.error) for r in results]
    assert queued, "no run waited: the test did not crowd the cluster"
    assert all("1 CPU for 2 workers" in what for seen in queued.values() for what in seen)
    assert set(statuses.values()) == {"queued"}, statuses
