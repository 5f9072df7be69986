"""The report's page: self-contained, its run data escaped, every task and attempt in it."""

from __future__ import annotations

import heapq
import json
import math
import random
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest

from baton import Budget, HandlerInfo, Task, from_task
from baton.events.model import Execution, Failure, Result
from baton.events.schema import (
    AssignmentDispatched,
    CoordinatorRestarted,
    Decision,
    FailureReported,
    HumanAnswered,
    ResultReceived,
    Stimulus,
    TimerFired,
    WorkerStuck,
)
from baton.events.store import EventStore
from baton.projections import report
from baton.projections.log import concerns
from baton.projections.trace import as_dicts, trace
from baton.testing import Scenario
from tests.fixtures.golden import every_event_type
from tests.fixtures.specs import counting

T0 = 1_700_000_000.0
HOSTILE = "x</script><b>"  # a task id is user data: no whitespace or '#', nothing else barred
PAYLOAD = "</script><script>window.pwned = 1</script><!--"
REPLICAS = {"fast": 2, "careful": 1, "adder": 1}
# What becomes of each attempt at a task, in order; an attempt not listed succeeds.
FATES = {
    "flaky": ["error", "ok"],
    "negative": ["rejected", "ok"],
    "slow": ["stuck", "ok"],
    "lost": ["lost", "ok"],
    "stubborn": ["error", "error", "ok"],  # reassigned, then escalated, then answered
    "extra": ["error", "error"],  # optional: reassigned, then abandoned
}


class Desk(Scenario):
    """A Scenario with a clock, run as a small simulated cluster: each dispatched attempt
    goes to its handler's replica that frees first and ends as FATES says, its result or
    failure recorded when the handler ends (with `Execution`: replica, pid, node, times)."""

    def __init__(self, *args: Any, seed: int = 11, **kwargs: Any) -> None:
        self.now = T0
        self.rng = random.Random(seed)
        self.fates = {task: list(fates) for task, fates in FATES.items()}
        self.sent: dict[str, float] = {}
        self.free: dict[tuple[str, int], float] = {}
        self.agenda: list[tuple[float, int, Callable[[], object]]] = []
        super().__init__(*args, **kwargs)

    def stimulate(self, kind: type[Stimulus], **fields: Any) -> list[Decision]:
        if fields.get("recorded_at") is None:
            fields["recorded_at"] = self.now
        decisions = super().stimulate(kind, **fields)
        for d in decisions:
            if isinstance(d, AssignmentDispatched) and d.assignment.id not in self.sent:
                self.sent[d.assignment.id] = self.now
                self._plan(d.assignment.id, d.assignment.task_id, d.assignment.handler)
        return decisions

    def at(self, when: float, action: Callable[[], object]) -> None:
        heapq.heappush(self.agenda, (when, len(self.agenda) + len(self.log), action))

    def _plan(self, aid: str, task_id: str, handler: str) -> None:
        fates = self.fates.get(task_id, [])
        fate = fates.pop(0) if fates else "ok"
        if fate == "stuck":  # no answer: the deadline passes, the stuck worker is replaced
            deadline = self.now + (self.state.tasks[task_id].task.budget.timeout_s or 1)
            self.at(deadline, lambda: self.stimulate(
                WorkerStuck, assignment_id=aid, handler=handler,
                note="replica 0 still running it at its deadline"))
            self.at(deadline + 0.001, lambda: self.stimulate(TimerFired, assignment_id=aid))
            return
        replica = min(range(REPLICAS[handler]),
                      key=lambda r: (self.free.get((handler, r), 0.0), r))
        start = max(self.now + 0.004, self.free.get((handler, replica), 0.0))
        took = self.rng.uniform(0.5, 1.6) if handler == "careful" else self.rng.uniform(0.1, 0.7)
        end = start + took
        self.free[handler, replica] = end
        ran = Execution(node="7c1e9a40b2d35f86" * 3, pid=4100 + 17 * len(handler) + replica,
                        replica=replica, started_at=start, ended_at=end)
        if fate == "lost":  # the process died: no worker says where it ran
            failure = Failure(assignment_id=aid, kind="worker_lost",
                              message="the worker process died (SIGKILL)")
            self.at(end, lambda: self.stimulate(FailureReported, failure=failure))
        elif fate == "error":
            failure = Failure(assignment_id=aid, error_type="ConnectionError",
                              message=f"upstream refused {task_id}", execution=ran)
            self.at(end, lambda: self.stimulate(FailureReported, failure=failure))
        else:
            output: Any = ({"count": -3} if fate == "rejected" else
                           {"count": 7, "note": PAYLOAD} if task_id == HOSTILE else
                           {"total": 42} if task_id == "total" else
                           {"count": self.rng.randrange(100)})
            result = Result(assignment_id=aid, output=output, execution=ran)
            self.at(end, lambda: self.stimulate(ResultReceived, result=result))

    def go(self, restart_at: float | None = None) -> Desk:
        """Run the agenda to its end; a person answers each escalation a second after it
        is raised; the coordinator restarts once at `restart_at`."""
        if restart_at is not None:
            self.at(T0 + restart_at, lambda: self.stimulate(CoordinatorRestarted,
                                                            note="its node was drained"))
        answered: set[str] = set()
        while self.agenda:
            when, _, action = heapq.heappop(self.agenda)
            self.now = max(self.now, when)
            action()
            for escalation in set(self.state.escalations) - answered:
                answered.add(escalation)
                self.at(self.now + 1.0, lambda e=escalation: self.stimulate(
                    HumanAnswered, escalation_id=e, action="retry", answered_by="oncall",
                    note="the upstream is back"))
        return self


