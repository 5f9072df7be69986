"""Real faults on real Ray: timeouts, a worker process dying, the coordinator killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

import baton
from baton import open_store
from baton.events.policy import DefaultPolicy
from baton.events.schema import (
    AssignmentDispatched,
    CoordinatorRestarted,
    FailureReported,
    ResultValidated,
    TimerFired,
    WorkerReplaced,
    WorkerStuck,
)
from baton.projections.verification import verify_log
from tests.actors import from_thread, two_nodes
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_a_handler_past_its_timeout_is_retried_and_its_late_result_ignored(
    store_url: str,
) -> None:
    """TimerFired after 1 s; attempt 2 succeeds; attempt 1's late result is ignored."""
    result = baton.run(ray_specs.timeout_spec(), store=store_url, run_id="timeout")
    assert result.ok and result.output == {"slow": {"attempt": 2}}
    with open_store(store_url) as store:
        log = store.read("timeout")
    [timer] = [e for e in log if isinstance(e, TimerFired)]
    assert timer.assignment_id == "slow#1"
    recovery = log[timer.seq]  # the decision right after the timer
    assert recovery.type == "RecoveryChosen" and recovery.reason.facts["kind"] == "timeout"
    assert verify_log(log, DefaultPolicy())[1] is None


def test_a_replica_stuck_past_a_timeout_is_replaced_and_the_run_goes_on(
    store_url: str, tmp_path: Path
) -> None:
    """One replica, hung for good on its first call, with two more assignments queued
    behind it: at the deadline the worker is replaced (a recorded decision), the timed-out
    attempt is retried on the new process, and the queued ones are sent again there,
    charged to no task. The run completes in well under a minute."""
    marker = tmp_path / "hung"
    started = time.monotonic()
    result = baton.run(ray_specs.hanging_spec(str(marker)), store=store_url, run_id="hung")
    took = time.monotonic() - started
    assert result.ok, result.error
    assert took < 30, f"the run took {took:.0f}s"
    hung = marker.read_text()  # the assignment that hung
    with open_store(store_url) as store:
        log = store.read("hung")
    [stuck] = [e for e in log if isinstance(e, WorkerStuck)]
    [replaced] = [e for e in log if isinstance(e, WorkerReplaced)]
    assert stuck.assignment_id == replaced.assignment_id == hung
    assert replaced.cause == stuck.seq
    assert replaced.reason.rule == "recover.replace_stuck_worker"
    [timer] = [e for e in log if isinstance(e, TimerFired)]
    assert timer.assignment_id == hung and timer.seq > replaced.seq
    dispatched = [e.assignment.id for e in log if isinstance(e, AssignmentDispatched)]
    hung_task = hung.split("#")[0]
    assert sorted(dispatched) == sorted(
        [f"{hung_task}#1", f"{hung_task}#2"] + [f"m{i}#1" for i in range(3)
                                                 if f"m{i}" != hung_task])
    assert not [e for e in log if isinstance(e, FailureReported)]


def test_a_worker_that_dies_holding_an_assignment_is_recovered(
    store_url: str, tmp_path: Path
) -> None:
    """The worker process exits mid-assignment: worker_lost, a retry, a completed run."""
    marker = tmp_path / "died"
    result = baton.run(ray_specs.fragile_spec(str(marker)), store=store_url, run_id="dies")
    assert marker.exists() and result.ok and len(result.output) == 6
    with open_store(store_url) as store:
        log = store.read("dies")
    lost = [e.failure for e in log if isinstance(e, FailureReported)]
    assert "f2#1" in {f.assignment_id for f in lost}
    assert {f.kind for f in lost} == {"worker_lost"}
    assert verify_log(log, DefaultPolicy())[1] is None


def test_an_input_that_kills_its_worker_takes_no_other_task_down_twice(
    store_url: str
) -> None:
    """Assignments travel in batches, so a worker killed by one input loses the others
    in its call too: each of those is lost once at most (its retry travels alone, and a
    first loss is free), and accepted; the poisoned task alone is given up."""
    result = baton.run(ray_specs.poison_spec(), store=store_url, run_id="poison")
    assert result.ok, result.error
    assert result.progress.calls < result.progress.dispatched  # batches were sent
    with open_store(store_url) as store:
        log = store.read("poison")
        state = store.state("poison")
    lost: dict[str, int] = {}
    for e in log:
        if isinstance(e, FailureReported) and e.failure.kind == "worker_lost":
            task = e.failure.assignment_id.split("#")[0]
            lost[task] = lost.get(task, 0) + 1
    assert lost.get("p30", 0) >= 2  # the poisoned task, tried until given up
    assert {t for t, n in lost.items() if t != "p30"}  # it took others down with it ...
    assert all(n == 1 for t, n in lost.items() if t != "p30")  # ... once each
    assert state.tasks["p30"].status == "abandoned"
    assert sum(1 for r in state.tasks.values() if r.status == "accepted") == 59


