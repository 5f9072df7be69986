"""baton.events: the pure core. What can happen in a run, and what follows from it.

Nothing here touches Ray, a clock, randomness or the disk; `events.store` (persistence)
is kept apart and never imported from here.
"""

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
    Assignment,
    Budget,
    Check,
    Failure,
    FromTask,
    HandlerInfo,
    Result,
    Task,
    Verdict,
    from_task,
)
from .plan import plan_problems
from .policy import Candidate, DefaultPolicy, PlanView, Policy, Recovery, RecoveryFacts, Routing
from .record import TaskRecord
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


def __getattr__(name: str) -> type[BatonError]:
    """An error by the name it had before the Error suffix (deprecated)."""
    from .errors import former

    return former(name, __name__)
