"""Baton: event-sourced orchestration of multi-agent work on Ray.

A coordinator decides and records; workers execute; every decision is an event written
before its effect, so any run can be replayed, traced and forked from its log.
"""

from baton.actors.handlers import Handler, handler
from baton.actors.launcher import ClusterUnavailable, RunResult, resume, run
from baton.actors.spec import Spec, load_spec
from baton.events import (
    Assignment,
    BadLog,
    BadSpec,
    BadStoreURL,
    BatonError,
    Budget,
    Check,
    ConcurrencyConflict,
    DefaultPolicy,
    HandlerInfo,
    Policy,
    RunState,
    Task,
    decide,
    evolve,
    from_task,
)
from baton.events.store import EventStore, open_store

__all__ = [
    "Assignment",
    "BadLog",
    "BadSpec",
    "BadStoreURL",
    "BatonError",
    "Budget",
    "Check",
    "ClusterUnavailable",
    "ConcurrencyConflict",
    "DefaultPolicy",
    "EventStore",
    "Handler",
    "HandlerInfo",
    "Policy",
    "RunResult",
    "RunState",
    "Spec",
    "Task",
    "decide",
    "evolve",
    "from_task",
    "handler",
    "load_spec",
    "open_store",
    "resume",
    "run",
]
