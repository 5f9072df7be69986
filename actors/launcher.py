"""Launching a run: start or attach Ray, start the workers and the coordinator, wait.

The same call works on a laptop and on a cluster: with no address (and no
RAY_ADDRESS) it starts a quiet local Ray; with one, it attaches.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from baton.events.errors import (
    BadInputError,
    BadSpecError,
    BatonError,
    ClusterUnavailableError,
    PolicyError,
    RunInterrupted,
)
from baton.events.model import Task, require_run_id
from baton.events.schema import RunRequested
from baton.events.store import faults, masked_url, open_store, store_url
from baton.events.store.heartbeats import BEAT_EVERY_S, Heartbeat, this_process
from baton.events.store.sealing import KEY_ENV
from baton.events.tree import ParentLink

from . import reservation, worker
from .agents import prepared
from .cluster import (
    check_capacity,
    coordinator_alive,
    ensure_ray,
)
from .coordinator import Coordinator
from .handlers import Handler
from .outage import STORE_PATIENCE_S
from .pool import NAMESPACE, window, worker_name
from .progress import RunProgress, RunResult
from .spec import (
    Spec,
    absolute_ref,
    load_policy,
    load_spec,
    modules_from_files,
    policy_identity,
    require_handlers,
    schema_identities,
    schemas_from_files,
    schemas_of,
)
from .worker import DEFAULT_MAX_OUTPUT_BYTES, AsyncWorker, Worker

WORKERS_READY_TIMEOUT_S = 120.0
STOP_WAIT_S = 10.0  # for an interrupted run's coordinator to finish its turn


def new_run_id() -> str:
    """A fresh run id: the launch time and a short random suffix."""
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _start_workers(
    spec: Spec, run_id: str, max_output_bytes: int, detach: bool,
    waiting: Callable[[str], None],
) -> tuple[dict[str, list[str]], list[ActorHandle[Any]]]:
    """Start every handler's replicas, in the run's reservation once the cluster grants
    it (`waiting` is told meanwhile): their actor names by handler, and the actors.
    However this ends other than with the workers up (a handler that cannot start,
    Ctrl-C while the run is queued), what was started and reserved is let go."""
    remote_worker: Any = ray.remote(Worker)
    remote_async_worker: Any = ray.remote(AsyncWorker)
    launch = secrets.token_hex(3)
    names: dict[str, list[str]] = {}
    everyone: list[ActorHandle[Any]] = []

    def let_go() -> None:
        _stop(everyone)
        reservation.release(run_id)

    try:
        group = reservation.reserve(spec.handlers, run_id, detach=detach, waiting=waiting)
        for h in spec.handlers:
            # Ray restarts a dead worker in place (the pool keeps its size and its
            # handles); calls it held fail, and the coordinator records them as
            # worker_lost.
            # An async worker holds a call per assignment it may run at once, one more
            # queued behind them, and a probe.
            options: dict[str, Any] = {"num_cpus": h.num_cpus,
                                       "max_concurrency": window(h.concurrency) + 1
                                       if h.is_async else 1,
                                       "max_restarts": -1, "max_task_retries": 0}
            if h.resources:
                options["resources"] = h.resources
            if detach:
                options["lifetime"] = "detached"
            names[h.name] = [worker_name(run_id, launch, h.name, i)
                             for i in range(h.replicas)]
            hosting = remote_async_worker if h.is_async else remote_worker
            everyone += [
                hosting.options(**options, **_beside_the_store(h),
                                **reservation.placed(group, spec.handlers, h, replica),
                                name=name, namespace=NAMESPACE).remote(
                    h, max_output_bytes, replica, worker.RETURN_BUDGET_BYTES)
                for replica, name in enumerate(names[h.name])
            ]
        ray.get([w.pid.remote() for w in everyone], timeout=WORKERS_READY_TIMEOUT_S)
    except GetTimeoutError:
        let_go()
        raise ClusterUnavailableError(
            f"worker actors did not start within {WORKERS_READY_TIMEOUT_S:g}s; "
            "is the cluster busy?"
        ) from None
    except (RayTaskError, RayActorError) as error:
        let_go()
        # The handler's own exception is the last line of what Ray says.
        said = [line for line in str(error).splitlines() if line.strip()]
        raise BadSpecError(f"a handler failed to start: {said[-1] if said else error}") from None
    except BaseException:
        let_go()
        raise
    return names, everyone


def _stop(actors: list[ActorHandle[Any]]) -> None:
    for actor in actors:
        ray.kill(actor)


def run(
    spec: Spec,
    store: str | None = None,
    address: str | None = None,
    *,
    run_id: str | None = None,
    detach: bool = False,
    on_progress: Callable[[RunProgress], None] | None = None,
    poll_s: float = 0.25,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    store_patience_s: float = STORE_PATIENCE_S,
    model: str | None = None,
    parent: ParentLink | None = None,
) -> RunResult:
    """Run `spec` to its end on Ray and return how it ended.

    Everything wrong with the spec, the store URL or the run id raises before anything
    is dispatched (BadSpecError; BadStoreURLError; BadInputError for a run id already
    taken; each a BadInputError); an unreachable or too-small cluster raises
    ClusterUnavailableError. `on_progress` is called with the run's RunProgress while it
    runs.
    With `detach`, the run is left to a detached coordinator (it outlives this process
    and waits for people's answers) and this returns at once with status `running`.
    A store that fails for a while (a server restarting) is waited for, for up to
    `store_patience_s`; a fault that does not pass, or lasts longer, raises StoreFaultError.
    `model` (else $BATON_MODEL) answers for every agent of the spec (`baton.agent`);
    ``"test"`` is a dry run on pydantic-ai's TestModel, with no key and no network.
    `parent` makes it a child run, answering that assignment of another (a subrun).
    """
    spec.validate()
    url = store_url(store)
    run_id = run_id or new_run_id()
    require_run_id(run_id)
    with open_store(url) as log:
        if log.last_seq(run_id):
            raise BadInputError(f"run {run_id!r} already exists in {log.shown_url}; choose another "
                                "run id")
    policy, policy_digest = policy_identity(spec.policy)
    request = RunRequested(run_id=run_id, seq=1, recorded_at=time.time(), goal=spec.goal,
                           tasks=tuple(spec.tasks), handlers=spec.handler_infos(),
                           policy=policy, policy_digest=policy_digest,
                           spec=absolute_ref(spec.source) if spec.source else "",
                           schemas=schema_identities(schemas_of(spec.tasks)),
                           budget=spec.budget, parent=parent)
    return _launch(spec, url, address, run_id, request, detach, on_progress, poll_s,
                   max_output_bytes, store_patience_s=store_patience_s, model=model)


def resume(
    run_id: str,
    store: str | None = None,
    address: str | None = None,
    *,
    spec: Spec | None = None,
    detach: bool = False,
    on_progress: Callable[[RunProgress], None] | None = None,
    poll_s: float = 0.25,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    store_patience_s: float = STORE_PATIENCE_S,
    model: str | None = None,
) -> RunResult:
    """Continue `run_id` from its log with a new coordinator and workers (after its
    driver died, or once people have answered a run that ended `waiting`). The spec is
    the one the run was started from, unless `spec` is given."""
    url = store_url(store)
    with open_store(url) as log:
        log.require_run(run_id)
        state = log.state(run_id)
    if state.status != "running":
        raise BadInputError(f"run {run_id!r} has already {state.status}; there is nothing to "
                            "resume")
    if spec is None:
        if not state.spec:
            raise BadInputError(f"run {run_id!r} was started from Python, so its spec is not "
                                "recorded; pass the spec to resume it")
        spec = load_spec(state.spec)
        if state.policy_ref:  # a fork decided by another policy than its spec's
            spec.policy = load_policy(state.policy_ref)
    spec.validate()
    require_handlers(spec, state.handlers.values(), run_id)
    ensure_ray(address)
    if coordinator_alive(run_id):
        raise BadInputError(f"run {run_id!r} has a live coordinator; `baton wait {run_id}` "
                            "follows it")
    # Tasks a policy added while the run went (expansions) name their output schemas
    # too; the new coordinator is handed every one it may judge.
    planned = [record.task for record in state.tasks.values()]
    return _launch(spec, url, address, run_id, None, detach, on_progress, poll_s,
                   max_output_bytes, planned, store_patience_s=store_patience_s,
                   model=model)


def _launch(
    spec: Spec,
    url: str,
    address: str | None,
    run_id: str,
    request: RunRequested | None,
    detach: bool,
    on_progress: Callable[[RunProgress], None] | None,
    poll_s: float,
    max_output_bytes: int,
    planned: Sequence[Task] = (),
    *,
    store_patience_s: float = STORE_PATIENCE_S,
    model: str | None = None,
) -> RunResult:
    schemas = schemas_of((*spec.tasks, *planned))
    # Its agents: which model answers, and every output schema they may be asked for.
    spec = prepared(spec, model, {**schemas_from_files(), **schemas})
    spec = replace(spec, handlers=[  # its subruns: the run their children belong to
        replace(h, target=h.target.within(run_id, url, os.environ.get(KEY_ENV)))
        if getattr(h.target, "is_subrun", False) else h for h in spec.handlers])
    ensure_ray(address)
    for module in modules_from_files():
        ray.cloudpickle.register_pickle_by_value(module)
    check_capacity(spec)
    workers, handles = _start_workers(spec, run_id, max_output_bytes, detach,
                                      _waiting_reported(run_id, url, on_progress))
    # A coordinator that dies is restarted by Ray and its drive() call retried: the new
    # one folds the log, records CoordinatorRestarted and re-dispatches what was in flight.
    # The request goes to begin(), not the constructor: see Coordinator.
    options: dict[str, Any] = {"name": f"baton:{run_id}", "namespace": NAMESPACE,
                               "num_cpus": 0, "max_concurrency": 2,
                               "max_restarts": -1, "max_task_retries": -1}
    if detach:
        options["lifetime"] = "detached"
    if url.startswith("sqlite:"):
        # The SQLite file is on this machine: keep the coordinator beside it.
        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    remote_coordinator: Any = ray.remote(Coordinator)
    # The coordinator seals what it records with the launcher's key: a constructor
    # argument, kept by Ray to restart it, and shown in no listing of actors as a runtime
    # environment would be. Workers never see the store, nor the key (but a subrun's, which
    # starts child runs in the store, sealed with it).
    coordinator = remote_coordinator.options(**options).remote(
        run_id, url, spec.policy, workers, schemas, detach, os.environ.get(KEY_ENV),
        store_patience_s, {h.name: h.concurrency for h in spec.handlers},
        {h.name: h.rate_limit for h in spec.handlers if h.rate_limit is not None})
    actors = [coordinator, *handles]
    if detach:
        try:
            _answer(coordinator.begin.remote(request))  # the run is its own now
        except BaseException:
            _stop(actors)
            reservation.release(run_id)
            raise
        return RunResult(run_id=run_id, status="running", output=None, error="",
                         progress=RunProgress(run_id=run_id, status="running"),
                         store=masked_url(url))
    done = None
    try:
        _answer(coordinator.begin.remote(request))
        done = coordinator.drive.remote()
        while not ray.wait([done], timeout=poll_s)[0]:
            if on_progress is not None:
                try:
                    on_progress(RunProgress(**ray.get(coordinator.progress.remote())))
                except RayActorError:
                    continue  # the coordinator is restarting; its run goes on
        final = RunProgress(**_answer(done, run_id))
    except KeyboardInterrupt:
        raise _interrupted(coordinator, done, handles, url, run_id) from None
    finally:
        _stop(actors)
        reservation.release(run_id)
    return RunResult(run_id=run_id, status=final.status, output=final.output,
                     error=final.error, progress=final, store=masked_url(url))


def _beside_the_store(h: Handler) -> dict[str, Any]:
    """Where a subrun's replicas go: they open the store to start and watch their
    children, so beside a SQLite file they stay on this node (as coordinators do)."""
    if not getattr(h.target, "is_subrun", False) or reservation.bundle(h) or \
            not h.target.context.store_url.startswith("sqlite:"):
        return {}
    node = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def _waiting_reported(run_id: str, url: str,
                      on_progress: Callable[[RunProgress], None] | None) -> Callable[[str], None]:
    """What to do while a run waits for the cluster to grant its workers: tell the
    progress callback, and beat for the run (phase `queued`) so `baton status` says so."""
    due = [0.0]
    who = f"its launcher, {this_process()}"

    def waiting(what: str) -> None:
        if on_progress is not None:
            on_progress(RunProgress(run_id=run_id, status="queued", waiting_for=what))
        if time.monotonic() < due[0]:
            return
        due[0] = time.monotonic() + BEAT_EVERY_S
        with faults.ignored(), open_store(url) as log:
            log.beat(Heartbeat(run_id, time.time(), "queued", 0, 0, who))

    return waiting


def _interrupted(coordinator: ActorHandle[Any], done: ray.ObjectRef[Any] | None,
                 workers: list[ActorHandle[Any]], url: str, run_id: str) -> RunInterrupted:
    """Stop a run whose driver was interrupted: its coordinator first (it finishes the
    turn under way and records nothing more), and only then its workers, so the log
    records nothing of their going (no worker_lost for work that was merely in flight).
    A second Ctrl-C meanwhile is ignored."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    recorded = "an unknown seq (its store cannot be read now)"
    try:
        coordinator.stop.remote()
        if done is None or not ray.wait([done], timeout=STOP_WAIT_S)[0]:
            ray.kill(coordinator, no_restart=True)  # stuck: it records nothing once dead
            with suppress(RayActorError, GetTimeoutError):
                ray.get(coordinator.pid.remote(), timeout=STOP_WAIT_S)
        _stop(workers)
        with suppress(BatonError), open_store(url) as log:
            recorded = f"seq {log.last_seq(run_id)}"
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return RunInterrupted(f"interrupted: run {run_id} is recorded up to {recorded}; "
                          f"`baton resume {run_id}` continues it, `baton cancel {run_id}` "
                          "ends it")


def _answer(ref: ray.ObjectRef[Any], run_id: str = "") -> Any:
    """What a coordinator call returned; a BatonError it raised reaches the caller as
    itself (its message says what to fix), without Ray's traceback around it. A rule of
    the policy that broke its contract stopped the run's driving: the message says how
    to go on once the policy is fixed."""
    try:
        return ray.get(ref)
    except RayTaskError as error:
        if isinstance(error.cause, PolicyError) and run_id:
            raise PolicyError(f"{error.cause}. The run is recorded up to the turn before; "
                              f"fix the policy, then `baton resume {run_id}`") from None
        if isinstance(error.cause, BatonError):
            raise error.cause from None
        raise error.as_instanceof_cause() from None
