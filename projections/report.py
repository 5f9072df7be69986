"""A run's report: one self-contained HTML page to debug it at a desk.

The page holds the run's summary (with what the work spent and what is left of its
budget), a timeline (a lane per handler replica, a bar per assignment coloured by its
outcome, with its recoveries, worker replacements, the check sending it back and the
coordinator's restarts marked), every task with its status, each assignment's details
(what its answer spent, an agent's transcript in short), and each task's trace (the
chain `baton trace` prints). Everything is computed here from the log and embedded as
JSON in the page's frame (`report.html`); its script (`report.js`, inlined with
`report.css`) draws it and loads nothing from anywhere, so the file opens from disk
with no server. Run data is user data (outputs, reasons, task ids): the page only ever
sets it as text, never as markup.

Lanes: an attempt whose worker reported where it ran (`execution`, on a result or a
handler failure) sits on its replica's lane, from the handler's start to its end, with
a whisker from its dispatch. One that never reported (timed out, lost, still in flight)
sits on its handler's "no report" lane, from its dispatch to what ended it. A log with
no clock readings at all (scripted runs) is drawn by seq instead of time.
"""

from __future__ import annotations

import html as markup
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from baton.events.schema import (
    AssignmentDispatched,
    CancelRequested,
    CoordinatorRestarted,
    Envelope,
    EscalationRaised,
    FailureReported,
    HumanAnswered,
    PlanChanged,
    RecoveryChosen,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRequested,
    Stimulus,
    TimerFired,
    WorkerReplaced,
    WorkerStuck,
)
from baton.events.tree import answers

from .ledger import ledger
from .log import about_tasks, describe, short
from .trace import trace, transcript_lines
from .tree import children_of

MAX_BARS = 20_000  # attempts drawn; past it, every unaccepted one and a sample of the rest
MAX_TRACES = 5_000  # tasks whose trace is embedded; unaccepted ones first
MAX_TRANSCRIPTS = 2_000  # attempts whose transcript is embedded, in short; the first ones
TRANSCRIPT_LINES = 24  # of each (`baton trace RUN TASK --json` has it whole)
FAILURE_OUTCOMES = {"error": "failed", "unserializable": "failed", "too_large": "failed",
                    "timeout": "timed out", "worker_lost": "lost"}
FAILED = frozenset({"rejected", "failed", "timed out", "lost"})  # an attempt that went wrong


@dataclass
class Attempt:
    """One assignment as the timeline draws it. Times are seconds from the run's start
    (or seqs, when the log has no clock)."""

    id: str
    task: str
    attempt: int
    handler: str
    rule: str
    facts: dict[str, Any]
    candidates: list[dict[str, Any]]
    state_digest: str
    dispatch_seq: int
    dispatched_at: float | None
    feedback: int
    outcome: str = "in flight"
    problem: str = ""
    end_seq: int | None = None
    end_at: float | None = None
    execution: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    output: str = ""
    marks: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None  # what its answer spent, as its worker reported
    transcript: list[str] = field(default_factory=list)  # an agent's, a line per part

    @property
    def settled(self) -> bool:
        return self.outcome != "in flight"


def html(log: Iterable[Envelope], stats: Mapping[str, Any] | None = None,
         pages: Mapping[str, str] | None = None) -> str:
    """The report of the run whose events `log` holds, as one HTML document.

    `stats`, when given, is shown as tables: each key a heading, each value a list of
    rows (dicts), a dict of rows, a dict of values, or a value. The page links to the
    run's parent and children by the file names `pages` gives (default: RUN.html).
    """
    data = page_data(log, stats, pages)
    title = f"baton report: {data['summary']['run_id']}"
    asset = resources.files(__package__)
    # The page's frame holds no braces but these four fields.
    return asset.joinpath("report.html").read_text(encoding="utf-8").format(
        title=markup.escape(title),
        css=asset.joinpath("report.css").read_text(encoding="utf-8"),
        js=asset.joinpath("report.js").read_text(encoding="utf-8"),
        data=embedded(data),
    )


