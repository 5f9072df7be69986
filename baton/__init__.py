"""Baton: event-sourced orchestration of multi-agent work on Ray.

A coordinator decides and records; workers execute; every decision is an event written
before its effect, so any run can be replayed, traced and forked from its log.
"""

from typing import TYPE_CHECKING, Any

from baton import replay
from baton.actors import inbox as _inbox
from baton.actors.agents import agent
from baton.actors.handlers import Handler, handler
from baton.actors.progress import RunResult
from baton.actors.reported import report_transcript, report_usage
from baton.actors.spec import Spec, load_spec
from baton.actors.subrun import subrun
from baton.events import (
    Assignment,
    BadInputError,
    BadLogError,
    BadSpecError,
    BadStoreURLError,
    BatonError,
    Budget,
    Check,
    ClusterUnavailableError,
    ConcurrencyConflictError,
    DefaultPolicy,
    EncryptionKeyError,
    HandlerInfo,
    Policy,
    PolicyError,
    RunInterrupted,
    RunState,
    StoreFaultError,
    StoreUnavailableError,
    Task,
    Verdict,
    decide,
    evolve,
    from_task,
)
from baton.events.model import Json, RunBudget, Usage
from baton.events.schema import HumanAction
from baton.events.store import EventStore, open_store

if TYPE_CHECKING:
    from baton.actors.launcher import resume, run

_ON_RAY = ("run", "resume")  # loaded on first use: importing baton does not start Ray's


def __getattr__(name: str) -> Any:
    if name in _ON_RAY:
        from baton.actors import launcher

        return getattr(launcher, name)
    from baton.events.errors import former  # an error by the name it had before

    return former(name, "baton")



def answer(escalation_id: str, action: HumanAction, *, handler: str | None = None,
           note: str = "", output: Json = None, answered_by: str = "",
           raise_by: float | None = None, store: str | None = None) -> None:
    """Answer an open escalation (RUN:esc-N): about a task, retry, reassign, abandon, or
    accept an output; about the run's budget, "raise_budget" (by `raise_by`) or "stop".
    Recorded in the run's inbox; its coordinator takes it up (or `resume` does)."""
    with open_store(store) as log:
        _inbox.answer(log, escalation_id, action, handler=handler, note=note, output=output,
                      answered_by=answered_by, raise_by=raise_by)


def inbox(run_id: str | None = None, store: str | None = None) -> list[_inbox.OpenEscalation]:
    """The open escalations of one run, or of every unfinished run in the store."""
    with open_store(store) as log:
        return _inbox.open_escalations(log, run_id)


def cancel(run_id: str, note: str = "", store: str | None = None) -> None:
    """Ask a run to stop; its coordinator takes the request up within a second (a run
    nobody drives stays as it is until `resume`, which then cancels it)."""
    with open_store(store) as log:
        _inbox.request_cancel(log, run_id, note)

__all__ = [
    "Assignment",
    "BadInputError",
    "BadLogError",
    "BadSpecError",
    "BadStoreURLError",
    "BatonError",
    "Budget",
    "Check",
    "ClusterUnavailableError",
    "ConcurrencyConflictError",
    "DefaultPolicy",
    "EncryptionKeyError",
    "EventStore",
    "Handler",
    "HandlerInfo",
    "Policy",
    "PolicyError",
    "RunBudget",
    "RunInterrupted",
    "RunResult",
    "RunState",
    "Spec",
    "StoreFaultError",
    "StoreUnavailableError",
    "Task",
    "Usage",
    "Verdict",
    "agent",
    "answer",
    "cancel",
    "decide",
    "evolve",
    "from_task",
    "handler",
    "inbox",
    "load_spec",
    "open_store",
    "replay",
    "report_transcript",
    "report_usage",
    "resume",
    "run",
    "subrun",
]
