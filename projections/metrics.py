"""A run's statistics, computed from its Arrow table (`baton.events.store.arrow.table`).

Per handler: the attempts it was given and what came of each (accepted, rejected,
failed, timed out, or answered after it stopped counting), how long answers took from
dispatch, and how long work waited before the handler started on it. Per run: how long
it took, its events, the decisions each rule made, and assignments and acceptances per
second. Every figure is an Arrow kernel over the table's columns: no event is decoded,
and Python loops only over handlers.

Times are the log's `recorded_at` (a decision carries its stimulus's, so a dispatch is
timed by the stimulus that caused it) and, for queue waits, the worker's `started_at`:
two clocks when the handler runs on another machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from baton.events.budget import Spend as Folded
from baton.events.errors import BadInputError
from baton.events.model import RunBudget
from baton.events.schema import BudgetRaised, Envelope, RunRequested

COLUMNS = ("run_id", "seq", "type", "cause", "recorded_at", "rule", "assignment_id",
           "handler", "outcome", "started_at", "model", "requests", "input_tokens",
           "output_tokens", "cost_usd")
# Exact quantiles, interpolated as numpy's default: there is one value per attempt, so
# the exact ones cost milliseconds even on a million events, and a hand computation agrees.
INTERPOLATION = "linear"
ENDS = ("accepted", "rejected", "failed", "timed_out", "ignored")


@dataclass(frozen=True)
class Quantiles:
    """Seconds at the 50th, 95th and 99th percentiles of `count` values; None without
    values."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class Spend:
    """What answers spent on models, as their workers reported: requests, tokens in and
    out, and the dollars of those the price table knew (`unpriced` answers reported
    usage it did not know the price of: their cost is unknown, not zero)."""

    answers: int  # results and failures that reported usage
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced: int


@dataclass(frozen=True)
class HandlerStats:
    """What one handler was given and what came of it.

    `assignments` counts attempts (a coordinator's restart sending one again is still
    one). Each attempt ends at most once: `accepted` or `rejected` by validation,
    `failed` (a failure other than a timeout), or `timed_out` (its deadline passed, or
    its worker reported a timeout). `ignored` counts answers that came after their
    attempt stopped counting, recorded and not acted on. `latency_s` runs from an
    attempt's dispatch to the first result or failure that arrived for it; `queue_wait_s`
    from its dispatch to the handler's start, where the worker reported one. A handler
    never dispatched to has no row.
    """

    handler: str
    assignments: int
    accepted: int
    rejected: int
    failed: int
    timed_out: int
    ignored: int
    latency_s: Quantiles
    queue_wait_s: Quantiles
    spend: Spend


@dataclass(frozen=True)
class RunStats:
    """A run's statistics: its span, its events, its decisions by rule, its handlers.

    `makespan_s` is the last recorded time minus the first (None when the log records
    none); `accepted` counts every accepted result, a person's included; the rates are
    per second of makespan (None when it is zero or unknown). A fork's makespan and
    rates run from its RunForked, counting what was dispatched and accepted since: the
    prefix it copied keeps its parent's times.
    """

    run_id: str
    events: int
    makespan_s: float | None
    assignments: int
    accepted: int
    assignments_per_s: float | None
    accepted_per_s: float | None
    decisions_by_rule: tuple[tuple[str, int], ...]  # by rule name
    handlers: tuple[HandlerStats, ...]  # by handler name
    spend: Spend  # every answer's, a person's excepted (they report none)
    # A run with a budget: its limits as people last set them, what is left of each, and
    # that in a line (None: no budget, or none given to `run_stats`).
    budget: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values for `--json`: an unknown figure is None, never NaN."""
        shown = asdict(self)
        shown["decisions_by_rule"] = dict(self.decisions_by_rule)
        shown["handlers"] = list(shown["handlers"])
        return shown


def run_stats(rows: pa.Table, budget: RunBudget | None = None) -> RunStats:
    """The statistics of the run whose events are `rows` (one row per event, as
    `arrow.table` exports them), and what is left of its `budget` (`recorded_budget`
    reads it); BadInputError when `rows` is not one run's events."""
    run_id = _one_run(rows)
    rows = rows.select(COLUMNS)
    kind = rows.column("type")
    attempts = _attempts(rows.filter(pc.equal(kind, "AssignmentDispatched")))
    validated = rows.filter(pc.equal(kind, "ResultValidated"))
    answers = rows.filter(pc.is_in(kind, pa.array(["ResultReceived", "FailureReported",
                                                   "TimerFired"])))
    ends = _counts(_ends(validated, answers), attempts)
    waits = _waits(answers, attempts)
    spent = _spent(answers, attempts)
    names = sorted(attempts.column("handler").unique().to_pylist())
    handlers = tuple(_handler(name, attempts, ends, waits, spent) for name in names)

    accepted = _accepted(validated)
    own, own_attempts, own_accepted = rows, attempts.num_rows, accepted
    forked = rows.filter(pc.equal(kind, "RunForked")).column("seq")
    if len(forked):
        own = rows.filter(pc.greater_equal(rows.column("seq"), forked[0]))
        own_kind = own.column("type")
        own_attempts = len(pc.unique(own.filter(pc.equal(
            own_kind, "AssignmentDispatched")).column("assignment_id")))
        own_accepted = _accepted(own.filter(pc.equal(own_kind, "ResultValidated")))
    recorded = pc.min_max(own.column("recorded_at")).as_py()
    span = None if recorded["min"] is None else float(recorded["max"] - recorded["min"])
    return RunStats(
        run_id=run_id,
        events=rows.num_rows,
        makespan_s=span,
        assignments=attempts.num_rows,
        accepted=accepted,
        assignments_per_s=own_attempts / span if span else None,
        accepted_per_s=own_accepted / span if span else None,
        decisions_by_rule=_rules(rows.column("rule")),
        handlers=handlers,
        spend=_spend(spent),
        budget=_left(budget, _spend(spent), kind, rows.column("seq")) if budget else None,
    )


