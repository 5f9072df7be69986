"""A store that fails ends every command in one line naming the store and the cause,
exit 1: a damaged SQLite file (cut in half, cut to 4 KB, or not a database at all), and
nothing recorded in it is touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton import open_store
from baton.cli import app
from baton.testing import Scenario
from tests.fixtures.specs import counting, handlers

runner = CliRunner()
RUN = "damaged"


def recorded(path: Path) -> None:
    """A SQLite store holding one completed run of 300 tasks (a file of many pages)."""
    with open_store(f"sqlite:///{path}") as store:
        run = Scenario([counting(f"t{i}") for i in range(300)], handlers("h"), run_id=RUN,
                       store=store)
        for assignment in run.in_flight:
            run.succeed(assignment.id, {"count": 1})
        store.runs()  # the index, taken in


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def cut_to_4k(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:4096])


def text_file(path: Path) -> None:
    path.write_text("these are notes, not a database\n" * 200)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "cut in half": cut_in_half, "cut to 4 KB": cut_to_4k, "a text file": text_file}
COMMANDS = {"runs": ["runs"], "show": ["show", RUN], "replay --verify": ["replay", RUN, "--verify"],
            "export": ["export", RUN, "-o", "{tmp}/out.parquet"]}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_sqlite_file_gives_one_line_and_exit_1(
    tmp_path: Path, damage: str, command: str
) -> None:
    """Each reading command on a damaged file: exit 1, one line on stderr naming the
    store and what SQLite said, no traceback; the file is left as it was."""
    path = tmp_path / "baton.db"
    recorded(path)
    whole = path.read_bytes()
    DAMAGE[damage](path)
    damaged = path.read_bytes()
    args = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    result = runner.invoke(app, [*args, "--store", f"sqlite:///{path}"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: store sqlite:///{path}: "), lines
    assert "Traceback" not in result.stderr + result.stdout
    assert path.read_bytes() == damaged  # a reader never writes to a file it cannot read
    path.write_bytes(whole)  # so the run is verified afterwards, as every test's are