def embedded(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element: no `<`, `>` or `&` in it
    (so no `</script>` or `<!--` can end or change the element), nothing non-finite."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere in an output or the stats
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def page_data(log: Iterable[Envelope], stats: Mapping[str, Any] | None = None,
              pages: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the page shows, as plain JSON-ready data: summary (with the pages of the
    run's parent and children), lanes and attempts, run-level marks, tasks, traces, and
    the stats given."""
    events = list(log)
    children = children_of(events)
    page = {**{run: f"{run}.html" for run in children.values()}, **(pages or {})}
    book = ledger(events)
    link = next((e.parent for e in events if isinstance(e, RunRequested)), None)
    link = link if link and answers(book.run_id, link) else None  # (a fork's: not so)
    attempts, marks, clocked, t0 = _attempts(events)
    drawn, note = _drawn(attempts)
    end = _end(events, attempts, clocked, t0)
    for a in attempts.values():
        if a.end_at is None and not a.settled:
            a.end_at = end  # still in flight: drawn up to the end of the log
    by_task: dict[str, list[str]] = {}
    for a in attempts.values():
        by_task.setdefault(a.task, []).append(a.id)
    outcomes = Counter(a.outcome for a in attempts.values())
    actions = Counter(a.recovery["action"] for a in attempts.values() if a.recovery)
    counts = book.counts
    summary = {
        "run_id": book.run_id, "goal": book.goal, "status": book.status,
        "error": book.error, "forked_from": book.forked_from,
        "policy": next((e.policy for e in events if isinstance(e, RunRequested)), ""),
        "events": book.events, "requested_at": book.requested_at,
        "makespan_s": (book.last_recorded_at - book.requested_at
                       if book.requested_at is not None and book.last_recorded_at is not None
                       else None),
        "tasks": len(book.tasks), "task_status": dict(Counter(t.status for t in book.tasks)),
        "tasks_with_failures": sum(1 for ids in by_task.values()
                                   if any(attempts[i].outcome in FAILED for i in ids)),
        "attempts": len(attempts), "attempt_outcomes": dict(outcomes),
        "recoveries": dict(actions),
        "escalations": counts.get("EscalationRaised", 0),
        "workers_replaced": counts.get("WorkerReplaced", 0),
        "restarts": counts.get("CoordinatorRestarted", 0),
        "open_escalations": [asdict(e) for e in book.escalations],
        "spent": book.spent, "budget": book.budget,
        "parent": link and {"run_id": link.run_id, "assignment_id": link.assignment_id,
                            "href": page.get(link.run_id, f"{link.run_id}.html")},
        "children": [{"run_id": child, "assignment_id": a_id, "href": page[child],
                      "outcome": attempts[a_id].outcome if a_id in attempts else None}
                     for a_id, child in children.items()],
    }
    tasks = [{"id": t.id, "capability": t.capability, "required": t.required,
              "status": t.status, "attempts": t.attempts, "handler": t.handler,
              "outcome": t.outcome, "assignments": by_task.get(t.id, [])}
             for t in book.tasks]
    return {
        "summary": summary,
        "axis": {"unit": "s" if clocked else "seq", "t0": t0, "end": end},
        "lanes": _lanes(drawn),
        "attempts": [_as_dict(a) for a in drawn],
        "drawn_note": note,
        "marks": marks,
        "tasks": tasks,
        "traces": _traces(events, [t.id for t in book.tasks], {t.id: t.status for t in book.tasks}),
        "stats": _bounded(dict(stats), limit=200) if stats else None,
    }


# --- the attempts and what became of them ----------------------------------------------


def _attempts(events: list[Envelope]) -> tuple[dict[str, Attempt], list[dict[str, Any]],
                                                bool, float | None]:
    """Every assignment, with its outcome, times, recovery and marks; the run-level
    marks (restarts, cancels, answers, the end); whether the log has a clock; its t0."""
    found: dict[str, Attempt] = {}
    latest: dict[str, str] = {}  # task -> its latest assignment id
    marks: list[dict[str, Any]] = []
    clock: float | None = None
    clocked = any(isinstance(e, Stimulus) and e.recorded_at is not None for e in events)
    starts = [r.execution.started_at for e in events
              if (r := _outcome_of(e)) is not None and r.execution is not None]
    first = next((e.recorded_at for e in events
                  if isinstance(e, Stimulus) and e.recorded_at is not None), None)
    t0 = min([*starts, first]) if clocked and first is not None else None

    def at(value: float | None, seq: int) -> float | None:
        """A point on the axis: seconds from t0, or the seq in a log with no clock."""
        if not clocked:
            return float(seq)
        return None if value is None or t0 is None else round(value - t0, 6)

    def since_t0(value: float) -> float | None:
        return None if t0 is None else round(value - t0, 6)

    transcripts = MAX_TRANSCRIPTS
    for e in events:
        if isinstance(e, Stimulus) and e.recorded_at is not None:
            clock = e.recorded_at
        now = at(clock, e.seq)
        if isinstance(e, AssignmentDispatched):
            a = e.assignment
            if a.id in found:  # a restart's re-send of the same attempt
                found[a.id].marks.append(_mark("resent", e.seq, now, describe(e)))
                continue
            found[a.id] = Attempt(
                id=a.id, task=a.task_id, attempt=a.attempt, handler=a.handler,
                rule=e.reason.rule, facts=_bounded(e.reason.facts),
                candidates=[_bounded(c) for c in e.reason.candidates],
                state_digest=e.state_digest, dispatch_seq=e.seq, dispatched_at=now,
                feedback=len(a.feedback))
            latest[a.task_id] = a.id
        elif isinstance(e, ResultReceived | FailureReported):
            outcome = e.result if isinstance(e, ResultReceived) else e.failure
            attempt = found.get(outcome.assignment_id)
            if attempt is None:
                continue
            if outcome.execution is not None and attempt.execution is None:
                x = outcome.execution
                attempt.execution = {"node": x.node, "pid": x.pid, "replica": x.replica,
                                     "started_at": since_t0(x.started_at),
                                     "ended_at": since_t0(x.ended_at),
                                     "took_s": round(x.ended_at - x.started_at, 6)}
            if outcome.usage is not None and attempt.usage is None:
                attempt.usage = outcome.usage.model_dump(exclude_none=True)
            if outcome.transcript is not None and transcripts and not attempt.transcript:
                attempt.transcript = transcript_lines(outcome.transcript)[:TRANSCRIPT_LINES]
                transcripts -= 1
            if attempt.settled or attempt.end_seq is not None:
                attempt.marks.append(_mark("late", e.seq, now, describe(e)))
                continue
            attempt.end_seq, attempt.end_at = e.seq, now
            if isinstance(e, ResultReceived):
                attempt.output = short(e.result.output, 200)
            else:
                attempt.outcome = FAILURE_OUTCOMES.get(e.failure.kind, "failed")
                attempt.problem = e.failure.summary()
        elif isinstance(e, TimerFired):
            attempt = found.get(e.assignment_id)
            if attempt is not None and not attempt.settled and attempt.end_seq is None:
                attempt.end_seq, attempt.end_at = e.seq, now
                attempt.outcome, attempt.problem = "timed out", "no answer by its deadline"
            elif attempt is not None:
                attempt.marks.append(_mark("late", e.seq, now, describe(e)))
        elif isinstance(e, WorkerStuck | WorkerReplaced):
            attempt = found.get(e.assignment_id)
            if attempt is not None:
                kind = "stuck" if isinstance(e, WorkerStuck) else "replaced"
                attempt.marks.append(_mark(kind, e.seq, now, describe(e)))
        elif isinstance(e, ResultValidated):
            attempt = found.get(e.assignment_id)
            if attempt is None:  # a person's output, accepted through an escalation
                marks.append(_mark("validated", e.seq, now, describe(e)))
                continue
            if attempt.validation is None or e.outcome != "ignored":
                attempt.validation = {"outcome": e.outcome, "rule": e.reason.rule,
                                      "seq": e.seq, "state_digest": e.state_digest,
                                      "problems": list(e.verdict.problems)}
            if e.outcome == "ignored":
                attempt.marks.append(_mark("ignored", e.seq, now, describe(e)))
                if not attempt.settled:
                    attempt.outcome = "superseded"
            elif not attempt.settled:
                attempt.outcome = e.outcome
                attempt.problem = "; ".join(e.verdict.problems)
        elif isinstance(e, RecoveryChosen):
            attempt = found.get(e.assignment_id or "")
            if attempt is None:  # a person's answer (marked as such) or a dependency's
                continue
            attempt.recovery = {"action": e.action, "rule": e.reason.rule, "seq": e.seq,
                                "handler": e.handler, "state_digest": e.state_digest}
            if not attempt.settled:  # cancelled while in flight
                attempt.outcome, attempt.problem = "abandoned", describe(e)
                attempt.end_seq, attempt.end_at = e.seq, now
        elif isinstance(e, ResultsChecked):  # the accepted attempts it sent back
            for task_id, why in e.verdict.sent_back.items():
                attempt = found.get(latest.get(task_id, ""))
                if attempt is not None:
                    attempt.marks.append(_mark("sent_back", e.seq, now, why))
        elif isinstance(e, EscalationRaised):
            attempt = found.get(latest.get(e.task_id, ""))
            if attempt is not None:
                attempt.marks.append(_mark("escalated", e.seq, now, e.escalation_id))
        elif isinstance(e, CoordinatorRestarted | CancelRequested | HumanAnswered | RunForked
                        | RunCompleted | RunFailed):
            kind = {"CoordinatorRestarted": "restart", "CancelRequested": "cancel",
                    "HumanAnswered": "answer", "RunForked": "fork"}.get(e.type, "end")
            marks.append(_mark(kind, e.seq, now, f"{e.type}: {describe(e)}"))
    return found, marks, clocked, t0


def _outcome_of(event: Envelope) -> Any:
    if isinstance(event, ResultReceived):
        return event.result
    if isinstance(event, FailureReported):
        return event.failure
    return None


def _mark(kind: str, seq: int, at: float | None, text: str) -> dict[str, Any]:
    return {"kind": kind, "seq": seq, "at": at, "text": text}


def _end(events: list[Envelope], attempts: dict[str, Attempt], clocked: bool,
         t0: float | None) -> float:
    """Where the axis ends: the last clock reading or handler end, or the last seq."""
    if not clocked or t0 is None:
        return float(events[-1].seq) if events else 1.0
    times = [e.recorded_at for e in events
             if isinstance(e, Stimulus) and e.recorded_at is not None]
    ends: list[float] = [a.execution["ended_at"] for a in attempts.values()
                         if a.execution and a.execution["ended_at"] is not None]
    return max([max(times) - t0 if times else 0.0, *ends])


def _drawn(attempts: dict[str, Attempt]) -> tuple[list[Attempt], str]:
    """The attempts the timeline draws: all of them up to MAX_BARS; past it, every one
    that was not accepted (up to the cap) and an even sample of the accepted."""
    every = list(attempts.values())
    if len(every) <= MAX_BARS:
        return every, ""
    unaccepted = [a for a in every if a.outcome != "accepted"][:MAX_BARS]
    room = MAX_BARS - len(unaccepted)
    accepted = [a for a in every if a.outcome == "accepted"]
    sample = [accepted[i * len(accepted) // room] for i in range(room)] if room > 0 else []
    chosen = {a.id for a in (*unaccepted, *sample)}
    return ([a for a in every if a.id in chosen],
            f"{len(every):,} attempts: the timeline draws {len(chosen):,} (every one not "
            f"accepted, up to {MAX_BARS:,}, and an even sample of the accepted); the tasks "
            "table lists them all")


def _lanes(drawn: list[Attempt]) -> list[dict[str, Any]]:
    """A lane per handler replica that reported, and one per handler for the attempts
    that never said where they ran; by handler, then replica."""
    keys = sorted({_lane_of(a) for a in drawn}, key=lambda k: (k[0], k[1] is None, k[1] or 0))
    return [{"id": _lane_id(k), "handler": k[0], "replica": k[1],
             "label": f"{k[0]} · replica {k[1]}" if k[1] is not None else f"{k[0]} · no report"}
            for k in keys]


def _lane_of(a: Attempt) -> tuple[str, int | None]:
    return a.handler, a.execution["replica"] if a.execution else None


def _lane_id(key: tuple[str, int | None]) -> str:
    return f"{key[0]}/{'-' if key[1] is None else key[1]}"


def _as_dict(a: Attempt) -> dict[str, Any]:
    return {**vars(a), "lane": _lane_id(_lane_of(a))}  # its values are bounded copies


# --- traces ----------------------------------------------------------------------------


def _traces(events: list[Envelope], task_ids: list[str],
            status: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each task's trace (up to MAX_TRACES of them, unaccepted tasks first), with long
    values cut. Each is traced on its own events, not the whole log, so a run of many
    tasks costs one pass to sort events by task rather than one per task."""
    request = [e for e in events if isinstance(e, RunRequested)][:1]
    initial = [e for e in events if isinstance(e, PlanChanged) and e.requested][:1]
    ending = [e for e in events if isinstance(e, RunCompleted | RunFailed)][-1:]
    about: dict[str, list[Envelope]] = {}
    for event in events:
        for task_id in about_tasks(event):
            about.setdefault(task_id, []).append(event)
    chosen = sorted(task_ids, key=lambda t: status.get(t) == "accepted")[:MAX_TRACES]
    traces = {}
    for task_id in chosen:
        own = sorted([*request, *initial, *about.get(task_id, []), *ending],
                      key=lambda e: e.seq)
        traces[task_id] = [_bounded(vars(step)) for step in trace(own, task_id)]
    return traces



# --- bounded, JSON-safe values ---------------------------------------------------------


def _bounded(value: Any, limit: int = 30, text: int = 400, depth: int = 5) -> Any:
    """`value` cut to size for the page: at most `limit` items a list or dict, `text`
    characters a string, `depth` levels; what is cut says so."""
    if isinstance(value, str):
        return value if len(value) <= text else value[:text] + f"… ({len(value):,} chars)"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth == 0:
        return short(value, text)
    if isinstance(value, Mapping):
        items = list(value.items())
        kept = {str(k): _bounded(v, limit, text, depth - 1) for k, v in items[:limit]}
        if len(items) > limit:
            kept["…"] = f"{len(items) - limit:,} more"
        return kept
    if isinstance(value, list | tuple):
        kept_list = [_bounded(v, limit, text, depth - 1) for v in value[:limit]]
        if len(value) > limit:
            kept_list.append(f"… {len(value) - limit:,} more")
        return kept_list
    return short(value, text)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as strings (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value

