"""Agents as workers, on pydantic-ai's own FunctionModel and TestModel through real Ray
workers and a real store: the prompt an assignment becomes, a retry that carries the
validator's feedback, what each attempt spent, and dry runs with --model test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import baton
from baton import DefaultPolicy, Task, Verdict, load_spec, open_store
from baton.events.errors import BadAnswerError, BadSpecError
from baton.events.schema import (
    AssignmentDispatched,
    FailureReported,
    ResultReceived,
    ResultsChecked,
    ResultValidated,
)
from baton.events.store.sealing import KEY_ENV, new_key
from baton.projections.trace import trace, transcript_lines
from baton.replay import counterfactual, verify
from tests.fixtures import agents

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_rejected_answer_is_asked_again_with_the_feedback_in_its_prompt(
        store_url: str) -> None:
    result = baton.run(agents.research_spec(), store=store_url, run_id="fruit")
    assert result.ok, result.error
    with open_store(store_url) as store:
        log = store.read("fruit")
        assert verify(store, "fruit").reproduced
    verdicts = {e.assignment_id: e.outcome for e in log if isinstance(e, ResultValidated)}
    assert verdicts == {"q1#1": "rejected", "q2#1": "rejected",
                        "q1#2": "accepted", "q2#2": "accepted"}
    first, accepted = (e.result.output["saw"] for e in log if isinstance(e, ResultReceived)
                       and e.result.assignment_id in ("q1#1", "q1#2"))
    assert first.startswith("Count the apples.") and "not accepted" not in first
    assert "count must not be negative" in accepted  # the retry was told why
    inputs = json.loads(accepted.split("Inputs (JSON):\n", 1)[1])
    assert inputs == {"basket": ["apple", "pear", "apple"]}  # its own, nothing else
    assert all("hunter2" not in e.result.output["saw"] for e in log
               if isinstance(e, ResultReceived) and e.result.assignment_id.startswith("q1"))
    for received in (e for e in log if isinstance(e, ResultReceived)):
        usage = received.result.usage
        assert usage is not None and usage.model == "wrong-until-told"
        assert usage.requests == 1 and usage.input_tokens > 0 and usage.output_tokens > 0
        assert usage.cost_usd is None  # no price for this model: absent, not zero


def test_a_dry_run_answers_every_agent_with_the_test_model(store_url: str) -> None:
    """An agent meant for a provider whose package and key are not here runs with
    model='test': no key, no network; the model used is recorded with each result."""
    result = baton.run(agents.writing_spec(), store=store_url, run_id="dry", model="test")
    assert result.ok, result.error
    assert set(result.output["draft"]) == {"count", "saw"}
    assert isinstance(result.output["blurb"], str)
    with open_store(store_url) as store:
        usages = [e.result.usage for e in store.read("dry") if isinstance(e, ResultReceived)]
    assert [u.model for u in usages if u is not None] == ["test", "test"]


def test_a_model_that_cannot_be_used_is_refused_before_anything_starts(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_MODEL", "nosuch:model")
    with pytest.raises(BadSpecError, match=r"model .nosuch:model., which cannot be used here: .*"
                                           r"--model test runs every agent"):
        baton.run(agents.writing_spec(), store=store_url, run_id="refused")
    with open_store(store_url) as store:
        assert store.last_seq("refused") == 0


def test_a_plain_handler_reports_what_it_spent_priced_where_the_table_knows(
        store_url: str) -> None:
    spec = baton.Spec(goal="priced", handlers=[agents.reports_its_own_usage], tasks=[
        baton.Task(id="known", capability="priced", inputs={"model": "openai:gpt-4o"}),
        baton.Task(id="unknown", capability="priced", inputs={"model": "acme:mystery"}),
        baton.Task(id="failed", capability="priced", required=False,
                   inputs={"model": "openai:gpt-4o", "fail": True},
                   budget=baton.Budget(attempts=1))])
    result = baton.run(spec, store=store_url, run_id="priced")
    assert result.ok, result.error
    with open_store(store_url) as store:
        recorded = list(store.read_recorded("priced"))
    usage = {e.result.assignment_id: (e.result.usage, data) for e, data in recorded
             if isinstance(e, ResultReceived)}
    known, _ = usage["known#1"]
    assert known is not None and known.cost_usd == pytest.approx(0.0035)
    unknown, data = usage["unknown#1"]
    assert unknown is not None and unknown.cost_usd is None and b"cost_usd" not in data
    [failed] = [e.failure for e, _ in recorded if isinstance(e, FailureReported)]
    assert failed.usage is not None and failed.usage.input_tokens == 1000


def test_the_research_team_example_dry_runs_and_refuses_a_wet_run_it_cannot_make(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/research_team.py completes with --model test on a machine with no key;
    without it, each agent's own model (OpenAI's, not installed here) is refused before
    anything starts, naming the agent."""
    monkeypatch.delenv("BATON_MODEL", raising=False)
    spec = load_spec(str(EXAMPLES / "research_team.py"))
    with pytest.raises(BadSpecError, match=r"agent 'planner' answers with model "
                                           r"'openai:gpt-4o', which cannot be used here"):
        baton.run(spec, store=store_url, run_id="wet")
    result = baton.run(spec, store=store_url, run_id="team", model="test")
    assert result.ok, result.error
    assert set(result.output) == {"question", "report", "sources"}
    with open_store(store_url) as store:
        tasks = store.state("team").tasks
        assert verify(store, "team").reproduced
    assert {"plan", "write"} <= set(tasks) and any(t.startswith("research-") for t in tasks)
    assert all(record.status == "accepted" for record in tasks.values())


