"""The `baton` command, through the real CLI: run, runs, show, bad input, exit codes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from baton import open_store
from baton.cli import app
from baton.events.tree import ParentLink
from baton.testing import Scenario
from tests.fixtures.golden import every_event_type
from tests.fixtures.specs import counting, handlers

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs_cli"
runner = CliRunner()


def baton(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_run_then_runs_then_show_through_the_cli(durable_store_url: str) -> None:
    """`baton run --json` completes with exit 0; `runs` lists it; `show` has its ledger;
    on SQLite and on PostgreSQL alike."""
    store_url = durable_store_url
    code, out, _ = baton("run", str(SPECS / "good.py"), "--store", store_url,
                         "--run-id", "cli-1", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["run_id"] == "cli-1" and summary["status"] == "completed"
    assert summary["counts"]["accepted"] == 3 and summary["counts"]["dispatched"] == 3

    code, out, _ = baton("runs", "--store", store_url, "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert listed["run_id"] == "cli-1" and listed["status"] == "completed"

    code, out, _ = baton("show", "cli-1", "--store", store_url, "--json")
    assert code == 0
    ledger = json.loads(out)
    assert [(t["id"], t["status"], t["attempts"], t["handler"]) for t in ledger["tasks"]] == [
        ("a", "accepted", 1, "echo"), ("secret", "accepted", 1, "echo"),
        ("b", "accepted", 1, "echo")]
    assert set(ledger["output"]) == {"a", "secret", "b"}

    code, out, _ = baton("show", "cli-1", "--store", store_url)
    assert code == 0 and "3 of 3 tasks accepted" in out and "output" in out

    code, out, _ = baton("log", "cli-1", "--store", store_url, "--json")
    events = json.loads(out)
    assert code == 0 and events[0]["type"] == "RunRequested"
    assert events[-1]["type"] == "RunCompleted" and len(events) == summary["counts"]["events"]
    code, out, _ = baton("log", "cli-1", "--task", "b", "--store", store_url)
    assert code == 0 and "b#1 -> echo  [route.least_loaded]" in out and "a#1" not in out
    assert baton("log", "cli-1", "--type", "Bogus", "--store", store_url)[0] == 2

    code, out, _ = baton("replay", "cli-1", "--verify", "--store", store_url)
    assert code == 0 and "every decision reproduced" in out
    code, out, _ = baton("replay", "cli-1", "--verify", "--spec", str(SPECS / "contrary.py"),
                         "--store", store_url, "--json")
    report = json.loads(out)
    assert code == 1 and not report["reproduced"]
    assert report["divergence"]["seq"] == len(events)  # the RunCompleted
    assert report["divergence"]["fields"] == ["output"]
    code, out, _ = baton("replay", "cli-1", "--until", "5", "--store", store_url, "--json")
    assert code == 0 and json.loads(out)["events"] == 5


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_runs_counts_the_tasks_of_the_plan_as_it_grew(store_url: str) -> None:
    """A plan of one task that adds five: `runs` lists six tasks, not the one requested."""
    code, _, err = baton("run", str(SPECS / "expands.py"), "--store", store_url,
                         "--run-id", "grows")
    assert code == 0, err
    [listed] = json.loads(baton("runs", "--store", store_url, "--json")[1])
    assert (listed["status"], listed["tasks"]) == ("completed", 6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.py", "spec file .*missing.py does not exist"),
        ("no_spec.py", "no_spec.py has no `spec`"),
        ("unknown_capability.py", "needs capability 'paint', which no handler has"),
        ("cycle.py", "dependency cycle: first -> second -> first"),
        ("duplicate.py", "task id 'same' is used twice"),
        ("broken.py", "failed to import: RuntimeError: this spec cannot even import"),
    ],
)
def test_a_bad_spec_is_refused_with_exit_2_before_anything_runs(
    spec: str, message: str, store_url: str
) -> None:
    """Bad specs exit 2 with a message naming the problem, and nothing is recorded."""
    code, out, err = baton("run", str(SPECS / spec), "--store", store_url, "--json")
    assert code == 2 and out == ""
    assert re.search(message, " ".join(err.split()))
    assert json.loads(baton("runs", "--store", store_url, "--json")[1]) == []


def test_show_of_an_unknown_run_says_where_it_looked(store_url: str) -> None:
    """An unknown run id exits 2 and points at `baton runs`."""
    with open_store(store_url):  # a store there, without the run
        pass
    code, _, err = baton("show", "nope", "--store", store_url)
    assert code == 2 and "no run 'nope'" in err and "baton runs" in err


def test_reading_a_run_from_a_store_file_that_is_not_there_makes_no_file(
    tmp_path: Path
) -> None:
    """A mistyped SQLite path: each command that reads a run says no store file is
    there, exit 2, and leaves nothing behind (opening it would have made an empty one)."""
    url = f"sqlite:///{tmp_path}/typo/baton.db"
    for args in (["show", "r"], ["status", "r"], ["replay", "r", "--verify"],
                 ["trace", "r", "t"], ["cancel", "r"], ["diff", "r", "s"], ["wait", "r"]):
        code, _, err = baton(*args, "--store", url)
        assert code == 2 and "no run 'r'" in err and "no store file is there" in err, args
    assert list(tmp_path.iterdir()) == []


def test_a_store_url_baton_cannot_open_exits_2() -> None:
    """A bad --store is bad input: exit 2, naming the URL forms that work."""
    code, _, err = baton("runs", "--store", "mysql://x/y")
    assert code == 2 and "sqlite:///" in err


def test_a_postgres_server_that_cannot_be_used_exits_2_with_the_password_masked(
    postgres_server: str
) -> None:
    """An unreachable server and a wrong password are one line each on stderr, exit 2,
    naming host and port and never the password; --json prints nothing on stdout."""
    parts = urlparse(postgres_server)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    unreachable = f"postgresql://baton:{parts.password}@127.0.0.1:{closed}/baton"
    code, out, err = baton("runs", "--store", unreachable, "--json")
    assert (code, out) == (2, "")
    assert f"cannot reach PostgreSQL at 127.0.0.1:{closed}" in err
    assert len(err.strip().splitlines()) == 1 and str(parts.password) not in err
    wrong = postgres_server.replace(f":{parts.password}@", ":not-the-password@")
    code, out, err = baton("show", "some-run", "--store", wrong)
    assert code == 2 and "wrong password" in err and "not-the-password" not in err


def test_show_of_a_child_run_names_the_parent_assignment_it_answers(store_url: str) -> None:
    with open_store(store_url) as store:
        for run in every_event_type():
            if run.state.parent is not None:
                store.append(run.run_id, run.log, 0)
    code, out, _ = baton("show", "parent.b-1", "--store", store_url)
    assert code == 0 and "a child run: it answers b#1 of run parent" in out
    code, out, _ = baton("show", "parent.b-1", "--store", store_url, "--json")
    assert json.loads(out)["parent"] == "parent b#1"


def test_runs_lists_each_child_run_under_its_parent(store_url: str) -> None:
    """Newest first at the top; a run's children indented under it, with their links."""
    def recorded(run_id: str, parent: ParentLink | None = None) -> None:
        run = Scenario([counting("a")], handlers("h"), run_id=run_id, parent=parent)
        run.succeed("a#1", {"count": 1})
        store.append(run_id, run.log, 0)

    with open_store(store_url) as store:
        recorded("top")
        recorded("top.a-1", ParentLink(run_id="top", assignment_id="a#1"))
        recorded("top.a-1.a-1", ParentLink(run_id="top.a-1", assignment_id="a#1"))
        recorded("later")
    code, out, _ = baton("runs", "--store", store_url)
    shown = [line.split()[:2] for line in out.splitlines()[1:]]
    assert code == 0 and shown == [["later", "completed"], ["top", "completed"],
                                   ["└", "top.a-1"], ["└", "top.a-1.a-1"]], out
    assert "  └ top.a-1.a-1" in out
    code, out, _ = baton("runs", "--store", store_url, "--json")
    assert [(r["run_id"], r["parent"], r["parent_assignment"], r["depth"])
            for r in json.loads(out)] == [("later", None, None, 0), ("top", None, None, 0),
                                          ("top.a-1", "top", "a#1", 1),
                                          ("top.a-1.a-1", "top.a-1", "a#1", 2)]


