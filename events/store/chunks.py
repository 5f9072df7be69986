"""A run's query columns (`arrow.DERIVED`), kept beside its log a chunk of events at a
time, so that export and `baton stats` read them instead of parsing every event's JSON
again: parsing is most of what those cost.

They are a projection of each run's log, kept two ways. The writer takes each event's
columns from the event object as it appends it (the coordinator has it at hand, and
needs no Arrow for this), one CSV line per event, and writes a chunk of lines every
`SIZE` events, at a run's end, and at close. A reader that finds events of an ended run
that no chunk covers derives their columns and may keep them as chunks in turn
(`arrow.keep_derived`). Either way, a chunk is filed under its run and first seq, which
tracks how far the projection has come: a second chunk for the same place is refused,
so each event's columns are kept once. Readers parse chunks with Arrow's CSV reader,
several times faster than whole events' JSON.

A chunk is a cache of the log, as a snapshot is: losing one costs time, never facts,
for readers derive whatever no chunk covers from the events themselves. A test holds
the two derivations to the same answer on every kind of event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import (
    AggregateRecorder,
    IntegrityError,
    PersistenceError,
    StoredEvent,
)

from ..model import task_of
from ..schema import ENDINGS, Envelope
from .sealing import Sealer

TOPIC = "baton.columns:csv2"  # changes whenever a chunk's layout does (csv1: no usage)
SIZE = 4096  # events a chunk covers
KEPT_AT_CLOSE = 64  # fewer pending events than this are left for readers to derive
NEAR = 4  # chunks before a stretch that a reader of it looks for one reaching into it


@dataclass
class Pending:
    """Lines of events appended to one run and not yet in a chunk: consecutive, from
    seq `first` (a None for an event no line can hold)."""

    first: int
    lines: list[str | None] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return self.first + len(self.lines)


class ColumnChunks:
    """Where a store keeps its runs' chunks, and the lines appended but not yet kept."""

    def __init__(self, recorder: AggregateRecorder, sealer: Sealer):
        self.recorder = recorder
        self.sealer = sealer
        self._pending: dict[str, Pending] = {}

    def appended(self, run_id: str, first: int, events: Sequence[Envelope]) -> None:
        """Take the columns of events just appended to the run from seq `first`, and
        keep a chunk when one is full or the run has ended. Never raises: the events are
        recorded, and a cache never undoes that (readers derive what is not kept)."""
        try:
            pending = self._pending.get(run_id)
            if pending is not None and pending.next_seq != first:
                # Another writer appended in between: what each kept is still right,
                # and readers derive the events neither did.
                self._flush(run_id)
                pending = None
            if pending is None:
                pending = self._pending[run_id] = Pending(first)
            pending.lines.extend(map(line, events))
            if len(pending.lines) >= SIZE or events[-1].type in ENDINGS:  # type: ignore[attr-defined]
                self._flush(run_id)
        except Exception:
            self._pending.pop(run_id, None)

    def close(self) -> None:
        """Keep what is pending, where it is worth a chunk."""
        for run_id, pending in list(self._pending.items()):
            if len(pending.lines) >= KEPT_AT_CLOSE:
                self._flush(run_id)

    def _flush(self, run_id: str) -> None:
        pending = self._pending.pop(run_id)
        lines = encode(run_id, pending.first, pending.lines)
        if lines is not None:  # else left for readers to derive
            self.keep(run_id, pending.first, lines)

    def keep(self, run_id: str, first: int, lines: bytes) -> bool:
        """Keep a chunk (`encode`'s) of the run's events from seq `first`; False when
        the database refused it (a reader may not write, or not now). One from this seq
        may exist already (the same columns). Either way readers derive what is not
        kept."""
        stored = StoredEvent(stream(run_id), first, TOPIC, self.sealer.seal(lines))
        try:
            self.recorder.insert_events([stored])
        except IntegrityError:
            return True  # kept already
        except PersistenceError:
            return False
        return True

    def kept(self, run_id: str, *, near: tuple[int, int] | None = None
             ) -> list[tuple[int, int, bytes]]:
        """The run's kept chunks: (first seq, events, lines), in seq order, none
        overlapping; the events between them are for the reader to derive. `near`
        (first, last): only those filed from NEAR chunks before `first` to `last`, for
        a reader of that stretch (a longer chunk reaching into it is left out: its
        events are derived)."""
        found: list[tuple[int, int, bytes]] = []
        covered = 0
        after, until = (None, None) if near is None else (max(0, near[0] - NEAR * SIZE),
                                                           near[1])
        for stored in self.recorder.select_events(stream(run_id), gt=after, lte=until):
            first = stored.originator_version
            if stored.topic != TOPIC or first <= covered:
                continue
            lines = lines_of(self.sealer.open(stored.state, run_id=run_id, seq=first,
                                              what="query columns"), run_id, first)
            if lines is not None:
                found.append((first, *lines))
                covered = first + lines[0] - 1
        return found


