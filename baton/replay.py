"""Replay and debugging from Python: the calls `baton replay`, `fork` and `diff` make.

    from baton import open_store, replay
    with open_store("sqlite:///.baton/baton.db") as store:
        report = replay.verify(store, "run-…")           # every decision reproduced?
        tree = replay.verify_tree(store, "run-…")        # and every run under it, linked?
        book = replay.ledger_at(store, "run-…", 120)     # its ledger as it stood at seq 120
        state = replay.state_at(store, "run-…", 120)     # its whole state there
        what_if = replay.counterfactual(store, "run-…", MyPolicy())
        new = replay.fork(store, "run-…", at=119, spec="fixed.py")
    import baton
    baton.resume(new.run_id, spec=new.spec)              # finish the fork live on Ray

This module joins the two sides the design keeps apart: the projections read logs and
re-decide them; loading a spec or a policy from where a run recorded it is the actors'
side (it imports user code).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from baton.actors.spec import (
    ImportedSchemas,
    Spec,
    absolute_ref,
    load_policy,
    load_spec,
    policy_identity,
    require_handlers,
)
from baton.events.errors import BadInputError, BadSpecError, PolicyError
from baton.events.policy import Policy
from baton.events.schema import RunForked, RunRequested
from baton.events.store import EventStore
from baton.projections.counterfactual import Counterfactual, Parting, TaskChange
from baton.projections.counterfactual import counterfactual as _counterfactual
from baton.projections.diff import RunDiff
from baton.projections.diff import diff as diff_runs
from baton.projections.fork import copy_prefix, record_fork
from baton.projections.moment import ledger_at
from baton.projections.trace import trace
from baton.projections.tree import (
    BrokenLink,
    TreeVerification,
    broken_links,
    runs_under,
    trace_down,
)
from baton.projections.verification import (
    Divergence,
    Verification,
    state_at,
    verify_log,
    verify_run,
)
from baton.recorded import (
    Replaying,
    load_schemas_of,
    recorded_policy,
)

__all__ = [
    "BrokenLink",
    "Counterfactual",
    "Divergence",
    "Fork",
    "Parting",
    "PolicyError",
    "RunDiff",
    "TaskChange",
    "TreeVerification",
    "Verification",
    "counterfactual",
    "diff_runs",
    "fork",
    "ledger_at",
    "recorded_policy",
    "state_at",
    "trace",
    "trace_down",
    "verify",
    "verify_log",
    "verify_tree",
]


def verify(
    store: EventStore, run_id: str, policy: Policy | None = None, *, until: int | None = None,
    parallel: int = 0, address: str | None = None,
) -> Verification:
    """Re-decide every stimulus in `run_id`'s log and compare with what was recorded.

    Without `policy`, each stretch of the log is replayed with the policy that decided
    it: the run's recorded spec (or policy), and for a fork, the fork's from its
    RunForked on. With `policy`, it decides throughout, and the notes say where it is
    not the policy that ran (by qualified name and a hash of its source). With
    `parallel` > 1, the log is verified in that many pieces at once on Ray workers (at
    `address`, else this machine's cluster or a new local one): baton/parallel.py."""
    if parallel > 1:
        if policy is not None or until is not None:
            raise BadInputError("a parallel verify replays the whole log with the policies "
                                "it recorded: leave out --policy, --spec and --until")
        from baton.parallel import verify_in_pieces
        return verify_in_pieces(store, run_id, parallel, address,
                                serially=lambda: verify(store, run_id))
    replaying = Replaying(policy)
    report = verify_run(store, run_id, replaying.policy_for, until=until,
                        schemas=replaying.schemas)
    return replace(report, notes=replaying.notes())


def verify_tree(store: EventStore, run_id: str) -> TreeVerification:
    """`verify` for `run_id` and every run under it (the children its answers came from,
    theirs, and so on), each with its own recorded policy; and the links between them:
    each child's request names an assignment its parent dispatched to it, and each result
    a parent received from a child is byte for byte the child's final output."""
    store.require_run(run_id)
    runs = [run_id, *runs_under(store.read, run_id)]
    return TreeVerification(tuple(verify(store, run) for run in runs),
                            tuple(broken_links(store.read, runs)))


def counterfactual(store: EventStore, run_id: str, policy: Policy) -> Counterfactual:
    """Feed `run_id`'s recorded facts to `policy`, calling no worker: where it parts
    from the record, how the outcome would differ, and where it had to stop. The run's
    recorded specs are loaded first, so the output schemas its tasks name resolve."""
    store.require_run(run_id)
    notes: list[str] = []
    load_schemas_of(_origins(store, run_id), notes)
    schemas = ImportedSchemas()
    name, source = policy_identity(policy)
    report = _counterfactual(store, run_id, policy, f"{name} (source {source})", schemas)
    report.notes = notes
    return report


@dataclass(frozen=True)
class Fork:
    """The new run: its id, where it came from, and the spec that runs it now."""

    run_id: str
    parent_run_id: str
    at: int
    events: int  # in the new run's log: the prefix, RunForked and its decisions
    spec: Spec
    policy: str  # qualified name and source hash of the policy deciding it


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

    The fork runs with `spec` (default: the parent's), decided by `policy` (``module:Name``
    or ``file.py:Name``; default: the spec's policy); the spec's handlers must be the
    run's. Resume it (`baton.resume(fork.run_id, spec=fork.spec)`) to run it live."""
    new_run_id = new_run_id or f"{run_id}-fork-{at}"
    origins = [o for o in _origins(store, run_id) if o.seq <= at]
    if not spec and origins and not origins[-1].spec:
        raise BadSpecError(f"run {run_id!r} was started from Python, so its spec is not "
                           "recorded; give --spec for the fork to run with")
    schemas = ImportedSchemas()  # the parent's spec loads (recorded_policy) first
    prefix = copy_prefix(store, run_id, at, new_run_id, recorded_policy, schemas)
    state = prefix.state
    spec_ref = spec or state.spec
    loaded = load_spec(spec_ref)
    policy_ref = absolute_ref(policy) if policy else ("" if spec else state.policy_ref)
    if policy_ref:
        loaded.policy = load_policy(policy_ref)  # a fork of a fork keeps its policy
    require_handlers(loaded, state.handlers.values(), run_id)
    name, source = policy_identity(loaded.policy)
    forked = RunForked(
        run_id=new_run_id, seq=at + 1, recorded_at=time.time(), parent_run_id=run_id,
        parent_seq=at, parent_digest=prefix.parent_digest, spec=absolute_ref(spec_ref),
        policy_ref=policy_ref, policy=name, policy_digest=source, note=note)
    events = record_fork(store, prefix, forked, loaded.policy, schemas)
    return Fork(new_run_id, run_id, at, events, loaded, f"{name} (source {source})")


def _origins(store: EventStore, run_id: str) -> list[RunRequested | RunForked]:
    return [e for e in store.read(run_id) if isinstance(e, RunRequested | RunForked)]