def test_runs_on_an_empty_store_says_how_to_start(store_url: str) -> None:
    """No runs yet: say so, and how to start one."""
    code, out, _ = baton("runs", "--store", store_url)
    assert code == 0 and "no runs" in out and "baton run SPEC" in out


@pytest.mark.slow
def test_a_run_from_the_console_script_leaves_a_clean_terminal(tmp_path: Path) -> None:
    """`baton run` on a fresh local Ray prints its summary and nothing of Ray's own: no
    core_worker warning about actor constructor arguments (ray#53727)."""
    script = Path(sys.executable).with_name("baton")
    example = Path(__file__).resolve().parents[2] / "examples" / "flaky.py"
    done = subprocess.run(
        [str(script), "run", str(example), "--store", f"sqlite:///{tmp_path / 'b.db'}",
         "--run-id", "clean"], capture_output=True, text=True, check=False, cwd=tmp_path,
        timeout=300)
    assert done.returncode in (0, 1), done.stderr  # flaky.py may end waiting on a person
    assert "clean" in done.stdout
    assert "constructor arguments" not in done.stderr + done.stdout
    assert "core_worker" not in done.stderr + done.stdout


def test_the_console_script_is_installed_and_teaches() -> None:
    """`baton --help` (the installed command) lists run, runs and show."""
    script = Path(sys.executable).with_name("baton")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("run", "runs", "show"):
        assert f" {command} " in done.stdout


