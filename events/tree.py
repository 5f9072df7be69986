"""A run's place in a tree of runs: the link from a child run to the assignment of its
parent that it answers, and the id of the child an assignment to a subrun starts.

Each run of a tree keeps its own log; the links make the tree. A child's RunRequested
names its parent (`ParentLink`), and the parent's dispatch names the child (the fact
`child_run`), so either log leads to the other.
"""

from __future__ import annotations

import re

from .values import Frozen, digest

_NOT_IN_A_RUN_ID = re.compile(r"[^A-Za-z0-9_.-]")
MAX_RUN_ID = 100  # the longest run id (model.RUN_ID)


class ParentLink(Frozen):
    """The run, and its assignment, that a child run was started to answer."""

    run_id: str
    assignment_id: str


def child_run_id(parent_run_id: str, assignment_id: str) -> str:
    """The run id of the child run that assignment `assignment_id` of run `parent_run_id`
    starts: the same for every dispatch of that attempt (a restart's re-dispatch
    included), another for another attempt. It reads as the parent's id, the task and
    the attempt (``audit.pkg_json-1``); where the task's id holds characters a run id
    cannot, or the whole would pass 100 characters (a tree many levels deep), a digest
    of the two ids keeps it unique."""
    task, _, attempt = assignment_id.rpartition("#")
    readable = _NOT_IN_A_RUN_ID.sub("_", task)
    child = f"{parent_run_id}.{readable}-{attempt}"
    if readable == task and len(child) <= MAX_RUN_ID:
        return child
    tag = digest(f"{parent_run_id}/{assignment_id}".encode())[:12]
    return f"{parent_run_id[:40]}.{readable[:30]}-{attempt[:8]}-{tag}"


def answers(run_id: str, link: ParentLink) -> bool:
    """Is `run_id` the child its link names? A fork of a child run copies the child's
    request, link and all, and is no child of that parent."""
    return run_id == child_run_id(link.run_id, link.assignment_id)
