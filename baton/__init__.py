"""Baton: event-sourced orchestration of multi-agent work on Ray.

A coordinator decides and records; workers execute; every decision is an event written
before its effect, so any run can be replayed, traced and forked from its log.
"""

from baton.events import (
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
    "BadLog",
    "BadSpec",
    "BadStoreURL",
    "BatonError",
    "Budget",
    "Check",
    "ConcurrencyConflict",
    "DefaultPolicy",
    "EventStore",
    "HandlerInfo",
    "Policy",
    "RunState",
    "Task",
    "decide",
    "evolve",
    "from_task",
    "open_store",
]
