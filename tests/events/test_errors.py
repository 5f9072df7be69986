"""Error names: every error class Baton raises ends in Error (an interrupt, like
Python's KeyboardInterrupt, does not), and code written against the names before the
suffix keeps working, warned."""

from __future__ import annotations

import inspect

import pytest

import baton
import baton.events
from baton.events import errors


def test_every_error_is_named_for_what_it_is() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.BatonError)]
    assert len(classes) > 10
    for error in classes:
        assert error.__name__.endswith("Error") or error is errors.RunInterrupted, error


@pytest.mark.parametrize("module", [baton, baton.events, errors])
def test_a_former_name_still_catches_what_its_error_raises(module: object) -> None:
    with pytest.warns(DeprecationWarning, match="BadLog is now BadLogError"):
        former = module.BadLog  # type: ignore[attr-defined]
    assert former is errors.BadLogError
    with pytest.raises(former):
        raise errors.BadLogError("a gap", run_id="r", seq=3)


def test_a_name_that_never_was_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'BadThing'"):
        baton.BadThing  # type: ignore[attr-defined]  # noqa: B018


def test_a_former_name_resolves_only_where_it_was_exported() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'UnknownRun'"):
        baton.UnknownRun  # type: ignore[attr-defined]  # noqa: B018
    with pytest.warns(DeprecationWarning, match="baton.events.UnknownRun is now"):
        assert baton.events.UnknownRun is errors.UnknownRunError  # type: ignore[attr-defined]


def test_step_still_returns_the_decisions_decide_in_place_makes() -> None:
    from baton.events.decider import decide_in_place
    from baton.events.schema import RunRequested
    from baton.events.state import RunState
    from tests.fixtures.specs import counting, handlers

    request = RunRequested(run_id="r", seq=1, tasks=(counting("a"),), handlers=handlers("h"))
    with pytest.warns(DeprecationWarning, match="step is now decide_in_place"):
        step = baton.events.step  # type: ignore[attr-defined]
    decisions = step(RunState(), request, baton.DefaultPolicy())
    made = decide_in_place(RunState(), request, baton.DefaultPolicy())
    assert decisions == [event for event, _ in made[1:]] and decisions
