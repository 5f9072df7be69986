"""The nouns of a run: Task, Assignment, Result, Failure, Verdict (frozen, JSON-safe).

Everything here is recorded in a log, so every field is plain data. Outputs, inputs and
facts are JSON values; they are typed `Any` because validating arbitrary JSON trees
twice (once by the JSON parser, once by pydantic) doubles the cost of reading a log.
An output schema is recorded by its topic (``module:QualName``). The class itself is
never looked up here: a task made from the class carries it, and for a task read back
from a log the shell resolves it and hands it to the decider (see `Schemas`).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, Field, field_validator

from .errors import BadSpecError
from .values import Frozen as Frozen  # (re-exported: the nouns and their JSON together)
from .values import Json as Json
from .values import as_json as as_json
from .values import canonical_json as canonical_json
from .values import digest as digest
from .values import rebuilt


def _rebuilt_task(cls: type[Task], values: tuple[Any, ...],
                  model: type[BaseModel] | None) -> Task:
    """A task as `Task.__reduce__` pickled it, with the class it carried."""
    task = rebuilt(cls, values)
    assert isinstance(task, Task)
    if model is not None:
        task.carry(model)
    return task


# --- output schemas, recorded by topic -------------------------------------------------

Schemas: TypeAlias = Mapping[str, type[BaseModel]]
"""Output schema classes by topic, resolved by the shell (which may import user code)
and handed to the decider with the policy."""

NO_SCHEMAS: Schemas = {}


def schema_topic(model: type[BaseModel]) -> str:
    """The topic under which an output schema class is recorded."""
    return f"{model.__module__}:{model.__qualname__}"


@cache
def schema_identity(model: type[BaseModel]) -> str:
    """A digest of the schema's JSON Schema: recorded with the plan, so a replay can tell
    whether the class it was given still describes the same outputs."""
    try:
        shape: Any = model.model_json_schema()
    except Exception as error:  # a field type with no JSON Schema: identify it by name
        shape = {"unrepresentable": type(error).__name__, "fields": sorted(model.model_fields)}
    return digest(canonical_json(shape))


# --- tasks -----------------------------------------------------------------------------


class FromTask(Frozen):
    """An input that is another task's accepted output (an allowlisted reference)."""

    from_task: str


def from_task(task_id: str) -> FromTask:
    """Refer to `task_id`'s accepted output as an input; this also makes it a dependency."""
    return FromTask(from_task=task_id)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}

CheckOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in", "nonempty"]


def _lookup(output: Any, path: str) -> Any:
    value = output
    for part in path.split(".") if path else ():
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


class Check(Frozen):
    """One condition an output must meet to count as done, e.g. ``lines >= 0`` or
    ``functions <= lines`` (compare against another field with `other`)."""

    field: str = Field(description="dotted path into the output; empty means the output")
    op: CheckOp
    value: Json = None
    other: str | None = Field(default=None, description="compare against this field instead")
    message: str = ""

    def problem(self, output: Any) -> str | None:
        """None when the output meets this check, else a sentence saying how it does not."""
        label = self.message or self.describe()
        try:
            left = _lookup(output, self.field)
            right = _lookup(output, self.other) if self.other is not None else self.value
        except KeyError as missing:
            return f"{label}: the output has no field {missing.args[0]!r}"
        if self.op == "nonempty":
            return None if left else f"{label}: {self.field or 'output'} is empty"
        try:
            holds = _COMPARE[self.op](left, right)
        except TypeError:
            holds = False
        return None if holds else f"{label}: got {left!r}"

    def describe(self) -> str:
        """The check as a short sentence, e.g. ``lines >= 0``."""
        right = self.other if self.other is not None else json.dumps(self.value)
        subject = self.field or "output"
        return f"{subject} {self.op}" + ("" if self.op == "nonempty" else f" {right}")


class Budget(Frozen):
    """What a task may spend: attempts per handler before reassigning, and a timeout."""

    attempts: int = Field(default=2, ge=1, description="attempts on one handler")
    timeout_s: float | None = Field(default=None, gt=0)