def test_the_research_teams_check_sends_an_answer_that_contradicts_another_back(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's own policy, its agents on a scripted model: research-2 dates Ray a
    year before research-1 does. The check sends research-2 back told what research-1
    says (its next prompt holds it), the report is written again from the corrected
    answers, the run completes, replays, and `trace` names the check."""
    monkeypatch.delenv("BATON_MODEL", raising=False)
    spec = agents.scripted(load_spec(str(EXAMPLES / "research_team.py")))
    result = baton.run(spec, store=store_url, run_id="agree")
    assert result.ok, result.error
    with open_store(store_url) as store:
        log = store.read("agree")
        assert verify(store, "agree").reproduced
    checked = [e for e in log if isinstance(e, ResultsChecked)]
    assert [c.reason.rule for c in checked] == ["check.sent_back", "check.all_settled"]
    assert list(checked[0].verdict.sent_back) == ["research-2"]
    assert checked[0].reason.facts["redone_after"] == ["write"]
    sent = [e.assignment.id for e in log if isinstance(e, AssignmentDispatched)]
    assert sorted(sent) == ["plan#1", "research-1#1", "research-2#1", "research-2#2",
                            "write#1", "write#2"]
    [redo] = [e.result for e in log if isinstance(e, ResultReceived)
              and e.result.assignment_id == "research-2#2"]
    assert "you give 'Year Ray was released' as '2016', but research-1 gives '2017'" in (
        json.dumps(redo.transcript))  # the prompt the model was given
    assert redo.output["figures"] == {"Year Ray was released": "2017"}
    [rewrite] = [e.assignment for e in log if isinstance(e, AssignmentDispatched)
                 and e.assignment.id == "write#2"]
    assert "2016" not in json.dumps(rewrite.inputs)  # written again from the corrected
    rules = [step.rule for step in trace(log, "research-2")]
    assert "check.sent_back" in rules and rules[0] == "run.completed"


@pytest.mark.parametrize("answer", ["raise_budget", "stop"])
def test_a_token_budget_reached_stops_dispatch_and_a_person_decides(
        store_url: str, answer: str) -> None:
    """The first answer spends more tokens than the budget allows: nothing more is
    dispatched, one question is asked, and the run waits. Raised, a resume completes
    the run; stopped, it fails with its accepted output kept. Both logs replay."""
    spec = agents.budgeted_spec(max_tokens=1)
    waiting = baton.run(spec, store=store_url, run_id=answer)
    assert waiting.status == "waiting" and waiting.progress.accepted == 1
    [asked] = baton.inbox(answer, store=store_url)
    assert asked.task_id == "" and "tokens" in asked.question
    with pytest.raises(BadAnswerError, match="asks about the run's budget"):
        baton.answer(asked.escalation_id, "retry", store=store_url)
    baton.answer(asked.escalation_id, answer, raise_by=100_000 if answer == "raise_budget"
                 else None, store=store_url)
    ended = baton.resume(answer, store=store_url, spec=spec)
    with open_store(store_url) as store:
        log = store.read(answer)
        assert verify(store, answer).reproduced
        outputs = store.state(answer).outputs()
    assert sum(1 for e in log if e.type == "EscalationRaised") == 1
    if answer == "raise_budget":
        assert ended.ok and len(outputs) == 3
        assert [e.budget.max_tokens for e in log if e.type == "BudgetRaised"] == [100_001]
    else:
        assert ended.status == "failed" and "stopped at its budget" in (ended.error or "")
        assert list(outputs) == ["t1"]


@pytest.mark.unverifiable("kept")  # sealed with the test's own key: it verifies the run
def test_an_agents_transcript_is_kept_sealed_and_read_back_by_trace(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer keeps the agent's messages: the exact prompt and reply, read back by
    `baton trace` without calling the model again. With a key set, neither they nor the
    inputs they quote are anywhere in the store's files."""
    monkeypatch.setenv(KEY_ENV, new_key())
    assert baton.run(agents.research_spec(), store=store_url, run_id="kept").ok
    files = Path(store_url.removeprefix("sqlite:///")).parent.glob("*")
    assert not any(b"hunter2" in f.read_bytes() for f in files if f.is_file())
    with open_store(store_url) as store:
        log = store.read("kept")
        assert verify(store, "kept").reproduced
    [retried] = [e for e in log if isinstance(e, ResultReceived)
                 and e.result.assignment_id == "q1#2"]
    said = json.dumps(retried.result.transcript)
    assert "count must not be negative" in said and "wrong-until-told" in said
    [step] = [s for s in trace(log, "q1") if s.type == "ResultReceived"]
    lines = transcript_lines(step.detail["transcript"])
    assert lines[0].startswith("request user-prompt: Count the apples.")
    assert any(line.startswith("response tool-call:") for line in lines)


def test_a_stricter_policy_replays_the_recorded_replies_without_calling_a_model(
        store_url: str) -> None:
    """A counterfactual replay of the agents' run under a policy that wants a count of
    at least four: the recorded replies are fed to it as they were (usage and transcript
    included), no model is asked anything, and the answers it would not believe leave
    their tasks escalated where the run accepted them."""

    class Stricter(DefaultPolicy):
        def validate(self, task: Task, output: Any) -> Verdict:
            verdict = super().validate(task, output)
            if verdict.accepted and output["count"] < 4:
                return Verdict.of(["a count under four is not believed"])
            return verdict

    assert baton.run(agents.research_spec(), store=store_url, run_id="strict").ok
    asked_before = len(agents.ASKED)
    with open_store(store_url) as store:
        recorded = {e.result.assignment_id: e.result for e in store.read("strict")
                    if isinstance(e, ResultReceived)}
        report = counterfactual(store, "strict", Stricter())
    assert len(agents.ASKED) == asked_before  # no model was called here
    replayed = {e.result.assignment_id: e.result for e in report.log
                if isinstance(e, ResultReceived)}
    assert replayed and all(replayed[aid] == recorded[aid] for aid in replayed)
    assert any("a count under four is not believed" in line
               for parting in report.partings for line in parting.replayed)
    assert report.outcome["status"] == "waiting" and report.outcome["accepted"] == 0
    assert {(c.task_id, c.replayed) for c in report.changed_tasks} == {
        (t, "escalated after 2 attempt(s), last on researcher") for t in ("q1", "q2")}
