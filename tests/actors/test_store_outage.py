"""A store that goes away and comes back: the real PostgreSQL server stopped mid-run and
started again, or the coordinator's connections cut. The run waits, says so in its
progress, and completes by itself: every task accepted once, the log whole."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import baton
from baton import Spec, Task, open_store
from baton.actors.progress import RunProgress
from baton.cli import app
from baton.events.schema import ResultValidated
from tests.fixtures import ray_specs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
RUN = "outage"


class Server:
    """The test PostgreSQL server that .ci/postgres started, stopped and started again
    with the options it was started with."""

    def __init__(self, data: Path, bin_dir: Path):
        self.data, self.bin = data, bin_dir

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        # postmaster.opts: the server's command line, as the last start gave it.
        options = shlex.split((self.data / "postmaster.opts").read_text())[3:]
        self.pg_ctl("start", "-w", "-l", str(self.data.parent / "server.log"),
                    "-o", shlex.join(options))


@pytest.fixture
def server(postgres_server: str) -> Server:
    data, bin_dir = os.environ.get("BATON_PG_DIR"), os.environ.get("BATON_PG_BIN")
    if not data or not bin_dir:
        message = "the test server is not one .ci/postgres started (no BATON_PG_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Server(Path(data) / "data", Path(bin_dir))


def restart(server: Server, url: str) -> list[str]:
    """The server stops (fast: every session is told to go) and is down for 3 s or
    more; meanwhile `baton status` asks the run's live coordinator, since it cannot read
    the store. What status printed is returned."""
    server.stop()
    said: list[str] = []
    stopped = time.monotonic()
    try:
        while not said and time.monotonic() - stopped < 30:
            code, out = status(url)
            if code == 0 and "store unreachable since" in out:
                said.append(out)
            else:
                time.sleep(0.2)
        time.sleep(max(0.0, 3 - (time.monotonic() - stopped)))
    finally:
        server.start()
    return said


def status(url: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["status", RUN, "--store", url])
    return done.exit_code, done.stdout


def cut_connections(server: Server, url: str) -> list[str]:
    """Every other session of the store's user is terminated, as an operator would."""
    with psycopg.connect(url.partition("?")[0], autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE usename = current_user AND pid <> pg_backend_pid()")
    return []


def spec(tasks: int) -> Spec:
    plan = [Task(id=f"t{i}", capability="echo", inputs={"i": i, "sleep": 0.05})
            for i in range(tasks)]
    return Spec(goal="outlive the store", tasks=plan, handlers=[ray_specs.echo])


FAULTS: dict[str, Callable[[Server, str], list[str]]] = {
    "server restarted": restart, "connections cut": cut_connections}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_run_outlives_its_store_going_away_and_completes(
    server: Server, postgres_url: str, fault: str
) -> None:
    """Mid-run, the store fails: the run completes by itself, each task accepted once,
    and while the server was down its progress said since when."""
    seen: list[RunProgress] = []
    ended: list[baton.RunResult] = []
    run = threading.Thread(target=lambda: ended.append(baton.run(
        spec(120), store=postgres_url, run_id=RUN,
        on_progress=seen.append, poll_s=0.1)))
    run.start()
    deadline = time.monotonic() + 120
    while not (seen and seen[-1].accepted >= 15):
        assert time.monotonic() < deadline and run.is_alive(), "the run never got going"
        time.sleep(0.05)
    at = len(seen)
    said = FAULTS[fault](server, postgres_url)
    run.join(timeout=300)
    assert ended, "the run did not end"
    [result] = ended
    assert result.ok, result.error
    assert seen[at].accepted < 120, "the fault came after the run was over"
    if fault == "server restarted":
        down = [p for p in seen[at:] if p.store_down_since]
        assert down and down[0].store_error, "its progress never said the store was down"
        assert seen[-1].store_down_since == 0.0  # and then that it was back
        assert said and f"{RUN}  running" in said[0], said
        assert "store unreachable since" in said[0] and ", retrying (" in said[0]
    with open_store(postgres_url) as store:
        log = store.read(result.run_id)
    accepted = Counter(e.task_id for e in log if isinstance(e, ResultValidated)
                       and e.outcome == "accepted")
    assert accepted == Counter({f"t{i}": 1 for i in range(120)})
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
