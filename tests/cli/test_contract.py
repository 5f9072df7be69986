"""What every `baton` command promises: help that teaches, --json where it prints data,
and exit codes that --help documents and the errors' classes name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from baton import BatonError, HandlerInfo, Task, open_store
from baton.cli import app
from baton.events import errors
from baton.testing import Scenario

COMMANDS: dict[str, click.Command] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
runner = CliRunner()


def every_error_class() -> list[type[BatonError]]:
    found, todo = [], [BatonError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_the_commands_are_all_here() -> None:
    """The contract below runs over the real command set, not a stale list."""
    assert {"run", "resume", "status", "wait", "log", "replay", "trace", "export",
            "import", "report", "bench", "keygen"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_and_json(name: str) -> None:
    """Each command says what it does in a sentence at least, and takes --json (every
    command prints data: a summary, a table, a path, a key)."""
    command = COMMANDS[name]
    assert command.help and len(command.help.split(".")[0].split()) >= 3, name
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert "--json" in options, f"baton {name} has no --json"


def test_every_exit_code_an_error_can_end_in_is_documented_in_help() -> None:
    """`baton --help` documents 0, and the exit code of every error class Baton raises."""
    text = runner.invoke(app, ["--help"]).stdout
    documented = {int(code) for code in re.findall(
        r"(\d+) (?:done|the run failed|bad input|interrupted)", " ".join(text.split()))}
    raised = {cls.exit_code for cls in every_error_class()}
    assert raised <= documented and errors.EXIT_DONE in documented, (raised, documented)
    assert raised == {errors.EXIT_FAILED, errors.EXIT_BAD_INPUT, errors.EXIT_INTERRUPTED}


def test_a_command_ends_a_baton_error_with_its_class_exit_code(tmp_path: Path) -> None:
    """The one error boundary: an unknown run is bad input (exit 2), a policy that raises
    while replaying is a failure (exit 1); each one line on stderr, no traceback."""
    url = f"sqlite:///{tmp_path}/a.db"
    recorded(url)
    (tmp_path / "raising.py").write_text(
        "from baton import DefaultPolicy\n\n"
        "class Raising(DefaultPolicy):\n"
        "    def route(self, task, candidates):\n"
        "        raise RuntimeError('no route today')\n")
    for args, code, said in [
            (["show", "nobody"], errors.EXIT_BAD_INPUT, "error: no run 'nobody'"),
            (["replay", "r", "--policy", f"{tmp_path}/raising.py:Raising"],
             errors.EXIT_FAILED, "error: the policy raised RuntimeError: no route today")]:
        result = runner.invoke(app, [*args, "--store", url])
        assert result.exit_code == code, result.output
        assert result.stderr.startswith(said) and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2  # one line, wrapped at most once


def recorded(url: str) -> Scenario:
    """A run of one task, completed, in the store at `url`."""
    with open_store(url) as store:
        run = Scenario([Task(id="a", capability="echo")],
                       [HandlerInfo(name="echo", capabilities=("echo",))],
                       run_id="r", store=store)
        run.succeed(run.in_flight[0].id, {"ok": True})
    return run


def test_export_and_import_print_json_and_nothing_else(tmp_path: Path) -> None:
    """`export --json` and `import --json` put one JSON document on stdout."""
    url = f"sqlite:///{tmp_path}/a.db"
    run = recorded(url)
    target = tmp_path / "r.parquet"
    done = runner.invoke(app, ["export", "r", "-o", str(target), "--store", url, "--json"])
    assert done.exit_code == 0
    exported = json.loads(done.stdout)
    assert exported == {"output": str(target), "runs": ["r"], "events": len(run.log)}
    done = runner.invoke(app, ["import", str(target), "--store",
                               f"sqlite:///{tmp_path}/b.db", "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout) == {"imported": {"r": len(run.log)}}
    done = runner.invoke(app, ["keygen", "--json"])
    assert done.exit_code == 0 and set(json.loads(done.stdout)) == {"key", "env"}
