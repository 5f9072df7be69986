"""Verifying a recorded log: re-decide every stimulus and compare; the state at any seq.

Invariant 7: folding a run's log and re-deciding each recorded stimulus reproduces every
recorded decision, field for field; where it does not, `verify_log` names the first event
that diverges and shows both versions, with the rule that fired in each and the state
digest they looked at. A log that is itself broken (a gap, a repeated seq, bytes that no
longer hash to the digest a later decision recorded) is reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from baton.events.decider import decide_in_place
from baton.events.errors import BadInputError, BadLogError, BadSpecError, BatonError, PolicyError
from baton.events.model import NO_SCHEMAS, Schemas
from baton.events.policy import Policy
from baton.events.schema import (
    STIMULUS_TYPES,
    Decision,
    Envelope,
    RunForked,
    RunRequested,
    Stimulus,
)
from baton.events.state import RunState
from baton.events.store import Codec, EventStore, Recorded, collector_paused

LogItem = Envelope | tuple[Envelope, bytes] | Recorded
# The policy that decided a run from its RunRequested, or a fork from its RunForked, on.
PolicyFor = Callable[[RunRequested | RunForked], Policy]


@dataclass(frozen=True)
class Divergence:
    """The first place a replay parts from the record.

    `kind` is `decision` (replay decides otherwise), `extra` (replay decides something
    the log lacks), `missing` (the log records a decision replay does not make), or a
    fault of the log itself: `gap`, `repeat`, `chain` (bytes were altered after the
    fact), `log` (an event that cannot follow what came before)."""

    seq: int
    kind: str
    recorded: Envelope | None = None
    replayed: Envelope | None = None
    fields: tuple[str, ...] = ()
    digest: str = ""  # the state digest before the event
    problem: str = ""  # for a fault of the log: what is wrong

    def describe(self) -> str:
        """A readable account: which event, which rule, which fields, both values."""
        head = f"seq {self.seq}: "
        if self.problem:
            return head + self.problem
        if self.kind == "extra":
            assert self.replayed is not None
            text = head + f"replay decides {_label(self.replayed)}, which the log lacks"
        elif self.kind == "missing":
            assert self.recorded is not None
            text = head + f"the log records {_label(self.recorded)}, which replay does not decide"
        else:
            assert self.recorded is not None and self.replayed is not None
            text = (head + f"recorded {_label(self.recorded)}, "
                    f"replay decides {_label(self.replayed)}")
        lines = [text, f"  state before it: {self.digest}"]
        was = self.recorded.model_dump(mode="json") if self.recorded else {}
        now = self.replayed.model_dump(mode="json") if self.replayed else {}
        for name in self.fields:
            lines += _side_by_side(name, was.get(name), now.get(name))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "fields": list(self.fields),
                "state_digest": self.digest, "problem": self.problem,
                "recorded": self.recorded.model_dump(mode="json") if self.recorded else None,
                "replayed": self.replayed.model_dump(mode="json") if self.replayed else None,
                "account": self.describe()}


def _side_by_side(name: str, was: Any, now: Any, depth: int = 0) -> list[str]:
    """`name`'s recorded and replayed values, descending into dicts to the keys that differ."""
    if isinstance(was, dict) and isinstance(now, dict) and depth < 3:
        lines: list[str] = []
        for key in [*was, *(k for k in now if k not in was)]:
            if was.get(key) != now.get(key):
                lines += _side_by_side(f"{name}.{key}", was.get(key), now.get(key), depth + 1)
        return lines
    return [f"  {name}:", f"    recorded {was!r}", f"    replayed {now!r}"]


def _label(event: Envelope) -> str:
    rule = f" (rule {event.reason.rule})" if isinstance(event, Decision) else ""
    return f"{type(event).__name__}{rule}"


def _differing(a: Envelope, b: Envelope) -> tuple[str, ...]:
    if type(a) is not type(b):
        return ("type",)
    left: dict[str, Any] = a.model_dump()
    right: dict[str, Any] = b.model_dump()
    return tuple(name for name in left if left[name] != right.get(name))


