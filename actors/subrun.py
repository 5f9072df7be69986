"""Subruns: a handler whose assignment is a run of its own (`@baton.subrun`).

The decorated function takes the assignment and returns the child's Spec, built from the
assignment's inputs only (the same allowlist as any worker's). Each assignment starts
its child run, with its own coordinator and its own log in the parent's store, under a
run id derived from the parent's and the assignment's (`events.tree.child_run_id`), then
waits for it: the child's output is the parent's result for that assignment, validated
by the parent's policy like any output, and a child that fails is a failure of it
(kind `child_failed`). A dispatch sent again (the parent's coordinator restarted) finds
the child already there and waits for it, or resumes it; it never starts a second one.

The call waits on the child's coordinator, not on its own worker, so a child whose
coordinator Ray restarts goes on, and the parent sees nothing but the delay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from baton.events.errors import BadSpecError
from baton.events.model import Assignment
from baton.events.schema import RunCompleted, RunFailed
from baton.events.store import open_store
from baton.events.store.sealing import KEY_ENV
from baton.events.tree import ParentLink, child_run_id

from .handlers import Handler, handler
from .inbox import requested

POLL_S = 0.5  # between two looks at a child run that is still going
QUIET_POLL_S = 2.0  # between two looks at one that has not moved (it waits on people)


class ChildRunFailedError(Exception):
    """A subrun's child run failed: the parent's assignment fails (child_failed)."""

    failure_kind = "child_failed"  # (the worker reports the failure as this kind)


@dataclass(frozen=True)
class RunContext:
    """What a subrun needs of the run it belongs to, to start its children beside it."""

    run_id: str
    store_url: str
    sealing_key: str | None = None  # the children's logs are sealed as the parent's


class SubrunCall:
    """A subrun handler's target: each call is one child run, started or found."""

    is_subrun = True  # (read by Handler.info: the coordinator records it)

    def __init__(self, build: Callable[[Assignment], Any], concurrency: int,
                 context: RunContext | None = None):
        self.build = build
        self.concurrency = concurrency
        self.context = context
        self.threads: ThreadPoolExecutor | None = None  # made in the replica's process
        self.__name__ = getattr(build, "__name__", "subrun")

    def within(self, run_id: str, store_url: str, sealing_key: str | None) -> SubrunCall:
        """The same subrun in run `run_id` (the launcher's, for each run it starts)."""
        return SubrunCall(self.build, self.concurrency, RunContext(run_id, store_url,
                                                                    sealing_key))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "threads": None}

    async def __call__(self, assignment: Assignment) -> Any:
        if self.context is None:
            raise RuntimeError("a subrun runs inside a Baton run; baton.run(spec) starts one")
        # In a thread of its own: building the spec and launching the child block, and
        # every other child this replica waits on goes on meanwhile (asyncio's default
        # pool would hold only a few at once).
        if self.threads is None:
            self.threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="subrun")
        return await asyncio.get_running_loop().run_in_executor(
            self.threads, _run_child, self.build, assignment, self.context)


# One claim per child in this process: a dispatch sent again (its coordinator restarted)
# while the first call is still starting the child waits for it, then finds the child.
_CLAIMS: dict[str, threading.Lock] = {}
_CLAIMING = threading.Lock()


def _run_child(build: Callable[[Assignment], Any], assignment: Assignment,
               context: RunContext) -> Any:
    from .cluster import coordinator_alive
    from .launcher import resume, run
    from .spec import Spec

    spec = build(assignment)
    if not isinstance(spec, Spec):
        raise TypeError(f"a subrun returns the child's baton.Spec, not {type(spec).__name__}")
    child = child_run_id(context.run_id, assignment.id)
    link = ParentLink(run_id=context.run_id, assignment_id=assignment.id)
    # Ray warns, for each worker of a detached run, that its placement group's end ends
    # it: that is the point (a run's workers go with its reservation). And it warns of a
    # blocking get in an async actor: this runs in a thread of its own, not on the loop.
    logging.getLogger("ray.actor").setLevel(logging.ERROR)
    os.environ["RAY_WARN_BLOCKING_GET_INSIDE_ASYNC"] = "0"
    # The launcher seals a child's log with this process's key: the parent's, or none.
    if context.sealing_key:
        os.environ[KEY_ENV] = context.sealing_key
    else:
        os.environ.pop(KEY_ENV, None)
    with _CLAIMING:
        claim = _CLAIMS.setdefault(child, threading.Lock())
    with claim, open_store(context.store_url) as log:
        started = log.last_seq(child) > 0
        found = log.state(child) if started else None
        if found is not None and found.parent != link:
            raise BadSpecError(f"run {child} is already in the store, and is not the child "
                               f"of {link.assignment_id} of run {link.run_id}")
        if found is None and requested(log, context.run_id):
            raise ChildRunFailedError(f"run {context.run_id} is being cancelled: its child "
                                      f"run {child} is not started")
        if found is None:
            run(spec, store=context.store_url, run_id=child, detach=True, parent=link)
        elif found.status == "running" and not coordinator_alive(child):
            resume(child, store=context.store_url, spec=spec, detach=True)
    return _outcome(child, context.store_url)


def _outcome(child: str, store_url: str) -> Any:
    """Wait for the child run to end; its output, or ChildRunFailedError saying why.

    Each look reads where the child's log ends; only once it has stopped growing is its
    last event read, to see whether that is its end. So a child of any size costs the
    same to watch, and one that waits on people is looked at less often: a person's
    answer lets it finish (`baton inbox PARENT` lists its question)."""
    seen = checked = 0
    with open_store(store_url) as log:
        while True:
            last = log.last_seq(child)
            if last == seen != checked:
                checked = last
                ending = log.read(child, after=last - 1)[-1]
                if isinstance(ending, RunCompleted):
                    return ending.output
                if isinstance(ending, RunFailed):
                    raise ChildRunFailedError(f"child run {child} failed: {ending.error}")
            quiet = last == seen == checked
            seen = last
            time.sleep(QUIET_POLL_S if quiet else POLL_S)


def subrun(
    *,
    capabilities: Sequence[str] | None = None,
    replicas: int = 1,
    concurrency: int = 16,
    num_cpus: float = 0.0,
    name: str | None = None,
) -> Callable[[Callable[[Assignment], Any]], Handler]:
    """Declare a handler whose assignments are runs of their own:
    ``@baton.subrun(capabilities=["audit_package"])`` on a function that takes the
    assignment and returns the child's `baton.Spec`. `concurrency` is how many child
    runs one replica waits on at once. A replica only waits (the children have their own
    coordinators and workers), so it reserves no CPU: a parent waiting on its children
    never holds what they need to run."""

    def wrap(build: Callable[[Assignment], Any]) -> Handler:
        if not callable(build):
            raise BadSpecError(f"@subrun decorates a function, not {build!r}")
        return handler(capabilities=capabilities, replicas=replicas, num_cpus=num_cpus,
                       concurrency=concurrency, name=name or build.__name__)(
            SubrunCall(build, concurrency))

    return wrap
