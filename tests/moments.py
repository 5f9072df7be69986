"""The ledger at a moment read from the timeline (`ledger_at`) against the ledger the
log folds to there: the conftest holds every run the suite makes to it."""

from __future__ import annotations

from typing import Any

from baton.events.store import EventStore
from baton.projections.ledger import Book
from baton.projections.moment import ledger_at

EVERY = 80  # a log this long or shorter is compared at every seq
SPREAD = 40  # a longer one at this many seqs spread along it, and around its rare events
ROUTINE = {"AssignmentDispatched", "ResultReceived", "ResultValidated"}


def moments_to_compare(store: EventStore, run_id: str) -> list[int]:
    """Every seq of a short log; of a longer one, seqs spread along it, and each rare
    event with the one after."""
    last = store.last_seq(run_id)
    if last <= EVERY:
        return list(range(1, last + 1))
    chosen = {1 + (last - 1) * step // SPREAD for step in range(SPREAD + 1)}
    rare = [event.seq for event in store.read(run_id) if event.type not in ROUTINE]
    for seq in rare[:200]:
        chosen.update({seq, min(seq + 1, last)})
    return sorted(chosen)


def without_outputs(ledger: dict[str, Any]) -> dict[str, Any]:
    return {**ledger, "tasks": [{**task, "output": None} for task in ledger["tasks"]]}


def assert_moments_match(store: EventStore, run_id: str) -> None:
    """At each chosen seq, `ledger_at` is the ledger folded to there, outputs aside."""
    wanted = moments_to_compare(store, run_id)
    book = Book()
    for event, recorded in store.read_recorded(run_id, until=wanted[-1]):
        book.apply(event, recorded)
        if event.seq in wanted:
            folded = without_outputs(book.ledger().as_dict())
            read = ledger_at(store, run_id, event.seq).as_dict()
            assert read == folded, (f"run {run_id} at seq {event.seq}: the timeline says\n"
                                    f"{_differences(read, folded)}")


def _differences(read: dict[str, Any], folded: dict[str, Any]) -> str:
    lines = []
    for name in folded:
        if name == "tasks":
            for mine, theirs in zip(read["tasks"], folded["tasks"], strict=False):
                if mine != theirs:
                    lines.append(f"  task {theirs['id']}: {mine} where the fold has {theirs}")
            if len(read["tasks"]) != len(folded["tasks"]):
                lines.append(f"  {len(read['tasks'])} tasks where the fold has "
                             f"{len(folded['tasks'])}")
        elif read.get(name) != folded[name]:
            lines.append(f"  {name}: {read.get(name)!r} where the fold has {folded[name]!r}")
    return "\n".join(lines[:12])