def recorded_budget(rows: pa.Table, read: Callable[[int], Envelope]) -> RunBudget | None:
    """The budget of the run whose events are `rows`, as people last set it: the last
    BudgetRaised's, else its request's; `read(seq)` gives the event at seq."""
    raised = rows.filter(pc.equal(rows.column("type"), "BudgetRaised")).column("seq")
    event = read(raised[-1].as_py() if len(raised) else 1)
    return event.budget if isinstance(event, RunRequested | BudgetRaised) else None


def _left(budget: RunBudget, spend: Spend, kind: pa.ChunkedArray,
          seqs: pa.ChunkedArray) -> dict[str, Any]:
    """The limits, what is left of each, and that in a line (as the decider counts it:
    the duration limit reached when its timer fired after the budget was last set)."""
    def last(event_type: str) -> int:
        return int(pc.max(seqs.filter(pc.equal(kind, event_type))).as_py() or 0)

    folded = Folded(budget=budget, cost_usd=spend.cost_usd, input_tokens=spend.input_tokens,
                    output_tokens=spend.output_tokens,
                    elapsed=last("BudgetTimerFired") > last("BudgetRaised"))
    return {"limits": budget.model_dump(exclude_none=True), **folded.facts(),
            "left": folded.left()}


def _accepted(validated: pa.Table) -> int:
    return int(pc.sum(pc.equal(validated.column("outcome"), "accepted")).as_py() or 0)


def _one_run(rows: pa.Table) -> str:
    """The run `rows` belong to; BadInputError when they are not the events of one run."""
    missing = [name for name in COLUMNS if name not in rows.column_names]
    if missing:
        raise BadInputError(f"not a Baton export: no {', '.join(missing)} column (baton export "
                            "writes them)")
    if rows.num_rows == 0:
        raise BadInputError("the table holds no events: statistics need a run's log, from its "
                            "RunRequested on")
    run_ids = pc.unique(rows.column("run_id")).to_pylist()
    if len(run_ids) > 1:
        shown = ", ".join(repr(r) for r in run_ids[:5]) + (" …" if len(run_ids) > 5 else "")
        raise BadInputError(f"the table holds runs {shown}: statistics are of one run, so select "
                            "its rows (run_id) first")
    return str(run_ids[0])


def _attempts(dispatched: pa.Table) -> pa.Table:
    """One row per attempt: assignment_id, handler, and when it was last dispatched
    (after a restart, the dispatch the answer is to)."""
    found = dispatched.group_by(["assignment_id", "handler"]).aggregate(
        [("recorded_at", "max")])
    return pa.table({"assignment_id": found.column("assignment_id"),
                     "handler": found.column("handler"),
                     "dispatched_at": found.column("recorded_at_max")})


