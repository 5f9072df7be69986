"""Whether a proposed plan can run: known capabilities, unique ids, dependencies that
exist and form no cycle. Checked when a run is requested and when a policy expands it."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .model import NO_SCHEMAS, Schemas, Task


def plan_problems(
    added: Sequence[Task],
    existing: Mapping[str, Any],
    by_capability: Mapping[str, Sequence[str]],
    schemas: Schemas | None = NO_SCHEMAS,
) -> list[str]:
    """Why `added` cannot join a plan that already holds `existing` (empty when it can):
    duplicate ids, unknown dependencies, capabilities no handler has, cycles, and output
    schemas neither carried by their task nor among `schemas` (None: the caller checks
    those itself)."""
    problems: list[str] = []
    new: dict[str, Task] = {}
    for task in added:
        if task.id in existing or task.id in new:
            problems.append(f"task id {task.id!r} is used twice")
        new[task.id] = task
    for task in added:
        if task.capability not in by_capability:
            known = ", ".join(sorted(by_capability)) or "none"
            problems.append(
                f"task {task.id!r} needs capability {task.capability!r}, which no handler "
                f"has (handlers offer: {known})"
            )
        for dep in task.dependencies:
            if dep not in existing and dep not in new:
                problems.append(f"task {task.id!r} depends on unknown task {dep!r}")
            elif getattr(existing.get(dep), "status", None) == "abandoned":
                problems.append(f"task {task.id!r} depends on abandoned task {dep!r}")
    cycle = _cycle(new)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems if schemas is None else problems + unknown_schemas(added, schemas)


def unknown_schemas(tasks: Sequence[Task], schemas: Schemas) -> list[str]:
    """The tasks whose output schema class is neither carried nor among `schemas`."""
    return [f"task {task.id!r}: output schema {task.output_schema!r} is not known to "
            "this run; give the task the class itself, defined at module level in an "
            "importable module" for task in tasks
            if task.output_schema is not None and task.schema_model(schemas) is None]


def _cycle(tasks: Mapping[str, Task]) -> list[str]:
    """One dependency cycle among `tasks` (as a path), or [] when there is none."""
    # Only tasks that wait or are waited for can be on a cycle: a plan of independent
    # tasks (the usual large one) costs one pass.
    indegree: dict[str, int] = {}
    users: dict[str, list[str]] = {}
    for tid, task in tasks.items():
        for dep in task.dependencies:
            if dep in tasks:
                indegree[tid] = indegree.get(tid, 0) + 1
                users.setdefault(dep, []).append(tid)
    todo = deque(tid for tid in users if tid not in indegree)
    while todo:
        for user in users.get(todo.popleft(), ()):
            indegree[user] -= 1
            if indegree[user] == 0:
                todo.append(user)
    stuck = {tid for tid, n in indegree.items() if n > 0}
    if not stuck:
        return []
    path, node = [], min(stuck)
    while node not in path:
        path.append(node)
        node = min(d for d in tasks[node].dependencies if d in stuck)
    return [*path[path.index(node) :], node]


