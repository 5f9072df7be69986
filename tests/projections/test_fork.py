"""Forks and diffs without Ray: the prefix re-decided under a new id, escalation ids and
inbox places made the fork's own, and diffs that part where the logs really part."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton import BadInputError, Budget, DefaultPolicy, HandlerInfo, Task, open_store
from baton.events.schema import HumanAnswered, RunForked
from baton.events.store import Codec
from baton.projections.fork import copy_prefix, record_fork
from baton.replay import counterfactual, diff_runs, verify
from baton.testing import Scenario
from tests.fixtures.golden import GOLDEN
from tests.fixtures.specs import ExpandingPolicy


def answered_run(store_url: str) -> Scenario:
    """`a` fails its only attempt and is escalated; a person's answer (from the inbox)
    sends it back; then `b` is done."""
    plan = [Task(id="a", capability="count", budget=Budget(attempts=1)),
            Task(id="b", capability="count", depends_on=("a",))]
    with open_store(store_url) as store:
        run = Scenario(plan, [HandlerInfo(name="h", capabilities=("count",))], run_id="p",
                       store=store)
        run.fail("a#1", "boom")
        [escalation] = run.state.escalations
        run.stimulate(HumanAnswered, escalation_id=escalation, action="retry",
                      inbox_seq=1)
        run.succeed("a#2", {"count": 1})
    return run


def test_a_fork_renames_what_names_the_run_and_diff_parts_at_the_fork(store_url: str) -> None:
    """Forking after the answer: the escalation id names the fork, the parent's inbox
    place is dropped, the fork verifies, and diff shares exactly the copied prefix."""
    run = answered_run(store_url)
    at = run.log[-1].seq  # after a#2's turn: b is in flight
    with open_store(store_url) as store:
        prefix = copy_prefix(store, "p", at, "f", lambda origin: DefaultPolicy())
        forked = RunForked(run_id="f", seq=at + 1, parent_run_id="p", parent_seq=at,
                           parent_digest=prefix.parent_digest,
                           policy="baton.events.policy:DefaultPolicy")
        record_fork(store, prefix, forked, DefaultPolicy())
        fork_log = store.read("f")
        answer = next(e for e in fork_log if e.type == "HumanAnswered")
        assert answer.escalation_id.startswith("f:esc-")  # type: ignore[attr-defined]
        assert answer.inbox_seq is None  # type: ignore[attr-defined]
        assert store.state("f").inbox_seen == 0 and store.state("f").forked_from == ("p", at)
        assert verify(store, "f", DefaultPolicy()).reproduced
        assert prefix.parent_digest == store.state("p", until=at).digest
        found = diff_runs(store, "p", "f")
    assert found.common == at and "RunForked" in found.first_b and found.first_a == ""


def test_fork_refuses_a_seq_inside_a_turn_and_a_taken_run_id(store_url: str) -> None:
    """Cutting a turn in two, or naming the fork like an existing run, is refused."""
    run = answered_run(store_url)
    run_end = run.log[-1].seq
    with open_store(store_url) as store:
        with pytest.raises(BadInputError, match="inside the turn that answers seq 1"):
            copy_prefix(store, "p", 2, "f", lambda origin: DefaultPolicy())
        with pytest.raises(BadInputError, match="already exists"):
            copy_prefix(store, "p", run_end, "p", lambda origin: DefaultPolicy())


@pytest.mark.replay_with(ExpandingPolicy())  # the golden log records no policy
def test_logs_an_earlier_baton_wrote_diff_and_replay_counterfactually(tmp_path: Path) -> None:
    """The golden log as Baton 0.1 wrote it, stored byte for byte (its digests chain
    over those bytes, not today's encoding): a counterfactual under its own policy parts
    nowhere, and diff folds it without calling it edited."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    lines = GOLDEN.with_name("golden-0.1.jsonl").read_bytes().splitlines()
    events = [Codec().decode(line, run_id="golden", seq=seq)
              for seq, line in enumerate(lines, start=1)]
    with open_store(url) as store:
        store.append("golden", events, 0, lines)
        assert counterfactual(store, "golden", ExpandingPolicy()).same
        assert diff_runs(store, "golden", "golden").same
