"""The coordinator: one Ray actor per run that decides, records, then acts.

Each turn it takes the stimuli that have arrived (worker results and failures, in the
order they finished), folds each into the run's state and decides what follows, appends
the turn's stimuli and decisions to the log in one transaction, and only then performs
the effects — sending the dispatched assignments to worker actors, a batch a call
(write-ahead: invariant 3). Sequence numbers are assigned here and nowhere else. No
handler code runs in this process (invariant 1): it holds worker handles, never handlers.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from collections.abc import Sequence
from typing import Any

import ray
from pydantic import BaseModel
from ray.exceptions import RayActorError, RayError

from baton.events.decider import decide_in_place
from baton.events.model import Assignment, Failure, Result
from baton.events.policy import Policy
from baton.events.schema import (
    AssignmentDispatched,
    CoordinatorRestarted,
    Envelope,
    RunRequested,
    WorkerReplaced,
)
from baton.events.store import faults, masked_url, open_store
from baton.events.store.heartbeats import BEAT_EVERY_S, Heartbeat, this_process
from baton.events.store.sealing import Sealer

from . import cluster, inbox, reservation
from .deadlines import Deadlines
from .outage import STORE_PATIENCE_S, Patience
from .pool import Pool, Replica
from .progress import RunProgress
from .ratelimit import RateLimit, throttles
from .runstats import RunStats
from .sender import Sender
from .spec import ImportedSchemas
from .stimuli import (
    StimulusMaker,
    budget_due_in,
    budget_timer,
    from_inbox,
    stimulus_for,
    stuck_worker,
    timer_for,
)

INBOX_POLL_S = 1.0
RESTART_GRACE_S = 60.0  # how long timed work waits to be sent, with no replica up, at most


class Coordinator:
    """The coordinator of one run (wrapped with ray.remote by the launcher).

    `begin` records a fresh run's request; `drive` then holds one thread for the whole
    run, and the actor gets a second so `progress` can be read meanwhile (it only reads
    counters). Its constructor takes only small values, and its workers by name: Ray
    cannot restart an actor whose constructor arguments lived in the object store
    (ray#53727), and actor handles and large values are passed that way."""

    def __init__(
        self,
        run_id: str,
        store_url: str,
        policy: Policy,
        workers: dict[str, Sequence[str]],
        schemas: dict[str, type[BaseModel]] | None = None,
        detached: bool = False,
        sealing_key: str | None = None,
        store_patience_s: float = STORE_PATIENCE_S,
        concurrency: dict[str, int] | None = None,
        rate_limits: dict[str, RateLimit] | None = None,
    ):
        self.run_id = run_id
        # For the tasks that reach it without their class (read back from the log, after
        # a restart): the spec's, and any other importable by its topic.
        self.schemas = ImportedSchemas(schemas)
        # A store that is down while this actor starts (Ray restarting it) is waited for.
        self.patience = Patience(masked_url(store_url), run_id, store_patience_s)
        sealer = Sealer(sealing_key) if sealing_key else None
        self.store = self.patience.call(lambda: open_store(store_url, sealer=sealer), 0)
        self.policy = policy
        self.pool = Pool.named(workers, concurrency)
        self.state = self.patience.call(lambda: self.store.state(run_id), 0)
        self.resumed = self.state.seq > 0  # the log was there before this actor
        # Dispatched (and recorded), not yet sent, and the calls out to workers.
        self.sender = Sender(self.pool, lambda worker, batch: worker.run.remote(batch),
                             throttles(rate_limits, self.store if self.resumed else None, run_id))
        self.deadlines = Deadlines()  # on the monotonic clock
        self.inbox_due = 0.0  # monotonic time of the next look at the inbox
        self.started = time.monotonic()
        self.stats = RunStats()
        self.detached = detached
        self.driving: threading.Thread | None = None
        self.beat_due = 0.0  # monotonic time of the next heartbeat
        self.stopping = False  # asked to stop driving (its driver was interrupted)
        self.who = this_process()
        if self.state.seq:  # a run taken up again: its folded state lives as long as it
            _settled()
            if detached:  # restarted by Ray: take the run up again
                self._drive_in_background()

    # --- the loop ----------------------------------------------------------------------

    def begin(self, request: RunRequested | None = None) -> int:
        """Record a fresh run's request and its first decisions (a run with a log already
        ignores it); a detached coordinator then drives the run on its own. Returns this
        process's id."""
        if self.state.seq == 0:
            if request is None:
                raise ValueError(f"run {self.run_id!r} has no log and no request to start it")
            self._beat(force=True)  # so no reader finds its log with no one beating for it
            # Stamped as it is recorded, after the workers started: the first dispatches
            # take its time, and their latency should not count the cluster's start-up.
            stamped = request.model_copy(update={"recorded_at": time.time()})
            self._turn([lambda seq: stamped])
            self._beat(force=True)
            _settled()
        if self.detached:
            self._drive_in_background()
        return os.getpid()

    def _drive_in_background(self) -> None:
        # Nobody will call drive(): the run is this actor's own business now, and it
        # waits for people's answers rather than returning when only they can help.
        if self.driving is None:
            self.driving = threading.Thread(target=self._drive_detached, name="baton-drive",
                                            daemon=True)
            self.driving.start()

    def _drive_detached(self) -> None:
        try:
            self.drive(wait_for_people=True)
        finally:
            # The run is over: release its workers, their reservation and this actor.
            for handles in self.pool.workers.values():
                for handle in handles:
                    ray.kill(handle)
            reservation.release(self.run_id)
            ray.kill(ray.get_runtime_context().current_actor)

    def drive(self, wait_for_people: bool = False) -> dict[str, Any]:
        """Run until the run ends, or only people can move it on; its final progress.

        A run whose request `begin` just recorded goes straight on. A run that had a log
        before this actor started (it was restarted, or the run is resumed) records
        CoordinatorRestarted, and the decider re-dispatches what was in flight under the
        same assignment ids."""
        if self.state.seq == 0:
            raise ValueError(f"run {self.run_id!r} has no log; call begin() with its request")
        if self.resumed and self.state.status == "running":
            note = f"pid {os.getpid()} took the run up at seq {self.state.seq}"
            self._turn([lambda seq: CoordinatorRestarted(run_id=self.run_id, seq=seq,
                                                         recorded_at=time.time(), note=note)])
        self._beat(force=True)
        self._take_up_inbox()
        while self.state.status == "running" and not self.stopping and (
            self._awaiting() or (wait_for_people and self.state.waiting_on_people)
        ):
            refs = list(self.sender.pending) + self.pool.probe_refs()
            # Everything finished by now joins this turn, in the order Ray reports it.
            ready = ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []
            if not ready and refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=self._next_wake())
            elif not ready:
                time.sleep(self._next_wake())
            for ref in [r for r in ready if r in self.pool.probes]:
                self.pool.probe_returned(ref)
            ready = [r for r in ready if r in self.sender.pending]
            try:
                outcomes = ray.get(ready)
            except RayError:  # one of them failed: fetch each alone to tell which
                outcomes = [None] * len(ready)
            makers: list[StimulusMaker] = []
            for ref, outcome in zip(ready, outcomes, strict=True):
                makers += self._arrived(ref, outcome)
            makers += self._expired_timers() + budget_timer(self.state)
            if makers:
                self._turn(makers)
            self._send()  # to replicas with room again, or back from the dead
            self._take_up_inbox()
            self._beat()
        inbox.cancel_orphans(self.store, self.state, cluster.coordinator_alive)  # if failed
        self._beat(force=True, phase="stopped" if self.stopping else None)
        return self.progress_now().as_dict()

    def stop(self) -> None:
        """Stop driving once the turn under way is recorded and its effects done; what
        is in flight stays so, for `baton resume`. Callable while `drive` runs."""
        self.stopping = True

    def _beat(self, force: bool = False, phase: str | None = None) -> None:
        """Tell readers this run has a live coordinator, and how it stands: every
        BEAT_EVERY_S, and when `force`d (starting, stopping). A beat the store refuses
        is skipped; while the store is out, none is tried."""
        now = time.monotonic()
        if (now < self.beat_due and not force) or self.patience.outage is not None:
            return
        self.beat_due = now + BEAT_EVERY_S
        s = self.state
        with faults.ignored():
            self.store.beat(Heartbeat(self.run_id, time.time(),
                                      phase or (s.phase if s.seq else "running"),
                                      len(s.tasks), s.accepted, self.who))

    def _take_up_inbox(self) -> None:
        """Record what people sent since the last look (answers, cancels) and decide.
        Looks at most once per INBOX_POLL_S: a busy run takes many turns a second."""
        now = time.monotonic()
        if now < self.inbox_due:
            return
        self.inbox_due = now + INBOX_POLL_S
        entries = self.patience.call(
            lambda: inbox.pending(self.store, self.run_id, self.state.inbox_seen),
            self.state.seq)
        if entries and self.state.status == "running":
            self._turn([from_inbox(self.run_id, entry) for entry in entries])

    def _awaiting(self) -> bool:
        """Is anything still coming that the decider cares about? (A late result for a
        superseded attempt is recorded if it comes, but is not waited for.)"""
        return self.sender.carries(self.state.in_flight)

    def _next_wake(self) -> float:
        """Seconds until the next timer, probe or look at the inbox is due."""
        waits = [INBOX_POLL_S, self.pool.next_probe_in(), self.sender.next_send_in(),
                 budget_due_in(self.state, time.time())]
        due = self.deadlines.next_at()
        if due is not None:
            waits.append(max(0.0, due - time.monotonic()))
        return min(w for w in waits if w is not None)

    def _expired_timers(self) -> list[StimulusMaker]:
        """TimerFired for each current attempt whose deadline has passed. A worker still
        running a call past its deadline (this attempt's, or an earlier one's that timed
        out already) is stuck: WorkerStuck first, so the replacement happens before the
        retry is sent; attempts queued behind the stuck call get no timer: they are sent
        again, to the replacement, with time of their own. An attempt not yet sent times
        out only when no replica of its handler could take it (every one down or stuck)
        for its time and the grace after it; while one is up, the wait is this queue's."""
        expired = [aid for aid in self.deadlines.passed(time.monotonic())
                   if aid in self.state.in_flight]
        if not expired:
            return []
        running = self.sender.running()
        late = self.deadlines.overdue.union(expired)
        stuck: dict[Replica, str] = {}
        for busy, calls in running.items():
            for call, ref in calls:
                if late.intersection(call.ids) and not ray.wait([ref], timeout=0)[0]:
                    stuck[busy] = next(aid for aid in call.ids if aid in late)
                    break
        fired = [stuck_worker(self.run_id, aid, replica) for replica, aid in stuck.items()]
        held_up = self.pool.stuck.union(stuck, self.pool.down)
        for assignment_id in expired:
            replica = self.sender.replica_of(assignment_id)
            if replica in stuck and not any(assignment_id in call.ids
                                            for call, _ in running[replica]):
                continue  # queued behind the stuck call: re-sent when it is replaced
            if replica is None and self._waiting_its_turn(held_up, assignment_id):
                continue
            if replica is not None:
                self.deadlines.ran_late(assignment_id)
                if replica not in stuck:
                    self.pool.timed_out(replica)
            fired.append(timer_for(self.run_id, assignment_id))
        return fired

    def _waiting_its_turn(self, held_up: set[Replica], assignment_id: str) -> bool:
        """Is this unsent assignment only waiting for a replica that is up to have room?
        Then its time has not started: its clock is set again, for when it is sent."""
        assignment = self.state.tasks[self.state.in_flight[assignment_id]].assignment
        assert assignment is not None
        replicas = range(len(self.pool.workers[assignment.handler]))
        if all((assignment.handler, i) in held_up for i in replicas):
            return False
        self._clock_from_send(assignment)
        return True

    def _arrived(
        self, ref: ray.ObjectRef[Any], outcomes: list[Result | Failure] | None
    ) -> list[StimulusMaker]:
        call = self.sender.answered(ref)
        self.deadlines.returned(call.ids)
        handler, index = call.replica
        try:
            if outcomes is None:
                outcomes = ray.get(ref)
        except RayActorError as error:
            self.pool.lost(call.replica)
            outcomes = [Failure(assignment_id=aid, kind="worker_lost",
                                error_type=type(error).__name__,
                                message=f"worker {handler}[{index}] was lost: {error}")
                        for aid in call.ids]
        except RayError as error:
            outcomes = [Failure(assignment_id=aid, kind="error",
                                error_type=type(error).__name__, message=str(error))
                        for aid in call.ids]
        else:
            first, last = outcomes[0].execution, outcomes[-1].execution
            if first is not None and last is not None:
                self.pool.ran(handler, (last.ended_at - first.started_at) / len(outcomes))
            if len(outcomes) < len(call.ids):
                self._send_again(handler, call.ids[len(outcomes):])
        return [stimulus_for(self.run_id, outcome) for outcome in outcomes]

    def _send_again(self, handler: str, ids: Sequence[str]) -> None:
        """Put assignments a call carried but did not run (its worker's return was full)
        back at the front of their handler's queue, as they were."""
        self.sender.queue_first(handler, self._current(ids))

    def _current(self, ids: Sequence[str]) -> list[Assignment]:
        """The assignments of `ids` that are still their task's attempt in flight."""
        return [a for aid in ids if (task_id := self.state.in_flight.get(aid))
                and (a := self.state.tasks[task_id].assignment) is not None and a.id == aid]

    def _turn(self, makers: Sequence[StimulusMaker]) -> None:
        expected = self.state.seq
        events: list[Envelope] = []
        recorded: list[bytes] = []
        started = time.perf_counter()
        for make in makers:
            for event, data in decide_in_place(self.state, make(self.state.seq + 1), self.policy,
                                               schemas=self.schemas):
                events.append(event)
                recorded.append(data)
        decided_at = time.perf_counter()
        # Write-ahead: the turn is durable before any of its effects happen (a store
        # that fails for a while is waited out).
        self.patience.append(self.store, events, expected, recorded)
        self.stats.took(events, decided_at - started, time.perf_counter() - decided_at)
        for event in events:
            if isinstance(event, AssignmentDispatched):
                self._dispatch(event)
            elif isinstance(event, WorkerReplaced):
                self._replace(event)
        self._send()
        with faults.ignored():  # a cache: one refused is taken at a later turn
            if self.store.keep_state(self.state):
                _settled()

    def _dispatch(self, decision: AssignmentDispatched) -> None:
        """Queue the assignment to be sent. Its time starts when it is: the wait for a
        replica with room is this queue's, not the attempt's."""
        assignment = decision.assignment
        self._clock_from_send(assignment)
        self.sender.queue(assignment)

    def _start_clock(self, assignment: Assignment, grace_s: float = 0.0) -> None:
        assert assignment.timeout_s is not None
        self.deadlines.set(assignment.id, time.monotonic() + assignment.timeout_s + grace_s)

    def _clock_from_send(self, assignment: Assignment) -> None:
        """Time a timed assignment from when it is sent (`_send` starts its clock then);
        should no replica be able to take it meanwhile, let it time out anyway, a grace
        period after its time."""
        if assignment.timeout_s is not None:
            self._start_clock(assignment, RESTART_GRACE_S)

    def _send(self) -> None:
        """Send what waits to the replicas with room; a timed assignment's time starts
        as it goes out."""
        self.sender.send_waiting(self.state.in_flight, self._start_clock)

    def _replace(self, decision: WorkerReplaced) -> None:
        """Kill the worker stuck on the decision's assignment; Ray starts it again. Its
        calls are dropped: the stuck one (already timed out) and the one queued behind it,
        whose assignments still in flight wait to be sent again, to whichever replica is
        up, as the same assignments, ahead of what was dispatched after them."""
        replica = self.sender.replica_of(decision.assignment_id)
        if replica is None:
            return  # it answered, or this process never sent it (a restarted coordinator)
        dropped = self.sender.dropped(replica)
        self.deadlines.returned(dropped)
        again = self._current(dropped)
        for assignment in again:
            self._clock_from_send(assignment)
        handler, index = replica
        self.sender.queue_first(handler, again)
        ray.kill(self.pool.workers[handler][index], no_restart=False)
        self.pool.replaced(replica)

    # --- reading -----------------------------------------------------------------------

    def progress_now(self) -> RunProgress:
        s = self.state
        status: str = s.phase  # (a stale call may still be out while waiting: no matter)
        abandoned = sum(1 for r in s.tasks.values() if r.status == "abandoned") if (
            status != "running") else 0
        return RunProgress(
            run_id=self.run_id,
            status=status,
            tasks=len(s.tasks),
            accepted=s.accepted,
            abandoned=abandoned,
            in_flight=len(s.in_flight),
            escalations=len(s.escalations),
            events=s.seq,
            coordinator_pid=os.getpid(),
            elapsed_s=time.monotonic() - self.started,
            output=s.output if status == "completed" else None,
            error=s.error,
            store_down_since=outage.since if (outage := self.patience.outage) else 0.0,
            store_error=outage.cause if outage else "",
            calls=self.sender.calls,
            **self.stats.progress_fields(),
        )

    def progress(self) -> dict[str, Any]:
        """The run's progress now (callable while `drive` runs)."""
        progress = self.progress_now()
        progress.output = None  # the final output travels once, with drive()'s answer
        return progress.as_dict()

    def pid(self) -> int:
        """The coordinator's process id (tests prove handlers never run here)."""
        return os.getpid()

    def peak_memory_mb(self) -> float:
        """The coordinator process's peak resident memory, in MB."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settled() -> None:
    """Put what lives now (the plan, the state) out of the collector's sight, so its full
    collections cost in proportion to what is new since, not to the run. Garbage is
    collected first: a cycle frozen would never be."""
    gc.collect()
    gc.freeze()
