"""Fork: a new run that begins as a prefix of another run's log, then goes its own way.

The prefix is re-decided under the parent's own recorded policy, with the new run's id,
so the fork's log is a log like any other (its digests chain, its escalation ids name
it) and a parent whose log does not replay is refused rather than copied. A RunForked
stimulus follows, recording where the fork came from and which spec and policy decide
from there; the launcher then resumes the new run live (`baton.replay.fork` and
`baton fork` put the pieces together).
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.events.decider import decide_in_place
from baton.events.errors import BadInputError, BadLogError
from baton.events.model import NO_SCHEMAS, Schemas, require_run_id
from baton.events.policy import Policy
from baton.events.schema import (
    GENESIS_DIGEST,
    CancelRequested,
    Decision,
    Envelope,
    HumanAnswered,
    RunForked,
    RunRequested,
    Stimulus,
    chain,
)
from baton.events.state import RunState
from baton.events.store import EventStore

from .log import gist, turns
from .verification import PolicyFor


@dataclass
class Prefix:
    """A parent's log up to `at`, re-decided as the new run's: the state there, and the
    events with their bytes, ready to append."""

    parent_run_id: str
    parent_digest: str  # the parent's digest chain at `at`, over its stored bytes
    run_id: str
    at: int
    state: RunState
    events: list[Envelope]
    recorded: list[bytes]


def copy_prefix(
    store: EventStore, run_id: str, at: int, new_run_id: str, policy_for: PolicyFor,
    schemas: Schemas = NO_SCHEMAS,
) -> Prefix:
    """`run_id`'s log up to seq `at` as the log of a new run `new_run_id`.

    `at` must end a turn (the event after it is a stimulus, or there is none) while the
    run was still going; each turn is decided again by the policy `policy_for` names
    (the one that decided it) and must come out as recorded."""
    last = store.require_run(run_id)
    require_run_id(new_run_id)
    if store.last_seq(new_run_id):
        raise BadInputError(f"run {new_run_id!r} already exists in {store.shown_url}; "
                            "choose another id with --run-id")
    if not 1 <= at <= last:
        raise BadInputError(f"run {run_id!r} has events 1 to {last}; cannot fork at seq {at}")
    records = list(store.read_recorded(run_id, until=min(at + 1, last)))
    prefix: list[Envelope] = [event for event, _ in records]
    following = prefix[at] if len(prefix) > at else None
    if isinstance(following, Decision):
        start = following.cause
        end = next((e.seq - 1 for e in store.read(run_id, after=at)
                    if isinstance(e, Stimulus)), last)
        ends_run = end == last and store.state(run_id).status != "running"
        options = [f"fork at {start - 1} to leave seq {start} out (work in flight there is "
                   "dispatched again)"] if start > 1 else []
        if not ends_run:
            options.append(f"fork at {end} to keep that turn")
        raise BadInputError(f"seq {at} is inside the turn that answers seq {start} (seqs {start} "
                            f"to {end}); " + (", or ".join(options) or "it ends the run"))
    digest = GENESIS_DIGEST
    for _, data in records[:at]:
        digest = chain(digest, data)
    copied = _redecided(prefix[:at], new_run_id, policy_for, digest, schemas)
    if copied.state.status != "running":
        raise BadInputError(f"run {run_id!r} had already {copied.state.status} by seq {at}; fork "
                            "before its end")
    return copied


def record_fork(store: EventStore, prefix: Prefix, forked: RunForked, policy: Policy,
                schemas: Schemas = NO_SCHEMAS) -> int:
    """Append the prefix, `forked`, and what `policy` decides on it, as one batch;
    returns the number of events the new run's log holds. Advances `prefix.state`."""
    events, recorded = list(prefix.events), list(prefix.recorded)
    for event, data in decide_in_place(prefix.state, forked, policy, schemas=schemas):
        events.append(event)
        recorded.append(data)
    store.append(prefix.run_id, events, 0, recorded)
    return len(events)


def _redecided(
    prefix: list[Envelope], new_run_id: str, policy_for: PolicyFor, parent_digest: str,
    schemas: Schemas,
) -> Prefix:
    parent = prefix[0].run_id
    copied = Prefix(parent, parent_digest, new_run_id, len(prefix), RunState(), [], [])
    policy: Policy | None = None
    for stimulus, answered in turns(prefix):
        if isinstance(stimulus, RunRequested | RunForked):
            policy = policy_for(stimulus)
        assert policy is not None
        update: dict[str, object] = {"run_id": new_run_id}
        if isinstance(stimulus, HumanAnswered):
            update["escalation_id"] = stimulus.escalation_id.replace(parent, new_run_id, 1)
        if isinstance(stimulus, HumanAnswered | CancelRequested):
            update["inbox_seq"] = None  # that was the parent's inbox; the fork has its own
        made = decide_in_place(copied.state, stimulus.model_copy(update=update), policy,
                               schemas=schemas)
        if [gist(d) for d in answered] != [gist(d) for d, _ in made[1:]]:
            seq = answered[0].seq if answered else stimulus.seq
            raise BadLogError(f"run {parent!r} does not replay at seq {seq}, so it cannot be "
                              f"forked; see: baton replay {parent} --verify",
                              run_id=parent, seq=seq)
        for event, data in made:
            copied.events.append(event)
            copied.recorded.append(data)
    return copied
