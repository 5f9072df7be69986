"""Reading needs no cluster: importing the core, the projections and the CLI, and every
command that only reads or copies logs, loads neither Ray nor psycopg."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A run recorded by the decider alone, then every read-only command on it, all in a
# fresh interpreter: what they imported is what a person waits for at each command.
SCRIPT = textwrap.dedent("""
    import json, sys
    import baton.events, baton.projections, baton.replay
    from typer.testing import CliRunner
    from baton import HandlerInfo, Task, open_store
    from baton.cli import app
    from baton.testing import Scenario

    store, scratch = sys.argv[1], sys.argv[2]
    with open_store(store) as log:
        run = Scenario([Task(id="a", capability="echo")],
                       [HandlerInfo(name="echo", capabilities=("echo",))],
                       run_id="r", store=log)
        [a] = run.in_flight
        run.succeed(a.id, {"ok": True})
    commands = [
        ["--help"], ["runs"], ["show", "r"], ["log", "r"], ["status", "r"],
        ["replay", "r", "--verify"], ["trace", "r", "a"], ["stats", "r"], ["inbox"],
        ["diff", "r", "r"], ["report", "r", "-o", scratch + "/r.html"],
        ["export", "r", "-o", scratch + "/r.parquet"],
        ["import", scratch + "/r.parquet", "--store", "sqlite:///" + scratch + "/b.db"],
        ["wait", "r"],
    ]
    codes = {}
    for args in commands:
        if "--store" not in args and args != ["--help"]:
            args = [*args, "--store", store]
        codes[args[0]] = CliRunner().invoke(app, args).exit_code
    print(json.dumps({"codes": codes,
                      "loaded": sorted({"ray", "psycopg"} & set(sys.modules))}))
""")


def test_reading_commands_load_neither_ray_nor_psycopg(tmp_path: Path) -> None:
    """`baton --help`, runs, show, log, status, replay, trace, stats, inbox, diff, report,
    export, import and wait all succeed with `ray` and `psycopg` never imported."""
    store = f"sqlite:///{tmp_path}/a.db"
    done = subprocess.run([sys.executable, "-c", SCRIPT, store, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(code == 0 for code in seen["codes"].values()), seen["codes"]
    assert seen["loaded"] == []


def test_the_check_sees_ray_when_it_is_loaded() -> None:
    """The same check in a process that runs work does find Ray (so the one above can
    fail): `baton.run` loads it on first use."""
    probe = "import sys, baton; baton.run; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "True"
