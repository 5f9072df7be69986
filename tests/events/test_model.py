"""The nouns: tasks, checks, assignments' derived ids, schema topics."""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel, ValidationError

from baton import Check, Task, from_task
from baton.events.model import (
    Budget,
    assignment_id,
    escalation_id,
    escalation_parts,
    schema_identity,
    schema_topic,
    task_of,
)
from tests.fixtures.specs import Count


def test_a_task_depends_on_what_it_names_and_what_its_inputs_use() -> None:
    """`dependencies` is depends_on followed by tasks referenced by inputs, without repeats."""
    task = Task(id="t", capability="c", depends_on=("a",),
                inputs={"x": from_task("b"), "y": from_task("a"), "z": 1})
    assert task.dependencies == ("a", "b")
    assert Task(id="t", capability="c", depends_on=("a", "a")).dependencies == ("a",)
    assert Task(id="t", capability="c", inputs={"z": 1}).dependencies == ()


def test_a_task_is_frozen_and_refuses_unknown_fields() -> None:
    """Recorded values cannot change after the fact and typos are errors, not ignored."""
    task = Task(id="t", capability="c")
    with pytest.raises(ValidationError):
        task.id = "u"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="capabilty"):
        Task(id="t", capabilty="c")  # type: ignore[call-arg]


@pytest.mark.parametrize("bad_id", ["", "a#1", "has space"])
def test_a_task_id_must_be_usable_in_a_derived_assignment_id(bad_id: str) -> None:
    """Task ids are non-empty, without '#' or spaces, so `task#attempt` stays unambiguous."""
    with pytest.raises(ValidationError):
        Task(id=bad_id, capability="c")


def test_assignment_ids_are_derived_not_random() -> None:
    """The id of attempt n of task t is `t#n`."""
    assert assignment_id("audit-os", 3) == "audit-os#3"


def test_ids_read_back_to_what_made_them() -> None:
    """An assignment id names its task; an escalation id its run and seq (a run id may
    hold ':' and '-'); what is not an escalation id names none."""
    assert task_of(assignment_id("audit-os.path", 12)) == "audit-os.path"
    assert escalation_parts(escalation_id("run:a-1", 40)) == ("run:a-1", 40)
    assert escalation_parts("run-1") is None and escalation_parts("run-1:esc-x") is None


def test_an_output_schema_class_is_recorded_by_topic_and_carried_by_its_task() -> None:
    """Task(output_schema=Model) records `module:Name` and carries Model itself; read back
    from its log, the task equals the one written but carries no class, and the decider
    finds it in the schemas it is handed."""
    task = Task(id="t", capability="c", output_schema=Count)
    assert task.output_schema == "tests.fixtures.specs:Count" == schema_topic(Count)
    assert task.schema_model() is Count
    read_back = Task.model_validate_json(task.model_dump_json())
    assert read_back == task and read_back.schema_model() is None
    assert read_back.schema_model({"tests.fixtures.specs:Count": Count}) is Count
    assert pickle.loads(pickle.dumps(task)).schema_model() is Count  # to a coordinator
    moved = task.model_copy(update={"output_schema": "elsewhere:Other"})
    assert moved.schema_model() is None  # the class carried was for the other topic


def test_a_schema_identity_changes_with_the_shape_of_its_outputs() -> None:
    """The recorded identity of an output schema is a digest of its JSON Schema: the same
    for the same class, another for a class that accepts other outputs."""

    class Wider(BaseModel):
        count: int
        note: str = ""

    assert schema_identity(Count) == schema_identity(Count) != schema_identity(Wider)


@pytest.mark.parametrize(
    ("check", "output", "problem"),
    [
        (Check(field="n", op=">=", value=0), {"n": 1}, None),
        (Check(field="n", op=">=", value=0), {"n": -1}, "n >= 0: got -1"),
        (Check(field="a", op="<=", other="b"), {"a": 5, "b": 3}, "a <= b: got 5"),
        (Check(field="items", op="nonempty"), {"items": []}, "items nonempty: items is empty"),
        (Check(field="kind", op="in", value=["x", "y"]), {"kind": "z"}, 'kind in ["x", "y"]: '
         "got 'z'"),
        (Check(field="deep.n", op="==", value=2), {"deep": {"n": 2}}, None),
        (Check(field="n", op=">", value=0, message="n is positive"), {}, "n is positive: the "
         "output has no field 'n'"),
        (Check(field="n", op="<", value=3), {"n": "text"}, "n < 3: got 'text'"),
    ],
)
def test_a_check_says_how_an_output_falls_short(check: Check, output: object,
                                                 problem: str | None) -> None:
    """Checks compare a field with a value or another field and explain any failure."""
    assert check.problem(output) == problem


def test_a_pickled_plan_comes_back_equal_and_shares_what_is_alike() -> None:
    """What Ray carries (a plan to the coordinator, assignments to workers) comes back
    equal, its models usable as built ones, and 1,000 tasks do not bring 1,000 sets of
    field names with them."""
    plan = tuple(Task(id=f"t{i}", capability="echo", inputs={"i": i},
                      budget=Budget(attempts=3)) for i in range(1_000))
    again = pickle.loads(pickle.dumps(plan, protocol=5))
    assert again == plan
    assert again[7].model_dump() == plan[7].model_dump()
    assert again[7].model_copy(update={"id": "x"}).id == "x" and again[8].id == "t8"
    assert len({id(task.model_fields_set) for task in again}) == 1
    with pytest.raises(ValidationError):
        again[0].id = "changed"  # type: ignore[misc]  # still frozen