def verify_log(
    log: Iterable[LogItem],
    policy: Policy | None = None,
    *,
    policy_for: PolicyFor | None = None,
    decode: Callable[[Recorded], Envelope] | None = None,
    complete: bool = True,
    schemas: Schemas = NO_SCHEMAS,
) -> tuple[int, Divergence | None]:
    """Re-decide every stimulus of `log`: (events read, first Divergence or None).

    `policy` decides throughout; or `policy_for` names the policy at the RunRequested
    and at each RunForked. Items are events, ``(event, bytes as stored)`` pairs, or raw
    Recorded records (with `decode`); where the stored bytes are known, the digest chain
    runs over them and a decision is compared by its bytes, decoded only when they
    differ. With `complete` false the log may stop inside a turn (a prefix of a run).
    `schemas` holds the output schema classes of the log's tasks, by topic.
    Python's cyclic collector is paused meanwhile, as for a fold: replaying makes many
    long-lived objects and no cycles, and its rescans cost a fifth of the time."""
    with collector_paused():
        count, divergence, _ = _verified(log, policy, policy_for, decode or _codec_decode,
                                         complete, schemas, RunState())
        return count, divergence


def _verified(log: Iterable[LogItem], policy: Policy | None, policy_for: PolicyFor | None,
              decode: Callable[[Recorded], Envelope], complete: bool, schemas: Schemas,
              state: RunState) -> tuple[int, Divergence | None, str]:
    """Re-decide the stimuli of `log`, which follows `state`: (the seq of the last event
    read, the first divergence or None, the digest of the state the log led to)."""
    pending: list[tuple[Envelope, bytes]] = []  # decisions replay expects next in the log
    count = state.seq  # the last event read had seq `count`
    items = iter(log)
    while True:
        try:
            item = next(items)
        except StopIteration:
            break
        except BadLogError as error:  # the store found a gap in what it holds
            return count, Divergence(error.seq or count + 1, "gap", digest=state.digest,
                                     problem=error.detail), state.digest
        count += 1
        event, seq, type_name, recorded = _unpacked(item)
        if seq != count:
            problem = "repeats an earlier seq" if seq < count else "has a gap"
            return count, Divergence(
                seq, "repeat" if seq < count else "gap", recorded=event,
                problem=f"expected seq {count}, found {seq}: the log {problem}"), state.digest
        try:
            if type_name in STIMULUS_TYPES:
                if pending:
                    extra = pending[-1][0]
                    return count, Divergence(extra.seq, "extra", replayed=extra,
                                             digest=_digest(extra)), state.digest
                stimulus = event or decode(item)  # type: ignore[arg-type]
                assert isinstance(stimulus, Stimulus)
                if isinstance(stimulus, RunRequested | RunForked) and policy_for is not None:
                    policy = policy_for(stimulus)
                if policy is None:
                    raise BadSpecError("verify_log needs a policy, or policy_for")
                # The replayed decisions are folded as they are made; while they equal
                # the recorded ones (checked below, by their bytes) that is the recorded
                # state too. The list is reversed: the next one expected is at its end.
                pending = _decided(state, stimulus, policy, recorded, schemas)
                continue
            if not pending:
                if state.seq == 0:
                    raise BadLogError("the log does not open with a stimulus",
                                      run_id=getattr(event, "run_id", ""), seq=seq)
                event = event or decode(item)  # type: ignore[arg-type]
                return count, Divergence(seq, "missing", recorded=event,
                                         digest=state.digest), state.digest
            expected, replayed = pending.pop()
            if replayed == recorded or (recorded is None and expected == event):
                continue
            event = event or decode(item)  # type: ignore[arg-type]
        except BadLogError as error:
            return count, Divergence(seq, "log", recorded=event, digest=state.digest,
                                     problem=error.detail), state.digest
        assert isinstance(event, Decision) and isinstance(expected, Decision)
        if event.state_digest != expected.state_digest:
            return count, Divergence(
                seq, "chain", recorded=event, replayed=expected, digest=expected.state_digest,
                problem=f"{type(event).__name__} recorded state digest {event.state_digest}, "
                        f"but the log before it hashes to {expected.state_digest}: an event "
                        f"before seq {seq} was altered, removed or reordered after it was "
                        "written"), state.digest
        return count, Divergence(seq, "decision", event, expected,
                                 _differing(event, expected) or ("encoding",),
                                 digest=expected.state_digest), state.digest
    if pending and complete:
        extra = pending[-1][0]
        return count, Divergence(extra.seq, "extra", replayed=extra,
                                 digest=_digest(extra)), state.digest
    return count, None, state.digest


