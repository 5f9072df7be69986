"""A Ray cluster already running on this machine (`ray start --head`, as Ray users keep
one up all day): a plain `baton run` attaches to it and says so in one line; one that
`ray start` left behind but that no longer answers is passed over for a new local one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton import open_store
from baton.replay import verify
from tests.cli.test_operations import REPO, SPECS

pytestmark = pytest.mark.slow

BATON = str(Path(sys.executable).with_name("baton"))
RAY = str(Path(sys.executable).with_name("ray"))
CURRENT = Path("/tmp/ray/ray_current_cluster")  # where `ray start` records its cluster


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_start() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`ray start --head` in the foreground (--block), so the test can end it; the
    record of the machine's current cluster is put back as it was afterwards."""
    before = CURRENT.read_text() if CURRENT.exists() else None
    port = free_port()
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--num-cpus", "1", "--port",
                             str(port), "--include-dashboard=false"], env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not (CURRENT.exists() and CURRENT.read_text().endswith(f":{port}")):
            assert head.poll() is None and time.monotonic() < deadline, "ray start failed"
            time.sleep(0.5)
        yield CURRENT.read_text().strip(), head
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
            head.wait(timeout=60)
        if before is None:
            CURRENT.unlink(missing_ok=True)
        else:
            CURRENT.write_text(before)


def baton_run(store: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATON, "run", str(SPECS / "good.py"), "--store",
                           f"sqlite:///{store}", "--run-id", run_id, "--json"],
                          env=environment(), capture_output=True, text=True, timeout=300)


def test_a_plain_run_attaches_to_the_cluster_ray_start_left_running(
    ray_start: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """No --address: the run goes to the running cluster, and one line says which; once
    that cluster is gone, the next run starts its own and says why."""
    address, head = ray_start
    ran = baton_run(tmp_path / "baton.db", "attached")
    assert ran.returncode == 0, ran.stderr
    assert (f"baton: attached to the Ray cluster already running on this machine ({address}); "
            "--address local starts a separate one") in ran.stderr.splitlines()
    assert "Traceback" not in ran.stderr

    head.send_signal(signal.SIGTERM)  # it leaves its record behind
    head.wait(timeout=60)
    ran = baton_run(tmp_path / "baton.db", "beside")
    assert ran.returncode == 0, ran.stderr
    assert (f"baton: the Ray cluster `ray start` left on this machine ({address}) does not "
            "answer (`ray stop` forgets it); started a separate local one"
            ) in ran.stderr.splitlines()
    with open_store(f"sqlite:///{tmp_path / 'baton.db'}") as store:
        assert all(verify(store, run).reproduced for run in ("attached", "beside"))