class Task(Frozen):
    """A unit of work in the plan: what to do, who can do it, what counts as done."""

    id: str = Field(min_length=1, pattern=r"^[^#\s]+$")
    capability: str = Field(min_length=1)
    instructions: str = ""
    done_when: tuple[Check, ...] = ()
    inputs: dict[str, FromTask | Json] = Field(default_factory=dict)
    output_schema: str | None = None
    depends_on: tuple[str, ...] = ()
    required: bool = True
    budget: Budget = Budget()

    if not TYPE_CHECKING:  # mypy checks Task(...) against the fields, not this

        def __init__(self, **fields: Any) -> None:
            # Made from the class (in a spec, or by a policy's expand): keep the class, so
            # the decider need not look it up. Read back from a log, a task has none.
            schema = fields.get("output_schema")
            super().__init__(**fields)
            if isinstance(schema, type):
                self.carry(schema)

        # Validation (a task read back from a log) need not call this: pydantic's own
        # marker for an __init__ that only wraps its own (as RootModel's does).
        __init__.__pydantic_base_init__ = True

    @field_validator("output_schema", mode="before")
    @classmethod
    def _schema_class_to_topic(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return schema_topic(value)
        return value

    def __eq__(self, other: object) -> bool:
        # Equal when the recorded fields are: the class a task was made from is not
        # recorded, so a task read back from its log equals the one that was written.
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # (its inputs are a dict)

    def carry(self, model: type[BaseModel]) -> None:
        """Keep `model` as this task's output schema class. Not a field: equality and
        the log ignore it. Only for a task being made (see `carrying`)."""
        private = {"schema": model, "topic": self.output_schema}  # (for that topic only)
        object.__setattr__(self, "__pydantic_private__", private)

    def carrying(self, model: type[BaseModel]) -> Task:
        """This task carrying `model` as its output schema class: itself if it does, else
        a copy that does (the task itself, perhaps in a caller's state, is left alone)."""
        if self.schema_model() is model:
            return self
        copy = self.model_copy()
        copy.carry(model)
        return copy

    def __reduce__(self) -> tuple[Any, ...]:
        # A task keeps its class across processes (to a coordinator, inside a policy),
        # pickled by reference, or by value for a spec loaded from a file.
        _, (cls, values) = super().__reduce__()
        return _rebuilt_task, (cls, values, self.schema_model())

    def schema_model(self, schemas: Schemas = NO_SCHEMAS) -> type[BaseModel] | None:
        """The output schema class: the one this task was made from, else `schemas`'
        entry for its topic; None when it names none, or one neither knows."""
        if self.output_schema is None:
            return None
        carried = self.__pydantic_private__
        if carried is not None and carried["topic"] == self.output_schema:
            return carried["schema"]  # type: ignore[no-any-return]
        return schemas.get(self.output_schema)

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every task this one waits for: `depends_on`, then tasks named by its inputs."""
        named = [value.from_task for value in self.inputs.values()
                 if isinstance(value, FromTask)]
        if not named and len(self.depends_on) < 2:
            return self.depends_on  # most tasks; read by every plan check and fold
        return tuple(dict.fromkeys([*self.depends_on, *named]))


class HandlerInfo(Frozen):
    """A handler as the coordinator sees it: a name, what it can do, how much at once."""

    name: str = Field(min_length=1)
    capabilities: tuple[str, ...]
    capacity: int | None = Field(default=None, ge=1, description="None means unbounded")
    # Its assignments are runs of their own (absent from the bytes of a plain handler).
    subrun: bool = Field(default=False, exclude_if=lambda v: not v)


# --- one attempt and what came of it ---------------------------------------------------


def assignment_id(task_id: str, attempt: int) -> str:
    """The derived id of `task_id`'s attempt number `attempt` (1-based): ``task#attempt``."""
    return f"{task_id}#{attempt}"


def task_of(assignment: str) -> str:
    """The task an assignment id (``task#attempt``) is an attempt at (task ids hold no #)."""
    return assignment.partition("#")[0]


def escalation_id(run_id: str, seq: int) -> str:
    """The id of the escalation a run raised at `seq`: ``RUN:esc-SEQ``."""
    return f"{run_id}:esc-{seq}"


def escalation_parts(escalation: str) -> tuple[str, int] | None:
    """The run and seq an escalation id (``RUN:esc-SEQ``) names; None if it is not one."""
    run_id, sep, seq = escalation.rpartition(":esc-")
    return (run_id, int(seq)) if sep and run_id and seq.isdigit() else None


class Assignment(Frozen):
    """One attempt at a task, carrying exactly the context the task allows."""

    id: str
    task_id: str
    attempt: int = Field(ge=1)
    handler: str
    capability: str
    instructions: str
    feedback: tuple[str, ...] = ()
    inputs: dict[str, Json] = Field(default_factory=dict)
    context_digest: str
    output_schema: str | None = None
    timeout_s: float | None = None


class Execution(Frozen):
    """Where and when a handler ran an assignment, as its worker saw it. For reading
    (stats, the report's timeline): no decision reads it, so which machine did the work
    never changes what a replay decides."""

    node: str  # the Ray node's id
    pid: int
    replica: int  # which of the handler's replicas
    started_at: float  # the handler's own start and end, by the worker's clock
    ended_at: float


class Usage(Frozen):
    """What an assignment spent on models, as its worker reported it: the model or
    models it called, how many requests, the tokens in and out, and what they cost in
    US dollars where the price table knows the model (absent, not zero, where not).
    Recorded with the result or failure; only a run budget reads it."""

    model: str = ""
    requests: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, ge=0, exclude_if=lambda v: v is None)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RunBudget(Frozen):
    """What a run may spend: dollars and tokens on models (as its workers report them)
    and seconds since it was requested. A limit reached stops new dispatches and asks a
    person whether to raise it or stop; none set, none applies."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_duration_s: float | None = Field(default=None, gt=0)


def _absent(value: object) -> bool:
    return value is None


# Absent, not null, from the bytes of a result that has none (one recorded before
# Baton kept it, or made outside a worker): such logs read and re-encode as they were.
_EXECUTION = Field(default=None, exclude_if=_absent)
_USAGE = Field(default=None, exclude_if=_absent)  # the same: absent when nothing reported
# An agent's messages (pydantic-ai's, as JSON), for reading back the exact prompt and
# reply; no decision reads it, and it is kept out of the query columns.
_TRANSCRIPT = Field(default=None, exclude_if=_absent)


class Result(Frozen):
    """What a worker returned for an assignment."""

    assignment_id: str
    output: Json
    execution: Execution | None = _EXECUTION
    usage: Usage | None = _USAGE
    transcript: Json = _TRANSCRIPT


# child_failed: an assignment to a subrun whose child run failed. (A child waiting on
# people is no failure: its parent's assignment stays in flight until it is answered.)
FailureKind = Literal["error", "timeout", "worker_lost", "unserializable", "too_large",
                      "child_failed"]


class Failure(Frozen):
    """A structured report that an assignment did not produce an output."""

    assignment_id: str
    kind: FailureKind = "error"
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    execution: Execution | None = _EXECUTION  # when a handler ran and failed
    usage: Usage | None = _USAGE  # what it spent before it failed
    transcript: Json = _TRANSCRIPT

    def summary(self) -> str:
        """One line: the kind, the exception type and the message."""
        head = self.kind if not self.error_type else f"{self.kind} ({self.error_type})"
        return f"{head}: {self.message}" if self.message else head


class Verdict(Frozen):
    """The coordinator's judgement of an output: accepted, or the problems found. The
    judgement of the results together (`Policy.check`) may instead send some tasks back
    to be done again, each with the feedback its next attempt is given."""

    accepted: bool
    problems: tuple[str, ...] = ()
    # task id -> feedback. Absent from the bytes when empty, so logs read as they were.
    sent_back: dict[str, str] = Field(default_factory=dict, exclude_if=lambda v: not v)

    @staticmethod
    def of(problems: list[str] | tuple[str, ...]) -> Verdict:
        """Accepted when there are no problems."""
        return Verdict(accepted=False, problems=tuple(problems)) if problems else ACCEPTED

    @staticmethod
    def send_back(feedback: Mapping[str, str]) -> Verdict:
        """From `Policy.check`: do these accepted tasks again, each told why (task id ->
        feedback); accepted when there are none. The recovery rule chooses how each is
        redone, and the tasks that used their outputs are done again after them (see
        `baton.events.settle`)."""
        if not feedback:
            return ACCEPTED
        return Verdict(accepted=False, sent_back=dict(feedback),
                       problems=tuple(f"{tid}: {why}" for tid, why in feedback.items()))


# Frozen, so every accepted output can share one: a policy judges one per result.
ACCEPTED = Verdict(accepted=True)


RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def require_run_id(run_id: str) -> str:
    """`run_id` if it can name a run (letters, digits, '.', '_', '-'); BadSpecError if not."""
    if not RUN_ID.match(run_id):
        raise BadSpecError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-' "
                           "(at most 100), starting with a letter or digit")
    return run_id