def _ends(validated: pa.Table, answers: pa.Table) -> pa.Table:
    """One row per end of an attempt or ignored answer: assignment_id and which `ENDS`."""
    ignored = validated.filter(pc.equal(validated.column("outcome"), "ignored"))
    # A failure or timer that came for an attempt no longer in flight is counted once,
    # as ignored (its ResultValidated), not also as a failure or a timeout.
    counted = answers.filter(pc.invert(pc.is_in(answers.column("seq"),
                                                ignored.column("cause"))))
    kind, reported = counted.column("type"), counted.column("outcome")
    timed_out = pc.or_kleene(pc.equal(kind, "TimerFired"),
                             pc.and_kleene(pc.equal(kind, "FailureReported"),
                                           pc.equal(reported, "timeout")))
    failed = pc.equal(kind, "FailureReported")
    by_stimulus = pa.table({
        "assignment_id": counted.column("assignment_id"),
        "end": pc.if_else(timed_out, "timed_out",
                          pc.if_else(failed, "failed", pa.scalar(None, pa.string()))),
    })
    return pa.concat_tables([
        validated.select(["assignment_id", "outcome"]).rename_columns(["assignment_id",
                                                                       "end"]),
        by_stimulus.filter(pc.is_valid(by_stimulus.column("end"))),
    ])


def _counts(ends: pa.Table, attempts: pa.Table) -> dict[tuple[str, str], int]:
    """How many ends of each kind each handler's attempts had. An accepted answer of a
    person (to an escalation, not an attempt) belongs to no handler and is left out."""
    mapped = ends.join(attempts.select(["assignment_id", "handler"]), "assignment_id",
                       join_type="inner")
    counted = mapped.group_by(["handler", "end"]).aggregate([("end", "count")])
    return {(h, e): n for h, e, n in zip(counted.column("handler").to_pylist(),
                                         counted.column("end").to_pylist(),
                                         counted.column("end_count").to_pylist(),
                                         strict=True)}


def _waits(answers: pa.Table, attempts: pa.Table) -> pa.Table:
    """Per answered attempt: handler, latency (dispatch to the first answer's arrival)
    and queue wait (dispatch to the handler's start, null where unreported)."""
    arrived = answers.filter(pc.not_equal(answers.column("type"), "TimerFired"))
    # In seq order and unthreaded, so "first" is the answer that arrived first.
    first = arrived.group_by("assignment_id", use_threads=False).aggregate([
        ("recorded_at", "first", pc.ScalarAggregateOptions(skip_nulls=False)),
        ("started_at", "first", pc.ScalarAggregateOptions(skip_nulls=False))])
    timed = first.join(attempts, "assignment_id", join_type="inner")
    dispatched_at = timed.column("dispatched_at")
    return pa.table({
        "handler": timed.column("handler"),
        "latency": pc.subtract(timed.column("recorded_at_first"), dispatched_at),
        "queue_wait": pc.subtract(timed.column("started_at_first"), dispatched_at),
    })


def _spent(answers: pa.Table, attempts: pa.Table) -> pa.Table:
    """The answers that reported usage, each with its attempt's handler."""
    reported = answers.filter(pc.is_valid(answers.column("model")))
    return reported.select(["assignment_id", "requests", "input_tokens", "output_tokens",
                            "cost_usd"]).join(attempts.select(["assignment_id", "handler"]),
                                              "assignment_id", join_type="left outer")


def _spend(spent: pa.Table) -> Spend:
    def total(name: str) -> int:
        return int(pc.sum(spent.column(name)).as_py() or 0)

    cost = spent.column("cost_usd")
    return Spend(answers=spent.num_rows, requests=total("requests"),
                 input_tokens=total("input_tokens"), output_tokens=total("output_tokens"),
                 cost_usd=float(pc.sum(cost).as_py() or 0.0), unpriced=cost.null_count)


def _handler(name: str, attempts: pa.Table, ends: dict[tuple[str, str], int],
             waits: pa.Table, spent: pa.Table) -> HandlerStats:
    mine = waits.filter(pc.equal(waits.column("handler"), name))
    counts = {end: ends.get((name, end), 0) for end in ENDS}
    return HandlerStats(
        handler=name,
        assignments=int(pc.sum(pc.equal(attempts.column("handler"), name)).as_py()),
        **counts,
        latency_s=_quantiles(mine.column("latency")),
        queue_wait_s=_quantiles(mine.column("queue_wait")),
        spend=_spend(spent.filter(pc.equal(spent.column("handler"), name))),
    )


def _quantiles(seconds: pa.ChunkedArray) -> Quantiles:
    """The exact percentiles of the known values (nulls are unknown, not zero)."""
    at = pc.quantile(seconds, q=[0.5, 0.95, 0.99], interpolation=INTERPOLATION).to_pylist()
    return Quantiles(count=len(seconds) - seconds.null_count, p50=at[0], p95=at[1],
                     p99=at[2])


def _rules(rule: pa.ChunkedArray) -> tuple[tuple[str, int], ...]:
    """(rule, decisions it made), by rule name; stimuli have no rule."""
    counted = pc.value_counts(rule)
    pairs = zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(),
                strict=True)
    return tuple(sorted((r, int(n)) for r, n in pairs if r is not None))