def seeded_run(store: EventStore | None = None, run_id: str = "seeded") -> Desk:
    """A run with failures of every kind, on a clock, completed: a handler error then a
    retry, a rejected output then a retry, a stuck worker replaced and its attempt timed
    out, a lost worker, a task reassigned then escalated and answered by a person, an
    optional task abandoned, a coordinator restart, and a task id and output that are
    hostile markup."""
    names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "flaky", "negative",
             "lost", "stubborn", HOSTILE]
    plan = [counting(n, budget=Budget(attempts=1 if n == "stubborn" else 2)) for n in names]
    plan += [counting("slow", budget=Budget(attempts=2, timeout_s=2.0)),
             counting("extra", required=False, budget=Budget(attempts=1)),
             Task(id="total", capability="sum",
                  inputs={n: from_task(n) for n in ["alpha", "beta", "gamma", "slow"]})]
    handlers = [HandlerInfo(name="fast", capabilities=("count",), capacity=4),
                HandlerInfo(name="careful", capabilities=("count",), capacity=2),
                HandlerInfo(name="adder", capabilities=("sum",))]
    return Desk(plan, handlers, run_id=run_id, goal="count everything <carefully>",
                store=store).go(restart_at=1.5)


@pytest.fixture(scope="module")
def run() -> Desk:
    return seeded_run()