def stream(run_id: str) -> str:
    """Where a run's chunks of this layout are filed: a stream of their own per layout,
    so chunks of an older layout (ignored: readers derive those events) never hold the
    place a chunk of this one would take."""
    return f"{run_id} {TOPIC}"


def encode(run_id: str, first: int, lines: list[str | None]) -> bytes | None:
    """A chunk: a line naming the run and first seq it is filed under, then its
    events' lines; None when one could not be written."""
    if None in lines:
        return None
    return "\n".join([_place(run_id, first), *lines]).encode()  # type: ignore[list-item]


def framed(run_id: str, first: int, body: bytes) -> bytes:
    """A chunk of lines written by another hand (`arrow.keep_derived`): `body`, its
    events' lines with no line break after the last, under the line naming its place."""
    return _place(run_id, first).encode() + b"\n" + body


def lines_of(chunk: bytes, run_id: str, first: int) -> tuple[int, bytes] | None:
    """How many events a chunk covers, and their lines; None when it names another
    place than the one it is filed under (it was copied there: not to be read)."""
    head, _, body = chunk.partition(b"\n")
    if head != _place(run_id, first).encode() or not body:
        return None
    return body.count(b"\n") + 1, body


def _place(run_id: str, first: int) -> str:
    return f"{TOPIC} {run_id} {first}"


def _number(value: float) -> str:
    """A float as CSV: exact; nothing (null) where JSON has no number for it either."""
    return repr(value) if value - value == 0 else ""  # false for inf and nan


# The columns of a line, in order: arrow.DERIVED's.
COLUMNS = ("type", "schema_version", "cause", "recorded_at", "rule", "task_id",
           "assignment_id", "handler", "outcome", "state_digest", "node", "pid", "replica",
           "started_at", "ended_at", "model", "requests", "input_tokens", "output_tokens",
           "cost_usd")


def line(event: Envelope) -> str | None:
    """The event's query columns as one CSV line (`COLUMNS`): text quoted, nothing
    where null (schema_version too, when 1). `recorded_at` is the event's own (a
    stimulus's): readers carry it on to the decisions after it. None when a text has a
    line break (which CSV can hold only at a cost to every reader): readers derive that
    chunk. Written out by hand: this runs for every event a coordinator appends."""
    fields: dict[str, Any] = event.__dict__
    kind = fields["type"]  # a class's literal: nothing to quote
    assignment = fields.get("assignment")
    answer = fields.get("result") or fields.get("failure")
    assignment_id = fields.get("assignment_id")
    if assignment_id is None:
        if assignment is not None:
            assignment_id = assignment.id
        elif answer is not None:
            assignment_id = answer.assignment_id
    task_id = fields.get("task_id")
    if task_id is None:
        if assignment is not None:
            task_id = assignment.task_id
        elif assignment_id is not None:  # the task of the attempt "task#n"
            task_id = task_of(assignment_id)
    handler = fields.get("handler")
    if handler is None and assignment is not None:
        handler = assignment.handler
    outcome = fields.get("outcome") or fields.get("action")
    if outcome is None:
        outcome = answer.kind if answer is not None and kind == "FailureReported" else (
            ENDINGS.get(kind))
    reason = fields.get("reason")
    texts = [None if reason is None else reason.rule, task_id, assignment_id, handler,
             outcome, fields.get("state_digest")]
    ran = answer.execution if answer is not None else None
    if ran is not None:
        texts.append(ran.node)
    spent = answer.usage if answer is not None else None
    if spent is not None:
        texts.append(spent.model)
    quoted = []
    for text in texts:
        if text is None:
            quoted.append("")
        elif "\n" in text or "\r" in text:
            return None
        else:
            quoted.append('"' + text.replace('"', '""') + '"' if '"' in text else
                          f'"{text}"')
    version, cause, at = fields["schema_version"], fields["cause"], fields.get("recorded_at")
    head = (f'{kind},{"" if version == 1 else version},{"" if cause is None else cause},'
            f'{"" if at is None else _number(at)},')
    model = quoted.pop() if spent is not None else ""
    line = head + ",".join(quoted) + (",,,,," if ran is None else (
        f",{ran.pid:d},{ran.replica:d},{_number(ran.started_at)},{_number(ran.ended_at)}"))
    if spent is None:
        return line + ",,,,,"
    cost = "" if spent.cost_usd is None else _number(spent.cost_usd)
    return (line + f",{model},{spent.requests:d},{spent.input_tokens:d},"
            f"{spent.output_tokens:d},{cost}")
