"""The person at the keyboard: Ctrl-C during `baton run` (a real SIGINT to the command's
process group, as a terminal sends it) and `baton run` with no terminal to draw on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from baton import open_store
from baton.events.schema import FailureReported
from tests.cli.test_operations import REPO, SPECS, baton, until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

BATON = str(Path(sys.executable).with_name("baton"))


def accepted(run_id: str, store: str) -> int:
    code, out, _ = baton("status", run_id, "--store", store, "--json")
    return int(json.loads(out)["accepted"]) if code in (0, 1) and out else 0


def test_ctrl_c_stops_the_run_in_one_line_records_no_lost_worker_and_resume_finishes_it(
    store_url: str,
) -> None:
    """Ctrl-C mid-run: exit 130 and one line saying how far the run is recorded and the
    commands that continue or end it; no worker_lost in the log for the work that was in
    flight; `status` says stalled at once; `baton resume` completes the run. With no
    terminal, the run printed plain progress lines meanwhile."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)  # a Ray of its own, whose processes share its terminal
    # A terminal's foreground job starts with SIGINT at its default. A shell's background job
    # (pytest under `cmd &` in a script) starts with it ignored, and its children inherit
    # that: Python then never raises KeyboardInterrupt. Give the driver a terminal's start.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        driver = subprocess.Popen([BATON, "run", str(SPECS / "slow.py"), "--run-id",
                                   "ctrlc", "--store", store_url], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        until(lambda: driver.poll() is not None or accepted("ctrlc", store_url) >= 4,
              seconds=120)
        assert driver.poll() is None, driver.communicate()
        os.killpg(driver.pid, signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    assert "Traceback" not in out + err and "(raylet)" not in out + err
    *progress, last = err.strip().splitlines()
    with open_store(store_url) as store:
        recorded = store.last_seq("ctrlc")
        lost = [e for e in store.read("ctrlc") if isinstance(e, FailureReported)]
    assert last == (f"interrupted: run ctrlc is recorded up to seq {recorded}; `baton resume "
                    "ctrlc` continues it, `baton cancel ctrlc` ends it")
    assert lost == []
    assert progress and all(line.startswith("ctrlc: ") and " of 40 tasks accepted" in line
                            for line in progress), progress

    code, out, _ = baton("status", "ctrlc", "--store", store_url)
    assert code == 1 and "stalled" in out and "its driver was interrupted" in out
    code, out, _ = baton("resume", "ctrlc", "--store", store_url, "--json")
    assert code == 0, out
    assert len(json.loads(out)["output"]) == 40
