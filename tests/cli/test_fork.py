"""baton fork and baton diff through the real CLI, on Ray: a run that failed on a handler
bug is forked just before the failure and finished with the fixed handler."""

from __future__ import annotations

import json

import pytest

from baton import open_store
from tests.cli.test_cli import SPECS, baton


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_a_fork_at_a_failure_finishes_with_a_fixed_handler(store_url: str) -> None:
    """buggy.py's `divide` raises on by-0, which has one attempt and needs a person; the
    fork at the seq before that failure, run with fixed.py, completes. Its log verifies,
    says where it came from, and `baton diff` shows where the two part."""
    code, out, _ = baton("run", str(SPECS / "buggy.py"), "--run-id", "buggy", "--store",
                         store_url, "--json")
    assert code == 1 and json.loads(out)["status"] == "waiting"
    with open_store(store_url) as store:
        failure = next(e for e in store.read("buggy") if e.type == "FailureReported"
                       and e.failure.assignment_id == "by-0#1")  # type: ignore[attr-defined]
    assert "ZeroDivisionError" in failure.failure.summary(), failure  # type: ignore[attr-defined]

    code, out, err = baton("fork", "buggy", "--at", str(failure.seq), "--spec",
                           str(SPECS / "fixed.py"), "--store", store_url)
    assert code == 2 and "fork at" in err  # that seq is a stimulus: its turn is cut

    code, out, _ = baton("fork", "buggy", "--at", str(failure.seq - 1), "--spec",
                         str(SPECS / "fixed.py"), "--run-id", "fixed", "--store", store_url,
                         "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["run_id"] == "fixed" and done["status"] == "completed"
    assert done["output"]["by-0"] == {"value": None}
    assert done["output"]["by-2"] == {"value": 5.0}

    with open_store(store_url) as store:
        log = store.read("fixed")
    forked = log[failure.seq - 1]
    assert forked.type == "RunForked" and forked.seq == failure.seq
    assert (forked.parent_run_id, forked.parent_seq) == ("buggy", failure.seq - 1)  # type: ignore[attr-defined]
    assert forked.spec.endswith("fixed.py")  # type: ignore[attr-defined]
    assert all(e.run_id == "fixed" for e in log)

    code, out, _ = baton("replay", "fixed", "--verify", "--store", store_url)
    assert code == 0 and "every decision reproduced" in out
    code, out, _ = baton("diff", "buggy", "fixed", "--store", store_url)
    assert code == 1
    assert f"share their first {failure.seq - 1} events" in out
    assert "FailureReported" in out and "RunForked" in out
    assert "buggy: waiting" in out and "fixed: completed" in out
    code, out, _ = baton("show", "fixed", "--store", store_url)
    assert code == 0 and f"forked from buggy at seq {failure.seq - 1}" in out
    code, out, _ = baton("log", "fixed", "--type", "RunForked", "--store", store_url)
    assert code == 0 and f"copied from buggy up to seq {failure.seq - 1}" in out


@pytest.mark.usefixtures("ray_cluster")
def test_fork_refuses_what_it_cannot_fork(store_url: str) -> None:
    """Unknown run, a seq past the end, a spec with other handlers: exit 2, nothing made."""
    code, _, _ = baton("run", str(SPECS / "good.py"), "--run-id", "done", "--store",
                       store_url, "--json")
    assert code == 0
    assert baton("fork", "nope", "--at", "3", "--store", store_url)[0] == 2
    code, _, err = baton("fork", "done", "--at", "999", "--store", store_url)
    assert code == 2 and "cannot fork at seq 999" in err
    code, _, err = baton("fork", "done", "--at", "2", "--store", store_url)
    assert code == 2 and "inside the turn that answers seq 1 (seqs 1 to 4); fork at 4" in err
    code, _, err = baton("fork", "done", "--at", "4", "--spec", str(SPECS / "fixed.py"),
                         "--store", store_url)
    assert code == 2 and "differ from those run 'done' records" in err
    with open_store(store_url) as store:
        assert [r.run_id for r in store.runs()] == ["done"]
