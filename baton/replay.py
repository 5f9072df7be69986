"""Replay and debugging from Python: the same calls `baton replay/fork/diff` make.

    from baton import open_store, replay
    with open_store("sqlite:///.baton/baton.db") as store:
        report = replay.verify(store, "run-…")          # every decision reproduced?
        state = replay.state_at(store, "run-…", 120)    # the run as it stood at seq 120
        what_if = replay.counterfactual(store, "run-…", MyPolicy())
        new = replay.fork(store, "run-…", at=119, spec="fixed.py")
    baton.resume(new.run_id, spec=new.spec)             # finish the fork live on Ray
"""

from baton.projections.counterfactual import Counterfactual, Parting, TaskChange, counterfactual
from baton.projections.diff import RunDiff
from baton.projections.diff import diff as diff_logs
from baton.projections.fork import Fork, fork
from baton.projections.replay import Divergence, Verification, state_at, verify, verify_log
from baton.projections.trace import trace

__all__ = [
    "Counterfactual",
    "Divergence",
    "Fork",
    "Parting",
    "RunDiff",
    "TaskChange",
    "Verification",
    "counterfactual",
    "diff_logs",
    "fork",
    "state_at",
    "trace",
    "verify",
    "verify_log",
]
