"""Replay a recorded log: re-decide every stimulus and compare; the state at any seq.

Invariant 7: folding a run's log and re-deciding each recorded stimulus reproduces every
recorded decision, field for field; where it does not, `verify` names the first event
that diverges and shows both versions, with the rule that fired in each and the state
digest they looked at. A log that is itself broken (a gap, a repeated seq, bytes that no
longer hash to the digest a later decision recorded) is reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from baton.actors.spec import load_policy, load_spec, policy_identity
from baton.events.decider import RunState, turn
from baton.events.errors import BadLog, BadSpec, UnknownRun
from baton.events.policy import Policy
from baton.events.schema import (
    STIMULUS_TYPES,
    Decision,
    Envelope,
    RunForked,
    RunRequested,
    Stimulus,
)
from baton.events.store import Codec, EventStore, Recorded

LogItem = Envelope | tuple[Envelope, bytes] | Recorded


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
    policy: Policy,
    on_fork: Callable[[RunForked], Policy] | None = None,
    decode: Callable[[Recorded], Envelope] | None = None,
) -> tuple[int, Divergence | None]:
    """Re-decide every stimulus of `log` under `policy`: (events read, first Divergence
    or None). Items are events, ``(event, bytes as stored)`` pairs, or raw Recorded
    records (with `decode`); where the stored bytes are known, the digest chain runs
    over them and a decision is compared by its bytes, decoded only when they differ.
    At a RunForked, `on_fork` (when given) names the policy that decides from there."""
    decode = decode or _codec_decode
    state = RunState()
    pending: list[tuple[Envelope, bytes]] = []  # decisions replay expects next in the log
    count = 0  # events read; the last one read had seq `count`
    for item in log:
        count += 1
        event, seq, kind, recorded = _unpacked(item)
        if seq != count:
            problem = "repeats an earlier seq" if seq < count else "has a gap"
            return count, Divergence(
                seq, "repeat" if seq < count else "gap", recorded=event,
                problem=f"expected seq {count}, found {seq}: the log {problem}")
        try:
            if kind in STIMULUS_TYPES:
                if pending:
                    extra = pending[-1][0]
                    return count, Divergence(extra.seq, "extra", replayed=extra,
                                             digest=_digest(extra))
                stimulus = event or decode(item)  # type: ignore[arg-type]
                assert isinstance(stimulus, Stimulus)
                if isinstance(stimulus, RunForked) and on_fork is not None:
                    policy = on_fork(stimulus)
                # The replayed decisions are folded as they are made; while they equal
                # the recorded ones (checked below, by their bytes) that is the recorded
                # state too.
                pending = turn(state, stimulus, policy, recorded)[1:]
                pending.reverse()
                continue
            if not pending:
                if state.seq == 0:
                    raise BadLog("the log does not open with a stimulus", run_id=state.run_id,
                                 seq=seq)
                event = event or decode(item)  # type: ignore[arg-type]
                return count, Divergence(seq, "missing", recorded=event, digest=state.digest)
            expected, made = pending.pop()
            if made == recorded or (recorded is None and expected == event):
                continue
            event = event or decode(item)  # type: ignore[arg-type]
        except BadLog as error:
            return count, Divergence(seq, "log", recorded=event, digest=state.digest,
                                     problem=str(error))
        assert isinstance(event, Decision) and isinstance(expected, Decision)
        if event.state_digest != expected.state_digest:
            return count, Divergence(
                seq, "chain", recorded=event, replayed=expected, digest=expected.state_digest,
                problem=f"{type(event).__name__} recorded state digest {event.state_digest}, "
                        f"but the log before it hashes to {expected.state_digest}: an event "
                        f"before seq {seq} was altered, removed or reordered after it was "
                        "written")
        return count, Divergence(seq, "decision", event, expected,
                                 _differing(event, expected) or ("encoding",),
                                 digest=expected.state_digest)
    if pending:
        extra = pending[-1][0]
        return count, Divergence(extra.seq, "extra", replayed=extra, digest=_digest(extra))
    return count, None


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


def verify(
    store: EventStore, run_id: str, policy: Policy | None = None, *, until: int | None = None
) -> Verification:
    """Re-decide every stimulus in `run_id`'s log and compare with what was recorded.

    Without `policy`, each stretch of the log is replayed with the policy that decided
    it: the run's recorded spec (or policy), and for a fork, the fork's from its
    RunForked on. With `policy`, it decides throughout, and the notes say where it is
    not the policy that ran (by qualified name and a hash of its source)."""
    _require(store, run_id)
    notes: list[str] = []
    [request] = store.read(run_id, until=1)
    assert isinstance(request, RunRequested)

    def chosen(origin: RunRequested | RunForked) -> Policy:
        if policy is None:
            return recorded_policy(origin)
        name, source = policy_identity(policy)
        if (name, source) != (origin.policy, origin.policy_digest) and origin.policy:
            where = ("the run" if isinstance(origin, RunRequested)
                     else f"the fork from seq {origin.seq}")
            notes.append(f"{where} was decided by {origin.policy} (source "
                         f"{origin.policy_digest or 'unrecorded'}); replaying with "
                         f"{name} (source {source})")
        return policy

    first = chosen(request)
    count, divergence = verify_log(store.read_raw(run_id, until=until), first,
                                   on_fork=chosen, decode=store.decode)
    return Verification(run_id, count, divergence, tuple(notes))


def recorded_policy(origin: RunRequested | RunForked) -> Policy:
    """The policy that decided a run (or a fork, from its RunForked on), loaded again
    from where it was recorded."""
    ref = origin.policy_ref if isinstance(origin, RunForked) else ""
    if ref:
        return load_policy(ref)
    if origin.spec:
        return load_spec(origin.spec).policy
    if origin.policy:
        try:
            return load_policy(origin.policy)
        except BadSpec as error:
            raise BadSpec(f"run {origin.run_id!r} records no spec, and its policy "
                          f"{origin.policy} does not load ({error}); give the policy to "
                          "replay it with") from None
    raise BadSpec(f"run {origin.run_id!r} records neither its spec nor its policy; give "
                  "the policy to replay it with")


def state_at(store: EventStore, run_id: str, seq: int | None = None) -> RunState:
    """The run's state just after event `seq` (default: its last): the ledger, plan,
    work in flight and outputs so far. Starts from the nearest snapshot at or before
    `seq`, so only the tail is folded."""
    last = _require(store, run_id)
    if seq is not None and not 1 <= seq <= last:
        raise BadSpec(f"run {run_id!r} has events 1 to {last}; seq {seq} is not one of them")
    return store.state(run_id, until=seq)


def _require(store: EventStore, run_id: str) -> int:
    last = store.last_seq(run_id)
    if not last:
        raise UnknownRun(run_id, store.url)
    return last