def test_timed_work_waiting_for_a_busy_replica_is_not_timed_out(store_url: str) -> None:
    """Twelve 0.25 s assignments with a 1 s timeout on one replica: together they take
    3 s, but each is timed from when it is sent, so none times out waiting its turn."""
    result = baton.run(ray_specs.queued_spec(), store=store_url, run_id="queued")
    assert result.ok, result.error
    with open_store(store_url) as store:
        log = store.read("queued")
    assert not [e for e in log if isinstance(e, TimerFired)]
    assert result.progress.calls == result.progress.dispatched == 12  # timed: one a call


def test_a_killed_coordinator_is_restarted_and_finishes_the_run(
    durable_store_url: str
) -> None:
    """Kill the coordinator mid-run: it restarts, every task is accepted exactly once,
    nothing is recorded twice, and the log replays to the same decisions (on SQLite and
    on PostgreSQL)."""
    store_url = durable_store_url
    killed: list[int] = []

    def kill_midway(progress: baton.actors.progress.RunProgress) -> None:
        if not killed and progress.accepted >= 5:
            coordinator = ray.get_actor("baton:crash", namespace="baton")
            ray.kill(coordinator, no_restart=False)
            killed.append(progress.accepted)

    spec = ray_specs.fragile_spec(marker="", tasks=30, sleep=0.1)
    result = baton.run(spec, store=store_url, run_id="crash", on_progress=kill_midway,
                       poll_s=0.05)
    assert killed and result.ok and len(result.output) == 30
    with open_store(store_url) as store:
        log = store.read("crash")
    assert [e.type for e in log].count("CoordinatorRestarted") == 1
    accepted = [e.task_id for e in log
                if isinstance(e, ResultValidated) and e.outcome == "accepted"]
    assert sorted(accepted) == sorted(f"f{i}" for i in range(30))  # each exactly once
    restart = next(e for e in log if isinstance(e, CoordinatorRestarted))
    redispatched = [e for e in log[restart.seq:] if isinstance(e, AssignmentDispatched)
                    and e.reason.rule == "restart.redispatch_same_attempt"]
    assert all(e.cause == restart.seq for e in redispatched)
    assert verify_log(log, DefaultPolicy())[1] is None


def test_removing_the_node_that_runs_the_workers_moves_the_work(store_url: str) -> None:
    """On a two-node cluster, the worker node goes away mid-run: its assignments are
    reported lost, the workers restart on a new node, and the run completes."""
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.actors.two_nodes", store_url], cwd=repo,
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(repo), "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith(two_nodes.MARKER)]
    ended = json.loads(line[len(two_nodes.MARKER):])
    assert ended["status"] == "completed" and ended["accepted"] == 16
    assert ended["removed_after"]
    with open_store(store_url) as store:
        log = store.read("two-nodes")
    lost = [e for e in log if isinstance(e, FailureReported)]
    assert lost and {e.failure.kind for e in lost} == {"worker_lost"}
    assert verify_log(log, DefaultPolicy())[1] is None


def test_a_local_ray_started_from_a_thread_survives_a_killed_coordinator(
    store_url: str, tmp_path: Path
) -> None:
    """baton.run in a threading.Thread starts a local Ray; SIGKILL its coordinator: the
    run completes, and that Ray is still alive after the thread ends (its processes were
    tied to the thread that started them)."""
    repo = Path(__file__).resolve().parents[2]
    ray_home = tempfile.mkdtemp(prefix="/tmp/bt")  # a Ray of its own, short socket paths
    done = subprocess.run(
        [sys.executable, "-m", "tests.actors.from_thread", store_url], cwd=repo,
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(repo), "RAY_ADDRESS": "", "RAY_TMPDIR": ray_home})
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith(from_thread.MARKER)]
    ended = json.loads(line[len(from_thread.MARKER):])
    assert ended == {"status": "completed", "killed": ended["killed"], "ray": "alive"}
    assert len(ended["killed"]) == 1
    with open_store(store_url) as store:
        log = store.read("from-thread")
    assert [e.type for e in log].count("CoordinatorRestarted") == 1
