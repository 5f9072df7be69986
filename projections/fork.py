"""Fork: a new run that begins as a prefix of another run's log, then goes its own way.

The prefix is re-decided under the parent's own recorded policy, with the new run's id,
so the fork's log is a log like any other (its digests chain, its escalation ids name
it) and a parent whose log does not replay is refused rather than copied. A RunForked
stimulus follows, recording where the fork came from and which spec and policy decide
from there; `baton fork` then resumes the new run live on Ray through the launcher.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from baton.actors.launcher import RUN_ID
from baton.actors.spec import Spec, absolute_ref, load_policy, load_spec, policy_identity
from baton.events.decider import RunState, turn
from baton.events.errors import BadLog, BadSpec, UnknownRun
from baton.events.policy import Policy
from baton.events.schema import (
    CancelRequested,
    Decision,
    Envelope,
    HumanAnswered,
    RunForked,
    RunRequested,
    Stimulus,
)
from baton.events.store import EventStore

from .log import turns
from .replay import recorded_policy


@dataclass(frozen=True)
class Fork:
    """The new run: its id, the seq it was copied up to, and what decides it now."""

    run_id: str
    parent_run_id: str
    at: int
    events: int  # in the new run's log, RunForked and its decisions included
    spec: Spec
    policy: str


def fork(
    store: EventStore,
    run_id: str,
    at: int,
    *,
    new_run_id: str | None = None,
    spec: str | None = None,
    policy: str | None = None,
    note: str = "",
) -> Fork:
    """Record a new run whose log is `run_id`'s up to seq `at`, then a RunForked.

    `at` must end a turn (the event after it is a stimulus, or there is none) while the
    run was still going. The fork runs with `spec` (default: the parent's), decided by
    `policy` (``module:Name`` or ``file.py:Name``; default: the spec's policy); the
    spec's handlers must be the run's. Returns the Fork; resume it to run it live."""
    last = store.last_seq(run_id)
    if not last:
        raise UnknownRun(run_id, store.url)
    new_run_id = new_run_id or f"{run_id}-fork-{at}"
    if not RUN_ID.match(new_run_id):
        raise BadSpec(f"run id {new_run_id!r} must be letters, digits, '.', '_' or '-' "
                      "(at most 100), starting with a letter or digit")
    if store.last_seq(new_run_id):
        raise BadSpec(f"run {new_run_id!r} already exists in {store.url}; choose another "
                      "id with --run-id")
    if not 1 <= at <= last:
        raise BadSpec(f"run {run_id!r} has events 1 to {last}; cannot fork at seq {at}")
    prefix: list[Envelope] = list(store.read(run_id, until=min(at + 1, last)))
    following = prefix[at] if len(prefix) > at else None
    if isinstance(following, Decision):
        start = following.cause
        end = next((e.seq - 1 for e in store.read(run_id, after=at)
                    if isinstance(e, Stimulus)), last)
        before = (f"fork at {start - 1} to decide seq {start} afresh with the fork's "
                  "policy, or " if start > 1 else "")
        raise BadSpec(f"seq {at} is inside the turn that answers seq {start} (seqs {start} "
                      f"to {end}); {before}fork at {end} to keep that turn")
    prefix = prefix[:at]

    state, events, recorded = _redecided(prefix, new_run_id)
    if state.status != "running":
        raise BadSpec(f"run {run_id!r} had already {state.status} by seq {at}; fork "
                      "before its end")
    spec_ref = spec or state.spec
    if not spec_ref:
        raise BadSpec(f"run {run_id!r} was started from Python, so its spec is not "
                      "recorded; give --spec for the fork to run with")
    loaded = load_spec(spec_ref)
    if policy:
        loaded.policy = load_policy(policy)
    elif not spec and state.policy_ref:
        loaded.policy = load_policy(state.policy_ref)  # a fork of a fork keeps its policy
    offered = {h.name: h.capabilities for h in loaded.handler_infos()}
    wanted = {h.name: h.capabilities for h in state.handlers.values()}
    if offered != wanted:
        raise BadSpec(f"spec {spec_ref} has handlers {offered}; the run needs {wanted} "
                      "(same names and capabilities; fix their code, not their names)")
    name, source = policy_identity(loaded.policy)
    forked = RunForked(
        run_id=new_run_id, seq=at + 1, recorded_at=time.time(), parent_run_id=run_id,
        parent_seq=at, parent_digest=state.digest, spec=absolute_ref(spec_ref),
        policy_ref=absolute_ref(policy) if policy else ("" if spec else state.policy_ref),
        policy=name, policy_digest=source, note=note)
    for event, data in turn(state, forked, loaded.policy):
        events.append(event)
        recorded.append(data)
    store.append(new_run_id, events, 0, recorded)
    return Fork(new_run_id, run_id, at, len(events), loaded, f"{name} (source {source})")


def _redecided(
    prefix: list[Envelope], new_run_id: str
) -> tuple[RunState, list[Envelope], list[bytes]]:
    """The prefix as the new run's log: each stimulus copied under the new id, each
    turn decided again by the policy that decided it, and checked against the record."""
    parent = prefix[0].run_id
    state = RunState()
    events: list[Envelope] = []
    recorded: list[bytes] = []
    policy: Policy | None = None
    for stimulus, answered in turns(prefix):
        if isinstance(stimulus, RunRequested | RunForked):
            policy = recorded_policy(stimulus)
        assert policy is not None
        update: dict[str, object] = {"run_id": new_run_id}
        if isinstance(stimulus, HumanAnswered):
            update["escalation_id"] = stimulus.escalation_id.replace(parent, new_run_id, 1)
        if isinstance(stimulus, HumanAnswered | CancelRequested):
            update["inbox_seq"] = None  # that was the parent's inbox; the fork has its own
        made = turn(state, stimulus.model_copy(update=update), policy)
        rename = (f'"{parent}:esc-', f'"{new_run_id}:esc-')
        if [_gist(d, rename) for d in answered] != [_gist(d) for d, _ in made[1:]]:
            seq = answered[0].seq if answered else stimulus.seq
            raise BadLog(f"run {parent!r} does not replay at seq {seq}, so it cannot be "
                         f"forked; see: baton replay {parent} --verify", run_id=parent, seq=seq)
        for event, data in made:
            events.append(event)
            recorded.append(data)
    return state, events, recorded


def _gist(event: Envelope, rename: tuple[str, str] | None = None) -> str:
    """What an event says, but for the run it belongs to."""
    text = json.dumps(event.model_dump(mode="json", exclude={"run_id", "state_digest"}),
                      sort_keys=True)
    return text.replace(*rename) if rename else text
