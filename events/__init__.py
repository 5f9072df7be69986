"""baton.events: the pure core. What can happen in a run, and what follows from it.

Nothing here touches Ray, a clock, randomness or the disk; `events.store` (persistence)
is kept apart and never imported from here.
"""

from .decider import decide, step
from .errors import (
    BadInput,
    BadLog,
    BadSpec,
    BadStoreURL,
    BatonError,
    ClusterUnavailable,
    ConcurrencyConflict,
    EncryptionKeyProblem,
    PolicyError,
    RunInterrupted,
    StoreFault,
    StoreUnavailable,
    UnknownRun,
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
    "BadInput",
    "BadLog",
    "BadSpec",
    "BadStoreURL",
    "BatonError",
    "Budget",
    "Candidate",
    "Check",
    "ClusterUnavailable",
    "ConcurrencyConflict",
    "DefaultPolicy",
    "EncryptionKeyProblem",
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
    "StoreFault",
    "StoreUnavailable",
    "Task",
    "TaskRecord",
    "UnknownRun",
    "Verdict",
    "decide",
    "evolve",
    "fold",
    "from_task",
    "plan_problems",
    "step",
]
