"""The worker on its own (no Ray): what a handler raises ends its own assignment, a
call's outcomes stop at the return budget, and an async worker runs its handler's
concurrency at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import baton
from baton import Assignment
from baton.actors.worker import AsyncWorker, Worker
from baton.events.errors import BadSpecError
from baton.events.model import Failure, Result


def assignments(count: int) -> list[Assignment]:
    return [Assignment(id=f"t{i}#1", task_id=f"t{i}", attempt=1, handler="h",
                       capability="x", instructions="", inputs={"i": i},
                       context_digest="-") for i in range(count)]


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), ValueError("no")],
                         ids=["SystemExit", "KeyboardInterrupt", "ValueError"])
def test_what_a_handler_raises_fails_its_own_assignment_not_the_batch(
    raised: BaseException,
) -> None:
    """The second of three raises: it alone fails, with the exception's type and
    traceback; the first and third are run and returned."""

    @baton.handler(capabilities=["x"])
    def second_raises(assignment: Assignment) -> dict[str, Any]:
        if assignment.inputs["i"] == 1:
            raise raised
        return {"i": assignment.inputs["i"]}

    first, second, third = Worker(second_raises).run(assignments(3))
    assert isinstance(first, Result) and isinstance(third, Result)
    assert isinstance(second, Failure) and second.assignment_id == "t1#1"
    assert second.error_type == type(raised).__qualname__ and second.traceback


def test_a_call_stops_once_its_outputs_fill_the_return_budget() -> None:
    """Outputs of about 600 bytes with a budget of 1,000: the call returns the first
    two outcomes of five (the coordinator sends the other three again)."""

    @baton.handler(capabilities=["x"])
    def big(assignment: Assignment) -> dict[str, str]:
        return {"pad": "x" * 590}

    outcomes = Worker(big, return_budget_bytes=1000).run(assignments(5))
    assert [o.assignment_id for o in outcomes] == ["t0#1", "t1#1"]
    assert Worker(big).run(assignments(5))[-1].assignment_id == "t4#1"


def test_an_async_worker_runs_its_concurrency_at_once_and_answers_in_order() -> None:
    """Six assignments of an async handler with concurrency 3 on one event loop: never
    more than three running at once, the outcomes in the order given, what one raises
    its own failure, and a coroutine never mistaken for an output."""
    running, most = 0, 0

    @baton.handler(capabilities=["x"], concurrency=3)
    async def waits(assignment: Assignment) -> dict[str, int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        if assignment.inputs["i"] == 4:
            raise ValueError("four")
        return {"i": assignment.inputs["i"]}

    outcomes = asyncio.run(AsyncWorker(waits).run(assignments(6)))
    assert [o.assignment_id for o in outcomes] == [f"t{i}#1" for i in range(6)]
    assert isinstance(outcomes[4], Failure) and outcomes[4].error_type == "ValueError"
    assert [o.output for o in outcomes if isinstance(o, Result)] == [
        {"i": i} for i in (0, 1, 2, 3, 5)]
    assert most == 3


def test_an_async_call_stops_at_the_return_budget_with_a_prefix_of_its_outcomes() -> None:
    """What has not started once the outputs fill the budget is left to be sent again;
    what is returned is still the first assignments' outcomes."""

    @baton.handler(capabilities=["x"], concurrency=2)
    async def big(assignment: Assignment) -> dict[str, str]:
        await asyncio.sleep(0.001 * assignment.inputs["i"])
        return {"pad": "x" * 590}

    outcomes = asyncio.run(AsyncWorker(big, return_budget_bytes=1000).run(assignments(6)))
    ids = [o.assignment_id for o in outcomes]
    assert ids == [f"t{i}#1" for i in range(len(ids))] and 2 <= len(ids) < 6


@pytest.mark.parametrize(("options", "message"), [
    ({"concurrency": 4}, "concurrency=4 needs an async def handler"),
    ({"concurrency": 0}, "concurrency must be at least 1"),
])
def test_concurrency_is_for_async_handlers(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadSpecError, match=message):
        baton.handler(capabilities=["x"], **options)(lambda assignment: {})


def test_an_async_handlers_queue_holds_at_least_what_it_runs_at_once() -> None:
    async def waits(assignment: Assignment) -> dict[str, int]:
        return {}

    class Waits:
        async def __call__(self, assignment: Assignment) -> dict[str, int]:
            return {}

    assert baton.handler(concurrency=32)(waits).queue_depth == 32
    assert baton.handler(concurrency=4)(waits).queue_depth == 16
    assert baton.handler(Waits).is_async and not baton.handler(lambda a: {}, name="s").is_async
    with pytest.raises(BadSpecError, match=r"queue_depth \(2\) must be at least its "
                                           r"concurrency \(4\)"):
        baton.handler(concurrency=4, queue_depth=2)(waits)


def test_a_handler_that_is_cancelled_inside_fails_alone() -> None:
    """A CancelledError out of a handler's own waiting (not its call's) fails that
    assignment; the others of the call are answered as ever."""

    @baton.handler(capabilities=["x"], concurrency=2)
    async def gives_up(assignment: Assignment) -> dict[str, int]:
        if assignment.inputs["i"] == 1:
            raise asyncio.CancelledError("the model call was cancelled")
        return {"i": assignment.inputs["i"]}

    outcomes = asyncio.run(AsyncWorker(gives_up).run(assignments(3)))
    assert [type(o).__name__ for o in outcomes] == ["Result", "Failure", "Result"]
    assert isinstance(outcomes[1], Failure) and outcomes[1].error_type == "CancelledError"


def test_a_long_transcript_keeps_its_prompt_and_reply_and_counts_toward_the_return() -> None:
    """A transcript past max_output_bytes keeps its first messages and its last, with a
    message saying how many were left out between; its bytes count toward the call's
    return budget, so two such answers fill a small one."""

    @baton.handler(capabilities=["x"])
    def chatty(assignment: Assignment) -> dict[str, Any]:
        baton.report_transcript(
            [{"kind": "request", "parts": [{"content": f"prompt {assignment.id}"}]}]
            + [{"kind": "response", "parts": [{"content": "x" * 500}]}] * 40
            + [{"kind": "response", "parts": [{"content": "the reply"}]}])
        return {"ok": True}

    outcomes = Worker(chatty, max_output_bytes=4_000, return_budget_bytes=7_000).run(
        assignments(4))
    assert len(outcomes) == 2  # 3,500-odd bytes of transcript each
    said = outcomes[0].transcript
    assert said[0]["parts"][0]["content"] == "prompt t0#1"
    assert said[-1]["parts"][0]["content"] == "the reply"
    [note] = [m for m in said if m["kind"] == "omitted"]
    assert note["messages"] == 41 - len(said) + 2 and "max_output_bytes" in note["note"]
    assert len(json.dumps(said)) <= 4_000
