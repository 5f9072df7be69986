"""The worker: runs one handler on each assignment of a call, in turn, and reports what
happened to each. An async worker (`AsyncWorker`, for an `async def` handler) runs up
to the handler's `concurrency` of its assignments at once, across the calls it holds.

A worker sees only the `Assignment`s it is given. It never retries and never swallows
an error: an exception becomes a `Failure` carrying its type, message and traceback
(even SystemExit or KeyboardInterrupt raised by a handler: they end that assignment,
not the batch); an output that is not JSON, or is larger than the limit, becomes a
`Failure` too. A call's outcomes travel back in one return, so a call stops once they
come to RETURN_BUDGET_BYTES: the coordinator sends the assignments it did not reach
again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import traceback
from typing import Any, get_args

import ray
from pydantic import BaseModel

from baton.events.model import Assignment, Execution, Failure, FailureKind, Result

from .handlers import Handler
from .reported import Reported, bounded, collecting, total

DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
RETURN_BUDGET_BYTES = 16 * 1024 * 1024  # of outputs in one call's return, about


def to_outcome(
    assignment_id: str, value: Any, max_output_bytes: int, execution: Execution | None = None,
    reported: Reported | None = None,
) -> tuple[Result | Failure, int]:
    """The Result for a handler's return value, or the Failure that explains why not;
    and how many bytes of JSON the output is. Either carries what the handler reported
    (what it spent, its transcript)."""
    usage = total(reported.usage) if reported is not None else None
    transcript, said = bounded(reported.transcript if reported else None, max_output_bytes)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        return Failure(assignment_id=assignment_id, kind="unserializable",
                       error_type=type(error).__name__,
                       message=f"the output cannot be recorded as JSON: {error}",
                       execution=execution, usage=usage, transcript=transcript), said
    if len(encoded) > max_output_bytes:
        return Failure(assignment_id=assignment_id, kind="too_large",
                       message=f"the output is {len(encoded):,} bytes of JSON; the limit is "
                       f"{max_output_bytes:,} (raise it with max_output_bytes)",
                       execution=execution, usage=usage, transcript=transcript), said
    # Round-trip so what the coordinator records is exactly what a replay will read.
    return Result(assignment_id=assignment_id, output=json.loads(encoded),
                  execution=execution, usage=usage, transcript=transcript), len(encoded) + said


class Worker:
    """Hosts one handler in a Ray actor (wrapped with ray.remote by the launcher)."""

    def __init__(self, handler: Handler, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
                 replica: int = 0, return_budget_bytes: int = RETURN_BUDGET_BYTES):
        self.handler = handler
        self.max_output_bytes = max_output_bytes
        self.return_budget_bytes = return_budget_bytes
        self.call = handler.target() if handler.is_class else handler.target
        self.replica = replica
        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        self.process_id = os.getpid()  # once: Ray starts a restarted worker afresh

    def run(self, assignments: list[Assignment]) -> list[Result | Failure]:
        """Run the handler on each assignment, in order: for each its Result, or a Failure
        saying why not; either way, with where and when it ran. Once the outputs come to
        the return budget, it stops: the outcomes are those of the first assignments."""
        outcomes: list[Result | Failure] = []
        carried = 0
        for assignment in assignments:
            outcome, size = self._run_one(assignment)
            outcomes.append(outcome)
            carried += size
            if carried >= self.return_budget_bytes:
                break
        return outcomes

    def _run_one(self, assignment: Assignment) -> tuple[Result | Failure, int]:
        started = time.time()
        with collecting() as reported:
            try:
                value = self.call(assignment)
            except (Exception, SystemExit, KeyboardInterrupt) as error:
                return self._raised(assignment, error, started, reported)
        return to_outcome(assignment.id, value, self.max_output_bytes,
                          self._execution(started), reported)

    def _raised(self, assignment: Assignment, error: BaseException, started: float,
                reported: Reported) -> tuple[Failure, int]:
        transcript, said = bounded(reported.transcript, self.max_output_bytes)
        kind = getattr(error, "failure_kind", "error")  # (a subrun's child_failed)
        failure = Failure(assignment_id=assignment.id,
                          kind=kind if kind in get_args(FailureKind) else "error",
                          error_type=type(error).__qualname__, message=str(error),
                          traceback=traceback.format_exc(),
                          execution=self._execution(started), usage=total(reported.usage),
                          transcript=transcript)
        return failure, len(failure.message) + len(failure.traceback) + said

    def _execution(self, started: float) -> Execution:
        return Execution(node=self.node, pid=self.process_id, replica=self.replica,
                         started_at=started, ended_at=time.time())

    def pid(self) -> int:
        """The process this worker runs in."""
        return self.process_id



class AsyncWorker(Worker):
    """Hosts an `async def` handler in an async Ray actor: the calls it holds run at
    once, and their assignments with them, up to the handler's `concurrency` running at
    any moment (the rest wait their turn, in the order they came)."""

    def __init__(self, handler: Handler, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
                 replica: int = 0, return_budget_bytes: int = RETURN_BUDGET_BYTES):
        super().__init__(handler, max_output_bytes, replica, return_budget_bytes)
        self.slots: asyncio.Semaphore | None = None  # made on the actor's event loop

    async def run(self, assignments: list[Assignment]) -> list[Result | Failure]:  # type: ignore[override]
        """As `Worker.run`, the assignments running at once. Each starts in its turn
        (the semaphore wakes them in order), so once the call's outputs come to the
        return budget, what has not started is left to be sent again, and the outcomes
        are still those of the first assignments."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.handler.concurrency)
        carried = [0]
        ran = await asyncio.gather(*(self._run_async(a, carried) for a in assignments))
        outcomes = []
        for outcome in ran:
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    async def _run_async(self, assignment: Assignment,
                         carried: list[int]) -> Result | Failure | None:
        assert self.slots is not None
        async with self.slots:
            if carried[0] >= self.return_budget_bytes:
                return None
            started = time.time()
            outcome: Result | Failure
            with collecting() as reported:
                try:
                    value = await self.call(assignment)
                except asyncio.CancelledError as error:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this call itself is being cancelled
                    # The handler's own (a timeout inside it): its failure, no other's.
                    outcome, size = self._raised(assignment, error, started, reported)
                except (Exception, SystemExit, KeyboardInterrupt) as error:
                    outcome, size = self._raised(assignment, error, started, reported)
                else:
                    outcome, size = to_outcome(assignment.id, value, self.max_output_bytes,
                                               self._execution(started), reported)
            carried[0] += size
            return outcome
