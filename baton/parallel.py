"""Verify a long log in pieces at once, on Ray workers (`baton replay RUN --verify
--parallel N`, `baton.replay.verify(..., parallel=N)`).

The log is cut where the run kept a snapshot at the end of a turn (so a piece begins
with a stimulus, and from the state the snapshot holds), into as many pieces of about
equal work as there are workers. Each worker verifies its piece as a serial verify
would, with the policy the run recorded for it; a cut ends a turn, so a decision replay
makes that the log lacks is found by the piece before it, as a serial verify finds it.
The pieces join when each one's last state digest is the digest the next one began
from: the snapshot it began from was taken of this very log before it. (What the
snapshot holds beyond its digest is trusted: the coordinator wrote it from its own fold,
sealed with the store's key when there is one.) The first divergence is the first
piece's that has one, with the report a serial verify gives; should two pieces not join,
the log is verified serially instead, and the notes say why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from baton.events.errors import BatonError
from baton.events.schema import STIMULUS_TYPES
from baton.events.state import RunState
from baton.events.store import EventStore, open_store, snapshot
from baton.events.store.sealing import KEY_ENV, Sealer
from baton.projections.verification import Divergence, Verification, verify_piece
from baton.recorded import Replaying, policy_at

# What a task costs a piece that begins at a snapshot, beyond its events, in events
# verified: its record decoded (5 µs), and its part in judging the run at its end (the
# plan view, the check, the synthesis). Measured on a run of 1,000,000 events in two
# pieces, its events 20 to 25 µs each: 0.45 gave pieces of 14.1 and 13.6 s (the first
# reads the run's request, 2.7 s, which the weight also balances).
RECORD_WEIGHT = 0.45


@dataclass(frozen=True)
class Piece:
    """What a worker found in its piece of the log: the events read, the first
    divergence, the digests of the state it began from and the one it ended at, and
    notes on the policies it replayed with."""

    after: int
    events: int
    divergence: Divergence | None
    first: str
    last: str
    notes: tuple[str, ...]


def verify_in_pieces(store: EventStore, run_id: str, workers: int, address: str | None,
                     serially: Callable[[], Verification]) -> Verification:
    """`baton.replay.verify` (each stretch with its recorded policy), in up to `workers`
    pieces at once on Ray workers; `serially` verifies it in one, should they not join."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from baton.actors.cluster import ensure_ray

    last = store.require_run(run_id)
    cuts = cut_points(store, run_id, last, workers)
    ensure_ray(address)
    options: dict[str, Any] = {"num_cpus": 1}
    if store.url.startswith("sqlite:"):  # the file is on this machine: so are its readers
        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    piece = ray.remote(_piece).options(**options)
    bounds = list(zip([0, *cuts], [*cuts, last], strict=True))
    try:
        found: list[Piece] = ray.get([piece.remote(store.url, os.environ.get(KEY_ENV),
                                                   run_id, after, until, last)
                                      for after, until in bounds])
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, BatonError):  # a policy that does not load, a bad log
            raise error.cause from None
        raise
    notes: list[str] = []
    for this, after in zip(found, [*found[1:], None], strict=True):
        notes.extend(this.notes)
        if this.divergence is not None:
            return Verification(run_id, this.events, this.divergence, tuple(notes))
        if after is not None and this.last != after.first:
            serial = serially()
            return replace(serial, notes=(*serial.notes, (
                f"the snapshot at seq {after.after} is not the state its log leads to "
                f"(digest {after.first}, where the log gives {this.last}): verified in one "
                "piece")))
    return Verification(run_id, last, None, tuple(dict.fromkeys(notes)))


def cut_points(store: EventStore, run_id: str, last: int, pieces: int) -> list[int]:
    """Where to cut the log into `pieces` of about equal work: at the snapshot nearest
    before each mark that ends a turn (the event after it is a stimulus). A piece that
    begins at a snapshot decodes each task record as it first touches it, and the last
    piece every one by the run's end, where it also judges the whole plan:
    RECORD_WEIGHT events' work a task, so the marks fall that much later."""
    latest = store.repository.snapshots.select_events(run_id, desc=True, limit=1)
    tasks = (snapshot.decode(store.sealer.open(latest[0].state, run_id=run_id,
                                               seq=latest[0].originator_version,
                                               what="snapshot"),
                             run_id=run_id, seq=latest[0].originator_version).head["tasks"]
             if latest and latest[0].topic in snapshot.TOPICS else 0)
    cuts: list[int] = []
    for i in range(1, pieces):
        mark = min(last - 1, int((last + tasks * RECORD_WEIGHT) * i / pieces))
        found = store.repository.snapshots.select_events(run_id, lte=mark, desc=True,
                                                         limit=1)
        if not found or found[0].topic not in snapshot.TOPICS:
            continue
        seq = found[0].originator_version
        following = store.read(run_id, after=seq, until=seq + 1)
        if (cuts and seq <= cuts[-1]) or not following or \
                following[0].type not in STIMULUS_TYPES:
            continue
        cuts.append(seq)
    return cuts


def _piece(url: str, key: str | None, run_id: str, after: int, until: int,
           last: int) -> Piece:  # (`last`: the log's, as the piece was cut from it)
    """On a worker: verify seqs after + 1 … until, from the state at `after`."""
    with open_store(url, sealer=Sealer(key) if key else None) as store:
        state = store.state(run_id, until=after) if after else RunState()
        state.changed = None  # it keeps no snapshot
        began = state.digest
        replaying = Replaying()
        count, divergence, digest = verify_piece(
            store, run_id, state, until, replaying.policy_for,
            policy_at(state) if after else None, complete=True,
            schemas=replaying.schemas)
        return Piece(after, count, divergence, began, digest, replaying.notes())
