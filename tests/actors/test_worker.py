"""The worker on its own (no Ray): what a handler raises ends its own assignment, and a
call's outcomes stop at the return budget."""

from __future__ import annotations

from typing import Any

import pytest

import baton
from baton import Assignment
from baton.actors.worker import Worker
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
