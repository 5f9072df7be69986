"""Operating runs through the real CLI: escalations answered, resume, detach, cancel,
and a driver killed mid-run. Real Ray, real SQLite, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from baton.cli import app
from baton.events.store import heartbeats

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs_cli"
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def baton(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def until(check, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not true within {seconds}s")


def status(run_id: str, store: str) -> dict:  # type: ignore[type-arg]
    return json.loads(baton("status", run_id, "--store", store, "--json")[1])


def test_an_escalation_answered_while_no_coordinator_lives_is_taken_up_on_resume(
    store_url: str,
) -> None:
    """run ends `waiting` (exit 1), and `runs` says so; inbox lists the question; answer
    records it, and `status` shows it answered, for a coordinator to take up; resume
    takes the answer up and completes the run."""
    code, out, _ = baton("run", str(SPECS / "asks.py"), "--run-id", "asks", "--store",
                         store_url, "--json")
    assert code == 1 and json.loads(out)["status"] == "waiting"
    [listed] = json.loads(baton("runs", "--store", store_url, "--json")[1])
    assert listed["status"] == "waiting"

    code, out, _ = baton("inbox", "--store", store_url, "--json")
    [open_one] = json.loads(out)
    assert open_one["task_id"] == "ask" and not open_one["answered"]
    assert "PermissionError" in open_one["question"]
    esc = open_one["escalation_id"]

    code, out, _ = baton("answer", esc, "--retry", "--note", "permission granted by ops",
                         "--by", "oncall", "--store", store_url, "--json")
    assert code == 0 and json.loads(out)["action"] == "retry"
    again = baton("answer", esc, "--abandon", "--store", store_url)
    assert again[0] == 2 and "already answered" in again[2]
    code, out, _ = baton("status", "asks", "--store", store_url)
    assert f"answered, for a coordinator to take up: {esc}" in out
    assert "waiting on a person" not in out

    code, out, _ = baton("resume", "asks", "--store", store_url, "--json")
    assert code == 0, out
    assert json.loads(out)["output"]["ask"] == {"done": True}
    assert json.loads(baton("inbox", "--store", store_url, "--json")[1]) == []


def test_a_detached_run_waits_for_an_answer_given_through_the_cli(store_url: str) -> None:
    """--detach returns at once; the live coordinator waits on the person; the answer
    reaches it through the store; `baton wait` sees the run complete."""
    code, _, _ = baton("run", str(SPECS / "asks.py"), "--run-id", "live", "--store",
                       store_url, "--detach")
    assert code == 0
    until(lambda: status("live", store_url)["status"] == "waiting")
    [esc] = status("live", store_url)["escalations"]
    assert baton("answer", esc, "--retry", "--note", "permission granted",
                 "--store", store_url)[0] == 0
    code, out, _ = baton("wait", "live", "--timeout", "60", "--store", store_url, "--json")
    assert code == 0 and json.loads(out)["output"]["ask"] == {"done": True}
    until(lambda: not _alive("live"))  # the detached coordinator let itself go


def test_cancel_stops_a_live_detached_run(store_url: str) -> None:
    """A cancel reaches the live coordinator: in-flight work abandoned, the run failed."""
    baton("run", str(SPECS / "slow.py"), "--run-id", "stopme", "--store", store_url,
          "--detach")
    until(lambda: status("stopme", store_url)["accepted"] >= 2)
    code, _, _ = baton("cancel", "stopme", "--note", "wrong input", "--store", store_url)
    assert code == 0
    code, out, _ = baton("wait", "stopme", "--timeout", "30", "--store", store_url, "--json")
    report = json.loads(out)
    assert code == 1 and report["status"] == "failed"
    assert report["error"] == "cancelled: wrong input" and report["accepted"] < 40


def test_a_killed_driver_is_resumed_to_completion(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the process running `baton run` mid-run: once its coordinator has stopped
    reporting, `status` and `runs` say the run is stalled and how to resume it, and
    `baton resume` finishes the run."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [str(Path(sys.executable).with_name("baton")), "run", str(SPECS / "slow.py"),
         "--run-id", "orphan", "--store", store_url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: os.path.exists(store_url[len("sqlite:///"):]) and
              _accepted_or_zero("orphan", store_url) >= 3, seconds=90)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert status("orphan", store_url)["status"] == "running"
    until(lambda: not _alive("orphan"))  # its coordinator died with its owner
    monkeypatch.setattr(heartbeats, "STALE_AFTER_S", 4.0)  # (a reader's threshold)
    until(lambda: status("orphan", store_url)["status"] == "stalled", seconds=30)
    code, out, _ = baton("status", "orphan", "--store", store_url)
    assert code == 1 and "no live coordinator: the last (pid " in out
    assert "`baton resume orphan` continues it" in out
    [listed] = json.loads(baton("runs", "--store", store_url, "--json")[1])
    assert listed["status"] == "stalled" and listed["tasks"] == 40
    code, out, _ = baton("resume", "orphan", "--store", store_url, "--json")
    assert code == 0, out
    assert len(json.loads(out)["output"]) == 40


def _accepted_or_zero(run_id: str, store: str) -> int:
    code, out, _ = baton("status", run_id, "--store", store, "--json")
    return json.loads(out)["accepted"] if code in (0, 1) and out else 0


def _alive(run_id: str) -> bool:
    try:
        ray.get_actor(f"baton:{run_id}", namespace="baton")
    except ValueError:
        return False
    return True


BROKEN_CHECK = '''
import baton
from baton import DefaultPolicy, Task, Verdict


@baton.handler(capabilities=["x"], num_cpus=0.5)
def echo(assignment):
    return {"attempt": assignment.attempt}


class Picky(DefaultPolicy):
    def check(self, plan):
        if plan.outputs["a"]["attempt"] > 1:
            return super().check(plan)
        return Verdict.send_back({"%s": "do it again"})


spec = baton.Spec(goal="a check", tasks=[Task(id="a", capability="x")], handlers=[echo],
                  policy=Picky())
'''


def test_a_policy_that_breaks_its_contract_says_so_and_the_run_resumes_once_fixed(
        store_url: str, tmp_path: Path) -> None:
    """A check that sends back a task the plan does not have: `baton run` ends with one
    line naming the mistake and the `baton resume` that goes on once the policy is fixed;
    fixed, the resume completes the run with what was recorded."""
    spec = tmp_path / "picky.py"
    spec.write_text(BROKEN_CHECK % "nope")
    code, _, err = baton("run", str(spec), "--run-id", "picky", "--store", store_url)
    assert code == 1 and "Traceback" not in err
    assert "policy.check sent back 'nope'" in err and "`baton resume picky`" in err
    spec.write_text(BROKEN_CHECK % "a")  # the id it meant: a is redone once, then accepted
    code, out, err = baton("resume", "picky", "--store", store_url, "--json")
    assert code == 0, err
    assert json.loads(out)["output"] == {"a": {"attempt": 2}}
