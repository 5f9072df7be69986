"""A run on a two-node cluster whose worker node is removed mid-run.

Run as its own process by test_faults (a process holds one Ray cluster): prints one
line, MARKER then JSON, describing how the run ended.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import baton
from baton.actors.progress import RunProgress
from tests.fixtures.ray_specs import echo, slow_plan

REPO = Path(__file__).resolve().parents[2]
MARKER = "two-nodes result: "
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


def main(store_url: str) -> None:
    # The head hosts the driver and the coordinator (beside the SQLite file) but no CPU,
    # so every worker lands on the second node.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": FAST_HEALTH_CHECKS})
    doomed = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="baton",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    moved: list[int] = []

    def remove_worker_node(progress: RunProgress) -> None:
        if not moved and progress.accepted >= 3:
            moved.append(progress.accepted)
            cluster.remove_node(doomed)  # while assignments are in flight there
            cluster.add_node(num_cpus=2)

    # Losing a node fails every call its workers held, and a retry sent before the
    # coordinator learns the second replica is gone fails too: give attempts to spare.
    plan = [task.model_copy(update={"budget": baton.Budget(attempts=4)})
            for task in slow_plan(16, 0.5)]
    spec = baton.Spec(goal="survive a node", tasks=plan, handlers=[echo])
    result = baton.run(spec, store=store_url, run_id="two-nodes",
                       on_progress=remove_worker_node)
    # Ray forwards worker logs to this stdout too, so the answer carries a marker.
    print(MARKER + json.dumps({"status": result.status, "accepted": result.progress.accepted,
                               "removed_after": moved}), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
