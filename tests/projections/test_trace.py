"""baton trace: a wrong final answer leads back to the assignment that produced it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from baton import Budget, HandlerInfo, Task, from_task, open_store
from baton.cli import app
from baton.events.errors import UnknownTaskError
from baton.events.model import Failure
from baton.events.schema import FailureReported
from baton.projections.trace import trace
from baton.testing import Scenario


def wrong_answer_run(store_url: str) -> Scenario:
    """`total` sums two counts; `b`'s worker returns a plausible but wrong count."""
    plan = [Task(id="a", capability="count"), Task(id="b", capability="count"),
            Task(id="total", capability="sum",
                 inputs={"a": from_task("a"), "b": from_task("b")})]
    handlers = [HandlerInfo(name="careful", capabilities=("count",), capacity=1),
                HandlerInfo(name="sloppy", capabilities=("count",), capacity=1),
                HandlerInfo(name="adder", capabilities=("sum",))]
    with open_store(store_url) as store:
        run = Scenario(plan, handlers, run_id="wrong", store=store)
        run.succeed(run.assignment("a").id, {"count": 10})
        run.succeed(run.assignment("b").id, {"count": 7})  # the truth is 70
        run.succeed("total#1", {"sum": 17})
    return run


def test_the_trace_of_a_wrong_answer_names_the_assignment_behind_it(store_url: str) -> None:
    """From the synthesis back to the plan: b's accepted output, its assignment, its
    handler and routing reason, and the state digest at each decision."""
    run = wrong_answer_run(store_url)
    steps = trace(run.log, "b")
    assert [s.type for s in steps] == ["RunCompleted", "ResultValidated", "ResultReceived",
                                       "AssignmentDispatched", "PlanChanged"]
    assert steps[0].detail["used"] == {"count": 7}
    assert steps[2].detail["output"] == {"count": 7}
    dispatch = steps[3]
    assert dispatch.what == "b#1 -> sloppy" and dispatch.rule == "route.least_loaded"
    assert [c["handler"] for c in dispatch.candidates] == ["careful", "sloppy"]
    assert all(s.state_digest for s in steps if s.type != "ResultReceived")

    downstream = trace(run.log, "total")[-2]
    assert downstream.detail["inputs"] == {"a": {"count": 10}, "b": {"count": 7}}


def test_trace_through_the_cli_and_for_an_unknown_task(store_url: str) -> None:
    """`baton trace RUN TASK --json` gives the same chain; an unknown task exits 2."""
    wrong_answer_run(store_url)
    runner = CliRunner()
    done = runner.invoke(app, ["trace", "wrong", "b", "--store", store_url, "--json"])
    assert done.exit_code == 0
    assert [s["what"] for s in json.loads(done.stdout)][3] == "b#1 -> sloppy"
    text = runner.invoke(app, ["trace", "wrong", "b", "--store", store_url]).stdout
    assert "b#1 -> sloppy  [route.least_loaded]" in text
    missing = runner.invoke(app, ["trace", "wrong", "zzz", "--store", store_url])
    assert missing.exit_code == 2 and "no task 'zzz'" in missing.stderr
    with pytest.raises(UnknownTaskError):
        trace([], "zzz")


def test_the_trace_of_a_failed_task_prints_each_attempts_traceback(store_url: str) -> None:
    """A task that failed for good: `baton trace` prints the traceback each failed
    attempt's handler reported, in full, not only under --json."""
    plan = [Task(id="a", capability="count", budget=Budget(attempts=1), required=False)]
    raised = ('Traceback (most recent call last):\n  File "handlers.py", line 12, in count\n'
              '    return {"count": 1 / 0}\nZeroDivisionError: division by zero\n')
    with open_store(store_url) as store:
        run = Scenario(plan, [HandlerInfo(name="h", capabilities=("count",))], run_id="sad",
                       store=store)
        run.stimulate(FailureReported, failure=Failure(
            assignment_id="a#1", error_type="ZeroDivisionError", message="division by zero",
            traceback=raised))
    assert run.state.tasks["a"].status == "abandoned"
    text = CliRunner().invoke(app, ["trace", "sad", "a", "--store", store_url]).stdout
    assert "        traceback:\n" in text
    assert '          File "handlers.py", line 12, in count\n' in text
    assert "          ZeroDivisionError: division by zero\n" in text


def test_a_transcript_reads_as_a_line_a_message_part() -> None:
    """What the model was asked and what it answered, each part cut to the width, and
    nothing a reader would choke on when the transcript is not pydantic-ai's."""
    from baton.projections.trace import transcript_lines

    messages = [
        {"kind": "request", "parts": [{"part_kind": "user-prompt",
                                       "content": "Count the\napples. " + "x" * 200}]},
        {"kind": "response", "parts": [{"part_kind": "tool-call",
                                        "args": {"count": 3}}, "junk"]},
    ]
    lines = transcript_lines(messages, width=30)
    assert lines == ["request user-prompt: Count the apples. " + "x" * 12 + "…",
                     'response tool-call: {"count": 3}']
    assert transcript_lines("not a list") == ["(no messages)"]