def test_version_and_shell_completion() -> None:
    """`baton --version` names the installed version; `--show-completion bash` prints a
    completion script a shell can source (`--install-completion` installs it)."""
    from importlib import metadata

    code, out, _ = baton("--version")
    assert code == 0 and out.strip() == f"baton {metadata.version('baton-ray')}"
    script = Path(sys.executable).with_name("baton")
    done = subprocess.run([str(script), "--show-completion", "bash"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "_BATON_COMPLETE" in done.stdout


def test_an_address_ray_cannot_use_is_one_line_and_exit_2(store_url: str) -> None:
    """`--address lcoal` (a typo of local): one line saying what Ray takes, no traceback."""
    script = Path(sys.executable).with_name("baton")
    env = {**os.environ, "PYTHONPATH": str(SPECS.parents[2])}  # the spec imports tests.*
    done = subprocess.run([str(script), "run", str(SPECS / "good.py"), "--address", "lcoal",
                           "--store", store_url], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "Ray cannot use the address 'lcoal'" in line and "HOST:PORT" in line


def test_an_address_where_no_cluster_answers_is_one_line_at_once(store_url: str) -> None:
    """`--address HOST:PORT` where nothing listens: one line in seconds, not Ray's own
    wait of minutes for a head that is not there; for a run and a parallel verify."""
    script = Path(sys.executable).with_name("baton")
    env = {**os.environ, "PYTHONPATH": str(SPECS.parents[2])}
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"
    with open_store(store_url) as store:
        Scenario([counting("a")], handlers("h"), run_id="r", store=store)
    for args in (["run", str(SPECS / "good.py")], ["replay", "r", "--verify", "--parallel", "2"]):
        started = time.monotonic()
        done = subprocess.run([str(script), *args, "--address", dead, "--store", store_url],
                              env=env, capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 2 and time.monotonic() - started < 30, done.stderr
        [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
        assert f"no Ray cluster answers at {dead}" in line, line


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_a_spec_of_agents_dry_runs_with_model_test_and_a_bad_model_is_one_line(
        store_url: str) -> None:
    """`--model test` answers every agent with pydantic-ai's TestModel (no key, no
    network); a model that cannot be used here is refused before anything starts."""
    code, out, err = baton("run", str(SPECS / "agents.py"), "--store", store_url,
                           "--run-id", "dry", "--model", "test", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    code, _, err = baton("run", str(SPECS / "agents.py"), "--store", store_url,
                         "--run-id", "wet", "--model", "acme:nothing")
    assert code == 2 and "model 'acme:nothing', which cannot be used here" in err
    assert "Traceback" not in err
    code, out, _ = baton("runs", "--store", store_url, "--json")
    assert [r["run_id"] for r in json.loads(out)] == ["dry"]
