"""baton.events: the pure core. What can happen in a run, and what follows from it.

Nothing here touches Ray, a clock, randomness or the disk; `events.store` (persistence)
is kept apart and never imported from here.
"""

import warnings
from typing import Any

from .decider import decide, decide_in_place
from .errors import (
    BadInputError,
    BadLogError,
    BadSpecError,
    BadStoreURLError,
    BatonError,
    ClusterUnavailableError,
    ConcurrencyConflictError,
    EncryptionKeyError,
    PolicyError,
    RunInterrupted,
    StoreFaultError,
    StoreUnavailableError,
    UnknownRunError,
)
from .model import (
    NO_SCHEMAS,
    Assignment,
    Budget,
    Check,
    Failure,
    FromTask,
    HandlerInfo,
    Result,
    Schemas,
    Task,
    Verdict,
    from_task,
)
from .plan import plan_problems
from .policy import Candidate, DefaultPolicy, PlanView, Policy, Recovery, RecoveryFacts, Routing
from .record import TaskRecord
from .schema import Envelope, Stimulus
from .state import INITIAL_STATE, RunState, evolve, fold

__all__ = [
    "INITIAL_STATE",
    "Assignment",
    "BadInputError",
    "BadLogError",
    "BadSpecError",
    "BadStoreURLError",
    "BatonError",
    "Budget",
    "Candidate",
    "Check",
    "ClusterUnavailableError",
    "ConcurrencyConflictError",
    "DefaultPolicy",
    "EncryptionKeyError",
    "Failure",
    "FromTask",
    "HandlerInfo",
    "PlanView",
    "Policy",
    "PolicyError",
    "Recovery",
    "RecoveryFacts",
    "Result",
    "Routing",
    "RunInterrupted",
    "RunState",
    "StoreFaultError",
    "StoreUnavailableError",
    "Task",
    "TaskRecord",
    "UnknownRunError",
    "Verdict",
    "decide",
    "decide_in_place",
    "evolve",
    "fold",
    "from_task",
    "plan_problems",
]


def __getattr__(name: str) -> Any:
    """Names from before, each warning what to use: an error by its name before the
    Error suffix, and `step`, now `decide_in_place`."""
    if name == "step":
        warnings.warn("baton.events.step is now decide_in_place, which returns the "
                      "stimulus and the decisions, each with its bytes", DeprecationWarning,
                      stacklevel=2)
        return _step
    from .errors import former

    return former(name, __name__)


def _step(state: RunState, stimulus: Stimulus, policy: Policy, recorded: bytes | None = None,
          schemas: Schemas = NO_SCHEMAS) -> list[Envelope]:
    return [event for event, _ in decide_in_place(state, stimulus, policy, recorded,
                                                  schemas)[1:]]
