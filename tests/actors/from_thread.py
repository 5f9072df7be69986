"""baton.run called from a threading.Thread with no Ray running, as a user's program
would: the coordinator is SIGKILLed mid-run, the run goes on, and the local Ray that
baton.run started is still alive once the thread has ended.

Run as its own process by test_faults (a process holds one Ray cluster): prints one
line, MARKER then JSON, describing what happened.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import ray

import baton
from baton.actors.progress import RunProgress
from tests.fixtures.ray_specs import fragile_spec

MARKER = "from-thread result: "


def main(store_url: str) -> None:
    killed: list[int] = []
    ended: list[baton.RunResult] = []
    started = time.monotonic()

    def kill_after_a_while(progress: RunProgress) -> None:
        if not killed and time.monotonic() - started > 4 and progress.coordinator_pid:
            os.kill(progress.coordinator_pid, signal.SIGKILL)
            killed.append(progress.coordinator_pid)

    def in_a_thread() -> None:
        spec = fragile_spec(marker="", tasks=80, sleep=0.1)
        ended.append(baton.run(spec, store=store_url, run_id="from-thread",
                               on_progress=kill_after_a_while, poll_s=0.05))

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    time.sleep(2)  # Ray's processes would be gone by now if they died with the thread
    alive = ray.get(ray.remote(lambda: "alive").remote(), timeout=30)
    print(MARKER + json.dumps({"status": ended[0].status, "killed": killed,
                               "ray": alive}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
