"""What people send a run, through Python: inbox, answer, cancel (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from typer.testing import CliRunner

import baton
from baton import Budget, open_store
from baton.actors.inbox import inbox_id
from baton.cli import app
from baton.events.errors import BadAnswerError
from baton.events.schema import CancelRequested, HumanAnswered
from baton.events.store.codec import Codec
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers


def waiting_run(store_url: str) -> str:
    with open_store(store_url) as store:
        run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"),
                       run_id="py", store=store)
        run.fail("a#1", "no")
        [escalation] = run.state.escalations
    return escalation


def test_an_answer_is_recorded_in_the_runs_inbox(store_url: str) -> None:
    """inbox() lists the open escalation; answer() records it; a second answer is refused."""
    esc = waiting_run(store_url)
    [open_one] = baton.inbox(store=store_url)
    assert open_one.escalation_id == esc == "py:esc-6" and open_one.handlers == ("h",)
    baton.answer(esc, "retry", note="try the mirror", answered_by="me", store=store_url)
    with open_store(store_url) as store:
        [entry] = store.read(inbox_id("py"))
    assert isinstance(entry, HumanAnswered) and entry.note == "try the mirror"
    assert baton.inbox(store=store_url)[0].answered
    with pytest.raises(BadAnswerError, match="already answered"):
        baton.answer(esc, "abandon", store=store_url)


@pytest.mark.parametrize(
    ("escalation", "action", "handler", "message"),
    [
        ("py:esc-99", "retry", None, "is not open"),
        ("nonsense", "retry", None, "is not an escalation id"),
        ("py:esc-6", "reassign", "nobody", "--reassign needs one of the handlers"),
    ],
)
def test_an_answer_that_cannot_apply_is_refused(
    store_url: str, escalation: str, action: str, handler: str | None, message: str
) -> None:
    """Unknown or closed escalations and impossible handlers are refused, with why."""
    waiting_run(store_url)
    with pytest.raises(BadAnswerError, match=message):
        baton.answer(escalation, action, handler=handler, store=store_url)  # type: ignore[arg-type]


def test_an_answer_to_an_escalation_already_closed_is_refused(store_url: str) -> None:
    """Once the run has taken up an answer, the escalation is closed: a late answer
    through Python is refused with the CLI's message, and nothing reaches the inbox."""
    with open_store(store_url) as store:
        run = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"),
                       run_id="py", store=store)
        run.fail("a#1", "no")
        [esc] = run.state.escalations
        run.answer(esc, "retry")  # the coordinator took an answer up
    with pytest.raises(BadAnswerError, match=f"escalation '{esc}' is not open"):
        baton.answer(esc, "abandon", store=store_url)
    with open_store(store_url) as store:
        assert store.read(inbox_id("py")) == []


def test_a_cancel_request_is_recorded_for_the_coordinator(store_url: str) -> None:
    """cancel() records a CancelRequested in the run's inbox."""
    waiting_run(store_url)
    baton.cancel("py", note="enough", store=store_url)
    with open_store(store_url) as store:
        [entry] = store.read(inbox_id("py"))
    assert isinstance(entry, CancelRequested) and entry.note == "enough"


@pytest.mark.parametrize(("output", "problem"), [
    ({"count": -1}, "count must not be negative"),
    ({"total": 3}, "output does not match Count: count: Field required"),
])
def test_an_output_offered_that_the_task_would_reject_is_refused_before_it_is_recorded(
    store_url: str, tmp_path: Path, output: dict[str, int], problem: str
) -> None:
    """--accept-output is checked against the task's schema and done_when first: exit 2
    naming the problem, and nothing in the inbox; one that fits is recorded."""
    esc = waiting_run(store_url)
    offered = tmp_path / "fixed.json"
    offered.write_text(json.dumps(output))
    done = CliRunner().invoke(app, ["answer", esc, "--accept-output", str(offered),
                                    "--store", store_url])
    assert done.exit_code == 2, done.stderr
    assert problem in done.stderr and "nothing was recorded" in done.stderr
    with open_store(store_url) as store:
        assert store.read(inbox_id("py")) == []
    baton.answer(esc, "accept", output={"count": 2}, store=store_url)
    with open_store(store_url) as store:
        [entry] = store.read(inbox_id("py"))
    assert isinstance(entry, HumanAnswered) and entry.output == {"count": 2}


@pytest.mark.unverifiable("bad")
def test_inbox_skips_a_run_it_cannot_read_and_names_it(store_url: str) -> None:
    """Of every run, one whose log has a gap is named on stderr and passed over; the
    others' escalations are listed, exit 0."""
    esc = waiting_run(store_url)
    bad = Scenario([counting("a", budget=Budget(attempts=1))], handlers("h"), run_id="bad")
    bad.fail("a#1", "no")
    with open_store(store_url) as store:
        store.recorder.insert_events([StoredEvent("bad", e.seq, e.type, Codec().encode(e))
                                      for e in bad.log if e.seq != 4])  # seq 4 lost
    done = CliRunner().invoke(app, ["inbox", "--store", store_url, "--json"])
    assert done.exit_code == 0, done.stderr
    assert [e["escalation_id"] for e in json.loads(done.stdout)] == [esc]
    assert done.stderr.startswith("skipped run bad, which cannot be read: ")
    assert "the log has a gap" in done.stderr
