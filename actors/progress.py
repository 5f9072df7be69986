"""How a run stands, as its coordinator sees it now (RunProgress), and how it ended
(RunResult). The coordinator makes the one on request; the launcher, `baton run` and
`baton status` read them. Plain data, so reading it needs no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class RunProgress:
    """How a run stands, as the coordinator sees it now."""

    run_id: str
    status: str  # running, waiting (on people), completed, failed
    tasks: int = 0
    accepted: int = 0
    abandoned: int = 0
    in_flight: int = 0
    escalations: int = 0
    dispatched: int = 0
    calls: int = 0  # Ray calls that carried the assignments to workers, a batch each
    failures: int = 0
    rejections: int = 0
    recoveries: int = 0
    events: int = 0
    coordinator_pid: int = 0
    turns: int = 0
    deciding_s: float = 0.0
    appending_s: float = 0.0
    elapsed_s: float = 0.0
    output: Any = None
    error: str = ""
    waiting_for: str = ""  # what a run not yet begun waits for (the cluster's resources)
    store_down_since: float = 0.0  # wall-clock time the store began failing, if it is
    store_error: str = ""  # what it said

    @property
    def assignments_per_s(self) -> float:
        return self.dispatched / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        # Shallow: a large run's output is not worth a deep copy.
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its id, status, final output, and counts."""

    run_id: str
    status: str  # completed, failed, or waiting (on people)
    output: Any
    error: str
    progress: RunProgress
    store: str  # its URL, any password masked

    @property
    def ok(self) -> bool:
        return self.status == "completed"
