"""The events of a run's log: stimuli (facts that arrive) and decisions (what follows).

Every event shares an envelope: `run_id`, `seq` (its place in the run's log, from 1),
`type`, `schema_version` and `cause` (the seq of the stimulus a decision answers).
Decisions add `reason` (the rule that fired, the facts it read, the candidates it
weighed) and `state_digest` (the digest chain of the log before the decision, which
identifies the exact state it looked at). Wall-clock time enters only as data on
stimuli (`recorded_at`); no decision reads it.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, TypeAdapter

from .model import (
    Assignment,
    Failure,
    Frozen,
    HandlerInfo,
    Json,
    Result,
    RunBudget,
    Task,
    Verdict,
)
from .tree import ParentLink


class Reason(Frozen):
    """Why a decision was taken: the rule, the facts it read, the candidates weighed."""

    rule: str
    facts: dict[str, Json] = Field(default_factory=dict)
    candidates: tuple[dict[str, Json], ...] = ()


class Envelope(Frozen):
    """The fields every event has."""

    run_id: str = Field(min_length=1)
    seq: int = Field(ge=1)
    schema_version: int = 1
    cause: int | None = None


class Stimulus(Envelope):
    """A fact from outside the decider: a request, a result, a failure, a timer, a person."""

    recorded_at: float | None = Field(default=None, description="wall clock, as data only")


class Decision(Envelope):
    """Something the coordinator decided, with the reason and the state it looked at."""

    cause: int
    reason: Reason
    state_digest: str


# --- stimuli ---------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return not value


class RunRequested(Stimulus):
    """Someone asked for a run: the goal, the proposed plan, the handlers available."""

    type: Literal["RunRequested"] = "RunRequested"
    goal: str = ""
    tasks: tuple[Task, ...]
    handlers: tuple[HandlerInfo, ...]
    policy: str = Field(default="", description="module:QualName of the deciding policy")
    policy_digest: str = Field(default="", description="a hash of the policy's source")
    spec: str = Field(default="", description="where the spec was loaded from, for resume")
    # A run that records no schema identities is stored as before they existed, so logs
    # written by earlier versions and today's read the same, byte for byte. (A field's
    # exclude_if costs nothing when it holds; a wrap serializer made encoding a large
    # plan 2.6 times slower.)
    schemas: dict[str, str] = Field(default_factory=dict, exclude_if=_empty,
                                    description="a digest of each output schema's JSON "
                                    "Schema, by topic")
    budget: RunBudget | None = Field(default=None, exclude_if=_empty)  # absent: none
    # A child run: the parent's run and assignment it answers (absent: a run of its own).
    parent: ParentLink | None = Field(default=None, exclude_if=_empty)


class RunForked(Stimulus):
    """This run began as a copy of another run's log up to `parent_seq`; from here on it
    is decided by `policy` and run with the handlers of `spec`."""

    type: Literal["RunForked"] = "RunForked"
    parent_run_id: str
    parent_seq: int
    parent_digest: str = Field(description="the parent's digest chain at parent_seq")
    spec: str = Field(default="", description="the spec the fork runs with, for resume")
    policy_ref: str = Field(default="", description="where its policy was loaded from, "
                            "when not the spec's own")
    policy: str = ""
    policy_digest: str = ""
    note: str = ""


class ResultReceived(Stimulus):
    """A worker returned an output for an assignment."""

    type: Literal["ResultReceived"] = "ResultReceived"
    result: Result


class FailureReported(Stimulus):
    """An assignment produced no output: the worker raised, was lost, or the output was unusable."""

    type: Literal["FailureReported"] = "FailureReported"
    failure: Failure


class TimerFired(Stimulus):
    """An assignment's deadline passed."""

    type: Literal["TimerFired"] = "TimerFired"
    assignment_id: str


class WorkerStuck(Stimulus):
    """The worker running an assignment was still busy with it when its deadline passed:
    whatever else is sent to that process would wait behind a call that may never end."""

    type: Literal["WorkerStuck"] = "WorkerStuck"
    assignment_id: str
    handler: str
    note: str = ""


HumanAction = Literal["retry", "reassign", "abandon", "accept", "raise_budget", "stop"]


class HumanAnswered(Stimulus):
    """A person answered an escalation."""

    type: Literal["HumanAnswered"] = "HumanAnswered"
    escalation_id: str
    action: HumanAction
    handler: str | None = None
    note: str = ""
    output: Json = None
    answered_by: str = ""
    inbox_seq: int | None = Field(default=None, description="its place in the run's inbox")
    raise_by: float | None = Field(default=None, gt=0, exclude_if=_empty,
                                   description="raise_budget: by how much, in the unit "
                                   "of the limit reached (dollars, tokens or seconds)")


class BudgetTimerFired(Stimulus):
    """The run's duration limit passed (its budget's max_duration_s since requested)."""

    type: Literal["BudgetTimerFired"] = "BudgetTimerFired"