def _decided(
    state: RunState, stimulus: Stimulus, policy: Policy, recorded: bytes | None,
    schemas: Schemas,
) -> list[tuple[Envelope, bytes]]:
    """The decisions `policy` makes on `stimulus`, folded into `state`, last first."""
    try:
        decided = decide_in_place(state, stimulus, policy, recorded, schemas)[1:]
    except BatonError:
        raise
    except Exception as error:
        raise PolicyError(f"the policy raised {type(error).__name__}: {error} while "
                          f"deciding what follows seq {stimulus.seq} "
                          f"({type(stimulus).__name__})") from error
    decided.reverse()
    return decided


def _unpacked(item: LogItem) -> tuple[Envelope | None, int, str, bytes | None]:
    """(the event if decoded, its seq, its type, its stored bytes if known)."""
    if isinstance(item, Recorded):
        return None, item.seq, item.type, item.data
    if isinstance(item, tuple):
        event, data = item
        return event, event.seq, type(event).__name__, data
    return item, item.seq, type(item).__name__, None


def _codec_decode(record: Recorded) -> Envelope:
    return Codec().decode(record.data, run_id=record.run_id, seq=record.seq)


def _digest(event: Envelope) -> str:
    return event.state_digest if isinstance(event, Decision) else ""


@dataclass(frozen=True)
class Verification:
    """What `verify` found: how many events it replayed, the first divergence (None when
    every decision was reproduced), and notes on the policies it replayed with."""

    run_id: str
    events: int
    divergence: Divergence | None
    notes: tuple[str, ...] = field(default=())

    @property
    def reproduced(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "events": self.events, "reproduced": self.reproduced,
                "notes": list(self.notes),
                "divergence": self.divergence.as_dict() if self.divergence else None}


def verify_run(
    store: EventStore, run_id: str, policy_for: PolicyFor, *, until: int | None = None,
    schemas: Schemas = NO_SCHEMAS,
) -> Verification:
    """Re-decide every stimulus in `run_id`'s log (up to `until`) with the policy
    `policy_for` names for each stretch of it, and compare with what was recorded."""
    last = store.require_run(run_id)
    if until is not None and not 1 <= until <= last:
        raise BadInputError(f"run {run_id!r} has events 1 to {last}; --until {until} is not one")
    count, divergence = verify_log(store.read_raw(run_id, until=until), policy_for=policy_for,
                                   decode=store.decode, complete=until in (None, last),
                                   schemas=schemas)
    return Verification(run_id, count, divergence)


def verify_piece(
    store: EventStore, run_id: str, state: RunState, until: int, policy_for: PolicyFor,
    policy: Policy | None, *, complete: bool, schemas: Schemas = NO_SCHEMAS,
) -> tuple[int, Divergence | None, str]:
    """Re-decide the stimuli of `run_id`'s log after `state` (the run at some seq that
    ends a turn, decided from there by `policy`) up to `until`: (the seq of the last
    event read, the first divergence or None, the digest of the state it led to).
    `state` is folded on."""
    with collector_paused():
        return _verified(store.read_raw(run_id, after=state.seq, until=until), policy,
                         policy_for, store.decode, complete, schemas, state)


def state_at(store: EventStore, run_id: str, seq: int | None = None) -> RunState:
    """The run's state just after event `seq` (default: its last): the ledger, plan,
    work in flight and outputs so far. Starts from the nearest snapshot at or before
    `seq`, so only the tail is folded."""
    last = store.require_run(run_id)
    if seq is not None and not 1 <= seq <= last:
        raise BadInputError(f"run {run_id!r} has events 1 to {last}; seq {seq} is not one of them")
    return store.state(run_id, until=seq)
