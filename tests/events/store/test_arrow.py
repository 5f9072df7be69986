"""A log as an Arrow table: the columns read out of each record."""

from __future__ import annotations

import pytest

from baton import HandlerInfo, Task, open_store
from baton.events.store import arrow
from baton.testing import Scenario


def test_decisions_at_the_start_of_a_page_carry_their_stimulus_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A long log is read in pages; a decision whose stimulus ended the page before
    still has its time, so the export is what the whole log says and imports again."""
    monkeypatch.setattr(arrow, "PAGE", 4)
    with open_store("memory://") as store:
        run = Scenario([Task(id=t, capability="c") for t in "abc"],
                       [HandlerInfo(name="h", capabilities=("c",))], store=store, at=1.0)
        run.succeed("a#1", {}, at=2.0)  # seq 6; its ResultValidated starts page 2
        run.succeed("b#1", {}, at=3.0)
        rows = arrow.table(store, [run.run_id])
        assert rows.column("recorded_at").to_pylist() == [
            1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        arrow.check(run.run_id, rows, store)