class CancelRequested(Stimulus):
    """Someone asked for the run to stop."""

    type: Literal["CancelRequested"] = "CancelRequested"
    note: str = ""
    inbox_seq: int | None = Field(default=None, description="its place in the run's inbox")


class CoordinatorRestarted(Stimulus):
    """A coordinator took the run up again after its predecessor stopped."""

    type: Literal["CoordinatorRestarted"] = "CoordinatorRestarted"
    note: str = ""


# --- decisions -------------------------------------------------------------------------


class PlanChanged(Decision):
    """Tasks were added to the plan: those in `added`, or, when `requested` is true, the
    tasks the RunRequested at seq 1 proposed (accepted by reference, not copied)."""

    type: Literal["PlanChanged"] = "PlanChanged"
    added: tuple[Task, ...] = ()
    requested: bool = False


class AssignmentDispatched(Decision):
    """An attempt at a task was handed to a handler."""

    type: Literal["AssignmentDispatched"] = "AssignmentDispatched"
    assignment: Assignment


ValidationOutcome = Literal["accepted", "rejected", "ignored"]


class ResultValidated(Decision):
    """An output was judged: accepted, rejected (with problems), or ignored as not current."""

    type: Literal["ResultValidated"] = "ResultValidated"
    assignment_id: str
    task_id: str
    outcome: ValidationOutcome
    verdict: Verdict


RecoveryAction = Literal["retry", "reassign", "escalate", "abandon", "accept"]


class RecoveryChosen(Decision):
    """What a failed or rejected attempt (or a person's answer) leads to."""

    type: Literal["RecoveryChosen"] = "RecoveryChosen"
    task_id: str
    assignment_id: str | None
    action: RecoveryAction
    handler: str | None = None
    feedback: str = ""


class EscalationRaised(Decision):
    """A task is parked until a person answers; the rest of the run goes on."""

    type: Literal["EscalationRaised"] = "EscalationRaised"
    escalation_id: str
    task_id: str
    question: str


class BudgetRaised(Decision):
    """A person raised the run's budget: the limits from now on. Dispatching resumes."""

    type: Literal["BudgetRaised"] = "BudgetRaised"
    budget: RunBudget


class WorkerReplaced(Decision):
    """The worker stuck on `assignment_id` is to be killed and started afresh; what was
    queued behind the stuck call goes to the new process, charged to no task."""

    type: Literal["WorkerReplaced"] = "WorkerReplaced"
    assignment_id: str
    handler: str


class ResultsChecked(Decision):
    """All work is settled; the results were checked across tasks (coverage, consistency)."""

    type: Literal["ResultsChecked"] = "ResultsChecked"
    verdict: Verdict


class RunCompleted(Decision):
    """The run finished; its synthesized output."""

    type: Literal["RunCompleted"] = "RunCompleted"
    output: Json


class RunFailed(Decision):
    """The run ended without a result."""

    type: Literal["RunFailed"] = "RunFailed"
    error: str


AnyStimulus: TypeAlias = (
    RunRequested
    | RunForked
    | ResultReceived
    | FailureReported
    | TimerFired
    | WorkerStuck
    | HumanAnswered
    | CancelRequested
    | CoordinatorRestarted
    | BudgetTimerFired
)
AnyDecision: TypeAlias = (
    PlanChanged
    | AssignmentDispatched
    | ResultValidated
    | RecoveryChosen
    | EscalationRaised
    | BudgetRaised
    | WorkerReplaced
    | ResultsChecked
    | RunCompleted
    | RunFailed
)
Event: TypeAlias = Annotated[AnyStimulus | AnyDecision, Field(discriminator="type")]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

STIMULUS_TYPES: dict[str, type[Stimulus]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        RunRequested,
        RunForked,
        ResultReceived,
        FailureReported,
        TimerFired,
        WorkerStuck,
        HumanAnswered,
        CancelRequested,
        CoordinatorRestarted,
        BudgetTimerFired,
    )
}
DECISION_TYPES: dict[str, type[Decision]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        PlanChanged,
        AssignmentDispatched,
        ResultValidated,
        RecoveryChosen,
        EscalationRaised,
        BudgetRaised,
        WorkerReplaced,
        ResultsChecked,
        RunCompleted,
        RunFailed,
    )
}
EVENT_TYPES: dict[str, type[Envelope]] = {**STIMULUS_TYPES, **DECISION_TYPES}

# The events that end a run, by type, and the status each leaves it in.
ENDINGS: dict[str, str] = {RunCompleted.__name__: "completed", RunFailed.__name__: "failed"}


def encode(event: Envelope) -> bytes:
    """The event's canonical bytes: compact JSON, fields in declaration order."""
    return type(event).__pydantic_serializer__.to_json(event)


GENESIS_DIGEST = "0" * 32


def chain(previous: str, recorded: bytes) -> str:
    """The digest of a log prefix extended by one event's recorded bytes.

    Because a run's state is a function of its log prefix, this chain identifies the
    state exactly, costs one hash per event, and exposes any edit or reordering.
    """
    return hashlib.sha256(previous.encode() + recorded).hexdigest()[:32]