@pytest.fixture(scope="module")
def page(run: Desk) -> str:
    return report.html(run.log)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parsed(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    return elements


def test_the_run_has_what_the_browser_test_looks_for(run: Desk) -> None:
    """The seeded run completes, with every kind of failure the report marks."""
    assert run.state.status == "completed"
    types = {type(e).__name__ for e in run.log}
    assert {"WorkerReplaced", "EscalationRaised", "HumanAnswered", "CoordinatorRestarted",
            "TimerFired"} <= types
    actions = {e.action for e in run.log if type(e).__name__ == "RecoveryChosen"}
    assert {"retry", "reassign", "escalate", "abandon"} <= actions


def test_the_page_loads_nothing_from_anywhere(page: str) -> None:
    """No URL, no src or href, no <link>: CSS, script and drawing are all inline, and a
    content security policy forbids fetching anything."""
    assert "http://" not in page and "https://" not in page
    elements = parsed(page)
    assert not [(tag, attrs) for tag, attrs in elements.tags
                if {"src", "href", "srcset", "action"} & set(attrs) or tag in ("link", "iframe")]
    assert [tag for tag, _ in elements.tags].count("style") == 1
    policy = next(attrs["content"] for tag, attrs in elements.tags
                  if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy")
    assert policy is not None and "default-src 'none'" in policy


def test_run_data_is_escaped_and_reads_back_whole(run: Desk, page: str) -> None:
    """Markup in a task id, a goal or an output never reaches the page as markup: the
    data sits in one JSON script element with no '<' in it, and parses back to exactly
    what the report computed."""
    assert PAYLOAD not in page and HOSTILE not in page and "<carefully>" not in page
    elements = parsed(page)
    data_scripts = [attrs for tag, attrs in elements.tags if tag == "script"]
    assert data_scripts[0] == {"type": "application/json", "id": "baton-data"}
    assert len(data_scripts) == 2  # the data, then the page's own script
    embedded = elements.scripts[0]
    assert "<" not in embedded and ">" not in embedded
    data = json.loads(embedded)
    assert data == json.loads(json.dumps(report.page_data(run.log)))
    assert data["summary"]["goal"] == "count everything <carefully>"
    assert any(PAYLOAD in json.dumps(step) for step in data["traces"][HOSTILE])
    assert "<title>baton report: seeded</title>" in page


def test_every_task_and_attempt_is_in_the_data(run: Desk) -> None:
    """Each task of the ledger is listed with its attempts; each dispatched attempt is
    drawn with the outcome that ended it and the recovery chosen after it."""
    data = report.page_data(run.log)
    assert [t["id"] for t in data["tasks"]] == list(run.state.tasks)
    dispatched = {e.assignment.id for e in run.log if isinstance(e, AssignmentDispatched)}
    attempts = {a["id"]: a for a in data["attempts"]}
    assert set(attempts) == dispatched
    assert sum(len(t["assignments"]) for t in data["tasks"]) == len(dispatched)
    outcome = {aid: (a["outcome"], a["recovery"] and a["recovery"]["action"])
               for aid, a in attempts.items()}
    assert outcome["flaky#1"] == ("failed", "retry")
    assert outcome["negative#1"] == ("rejected", "retry")
    assert outcome["slow#1"] == ("timed out", "reassign")  # fast: 3 failures in a row
    assert outcome["lost#1"] == ("lost", "retry")
    assert outcome["stubborn#1"] == ("failed", "reassign")
    assert outcome["stubborn#2"] == ("failed", "escalate")
    assert outcome["stubborn#3"] == ("accepted", None)
    assert outcome["extra#2"] == ("failed", "abandon")
    assert {m["kind"] for m in attempts["slow#1"]["marks"]} == {"stuck", "replaced"}
    assert "escalated" in {m["kind"] for m in attempts["stubborn#2"]["marks"]}
    negative = attempts["negative#1"]["validation"]
    assert negative["outcome"] == "rejected" and negative["rule"] == "validate.rejected"
    assert negative["problems"] == ["count must not be negative: got -3"]
    summary = data["summary"]
    assert summary["status"] == "completed" and summary["tasks"] == len(run.state.tasks)
    assert summary["task_status"] == {"accepted": len(run.state.tasks) - 1, "abandoned": 1}
    assert summary["recoveries"]["reassign"] == 3 and summary["escalations"] == 1
    assert summary["makespan_s"] == pytest.approx(run.now - T0)


def test_lanes_are_handler_replicas_and_times_are_the_workers(run: Desk) -> None:
    """An attempt that reported where it ran sits on its replica's lane with the handler's
    own start and end; one that never did (timed out, lost) on its handler's 'no report'
    lane from its dispatch to what ended it."""
    data = report.page_data(run.log)
    assert data["axis"]["unit"] == "s" and data["axis"]["t0"] == T0
    lanes = {lane["id"]: lane["label"] for lane in data["lanes"]}
    assert lanes["fast/0"] == "fast · replica 0" and lanes["fast/1"] == "fast · replica 1"
    attempts = {a["id"]: a for a in data["attempts"]}
    alpha = attempts["alpha#1"]
    ran = next(e.result.execution for e in run.log
               if isinstance(e, ResultReceived) and e.result.assignment_id == "alpha#1")
    assert ran is not None
    assert alpha["lane"] == f"{alpha['handler']}/{ran.replica}"
    assert alpha["execution"]["started_at"] == pytest.approx(ran.started_at - T0, abs=1e-6)
    assert alpha["execution"]["took_s"] == pytest.approx(ran.ended_at - ran.started_at)
    slow = attempts["slow#1"]
    assert slow["lane"] == f"{slow['handler']}/-" and slow["execution"] is None
    assert slow["end_at"] - slow["dispatched_at"] == pytest.approx(2.0, abs=0.01)
    assert attempts["lost#1"]["lane"].endswith("/-")
    kinds = [m["kind"] for m in data["marks"]]
    assert kinds.count("restart") == 1 and kinds.count("answer") == 1 and kinds[-1] == "end"


def test_traces_are_the_ones_baton_trace_prints(run: Desk) -> None:
    """Each task's embedded trace is its trace over the whole log, values cut to size."""
    data = report.page_data(run.log)
    assert set(data["traces"]) == set(run.state.tasks)
    for task_id in run.state.tasks:
        whole = as_dicts(trace(run.log, task_id))
        assert data["traces"][task_id] == json.loads(json.dumps(whole)), task_id


def test_the_tasks_an_event_is_about_are_the_ones_it_concerns() -> None:
    """`about_tasks` (one pass over the log) agrees with `log.concerns` on every event of
    runs holding every event type."""
    for scenario in [*every_event_type(), seeded_run()]:
        task_ids = list(scenario.state.tasks)
        for event in scenario.log:
            about = report.about_tasks(event)
            assert [t for t in task_ids if concerns(event, t)] == [
                t for t in task_ids if t in about], event


def test_a_log_without_a_clock_is_drawn_by_seq() -> None:
    """Scripted runs record no time: every run with every event type still makes a page,
    its axis in seqs (a cancel, a fork, a person's accepted output among them)."""
    for scenario in every_event_type():
        data = report.page_data(scenario.log)
        assert data["axis"]["unit"] == "seq" and data["axis"]["t0"] is None
        for a in data["attempts"]:
            assert a["dispatched_at"] == a["dispatch_seq"]
        report.html(scenario.log)
    cancelled = report.page_data(every_event_type()[1].log)
    assert [m["kind"] for m in cancelled["marks"]] == ["answer", "validated", "cancel", "end"]


def test_a_large_run_is_drawn_in_part_and_says_so(run: Desk,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_BARS the timeline keeps every attempt not accepted and a sample of the
    rest; past MAX_TRACES the tasks not accepted keep their traces first; the tasks
    table keeps every task."""
    monkeypatch.setattr(report, "MAX_BARS", 12)
    monkeypatch.setattr(report, "MAX_TRACES", 3)
    data = report.page_data(run.log)
    drawn = {a["id"]: a["outcome"] for a in data["attempts"]}
    assert len(drawn) <= 12 and "the timeline draws" in data["drawn_note"]
    assert {"flaky#1", "negative#1", "slow#1", "lost#1", "stubborn#1", "stubborn#2",
            "extra#1", "extra#2"} <= set(drawn)
    assert "accepted" in drawn.values()
    assert {a["lane"] for a in data["attempts"]} == {lane["id"] for lane in data["lanes"]}
    assert list(data["traces"]) == ["extra", "alpha", "beta"]
    assert len(data["tasks"]) == len(run.state.tasks)


def test_stats_are_embedded_as_given_and_long_values_are_cut(run: Desk) -> None:
    """A stats dict goes to the page as it is (non-finite numbers as text); a long output
    is cut, saying how long it was."""
    stats = {"handlers": [{"handler": "fast", "p50_ms": 12.5, "max_ms": math.inf}],
             "run": {"events": 99}}
    data = report.page_data(run.log, stats)
    assert json.loads(report.embedded(data["stats"])) == {
        "handlers": [{"handler": "fast", "p50_ms": 12.5, "max_ms": "inf"}], "run": {"events": 99}}
    long = Scenario([Task(id="a", capability="x")],
                    [HandlerInfo(name="h", capabilities=("x",))], run_id="long")
    long.succeed("a#1", {"text": "y" * 10_000, "items": list(range(100))})
    [received] = [s for s in report.page_data(long.log)["traces"]["a"]
                  if s["type"] == "ResultReceived"]
    output = received["detail"]["output"]
    assert output["text"].endswith("… (10,000 chars)") and len(output["text"]) < 500
    assert output["items"][-1] == "… 70 more"
    assert re.search(r'"stats":\{"handlers"', report.html(run.log, stats))
