"""A run's query columns (`arrow.DERIVED`), kept beside its log a chunk of events at a
time, so that export and `baton stats` read them instead of parsing every event's JSON
again: parsing is most of what those cost.

The store takes each event's columns from the event object as it appends it (the
coordinator has it at hand, and needs no Arrow for this), one CSV line per event, and
writes a chunk of lines every `SIZE` events, at a run's end, and at close. Readers
parse chunks with Arrow's CSV reader, several times faster than whole events' JSON.

A chunk is a cache of the log, as a snapshot is: losing one costs time, never facts,
for readers derive whatever no chunk covers from the events themselves. A test holds
the two derivations to the same answer on every kind of event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model import task_of
from ..schema import ENDINGS, Envelope

TOPIC = "baton.columns:csv1"  # changes whenever a chunk's layout does
SIZE = 4096  # events a chunk covers
KEPT_AT_CLOSE = 64  # fewer pending events than this are left for readers to derive


@dataclass
class Pending:
    """Lines of events appended to one run and not yet in a chunk: consecutive, from
    seq `first` (a None for an event no line can hold)."""

    first: int
    lines: list[str | None] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return self.first + len(self.lines)


def encode(run_id: str, first: int, lines: list[str | None]) -> bytes | None:
    """A chunk: a line naming the run and first seq it is filed under, then its
    events' lines; None when one could not be written."""
    if None in lines:
        return None
    return "\n".join([_place(run_id, first), *lines]).encode()  # type: ignore[list-item]


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
           "started_at", "ended_at")


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
    if ran is None:
        return head + ",".join(quoted) + ",,,,,"
    return (head + ",".join(quoted) +
            f",{ran.pid:d},{ran.replica:d},{_number(ran.started_at)},{_number(ran.ended_at)}")
