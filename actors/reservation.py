"""A run's workers reserved together: one Ray placement group per run.

Started one by one, the replicas of runs that compete for CPUs each got a part of what
they asked and waited for the rest, and every run failed waiting. A placement group
reserves all of a run's bundles (one per replica: its CPUs and resources) at once or
none of them, so a run starts whole or waits whole, and runs that cannot all fit take
turns. The wait has no limit: a run that fits the cluster gets its turn once others
finish (one that can never fit is refused before, by the launcher's capacity check).

The group is named after the run, so a later launch of the same run (resume) removes
what a coordinator that died left reserved; a detached run's group outlives its driver
and is removed by its coordinator when the run is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .handlers import Handler

POLL_S = 0.5


def name_of(run_id: str) -> str:
    """The placement group holding `run_id`'s workers."""
    return f"baton:{run_id}:workers"


def bundle(handler: Handler) -> dict[str, float]:
    """What one replica of `handler` reserves: its CPUs and resources (none of zero)."""
    wanted = {"CPU": handler.num_cpus, **handler.resources}
    return {name: amount for name, amount in wanted.items() if amount > 0}


def reserve(handlers: Sequence[Handler], run_id: str, *, detach: bool,
            waiting: Callable[[str], None]) -> PlacementGroup | None:
    """Reserve every replica's bundle for `run_id` at once, waiting as long as the
    cluster is busy; `waiting` is told what the run waits for, every POLL_S while it
    does. None when no replica asks for anything (nothing to reserve)."""
    release(run_id)  # left by a coordinator of this run that died
    bundles = [b for h in handlers for b in [bundle(h)] * h.replicas if b]
    if not bundles:
        return None
    group: PlacementGroup = placement_group(bundles, strategy="PACK", name=name_of(run_id),
                                            lifetime="detached" if detach else None)
    ready = group.ready()
    asked = _total(bundles)
    since = time.monotonic()
    while not ray.wait([ready], timeout=POLL_S)[0]:
        waited = time.monotonic() - since
        waiting(f"the cluster: {asked} for {len(bundles)} workers, {waited:.0f}s so far "
                "(other runs hold it)")
    return group


def placed(group: PlacementGroup | None, handlers: Sequence[Handler],
           handler: Handler, replica: int) -> dict[str, Any]:
    """The actor options that put `handler`'s `replica` in its bundle of `group`."""
    if group is None or not bundle(handler):
        return {}
    index = 0
    for h in handlers:
        if h is handler:
            index += replica
            break
        index += h.replicas if bundle(h) else 0
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_bundle_index=index)}


def release(run_id: str) -> None:
    """Remove the run's reservation, if it has one."""
    try:
        group = get_placement_group(name_of(run_id))
    except ValueError:
        return
    remove_placement_group(group)


def _total(bundles: list[dict[str, float]]) -> str:
    totals: dict[str, float] = {}
    for b in bundles:
        for name, amount in b.items():
            totals[name] = totals.get(name, 0) + amount
    return ", ".join(f"{amount:g} {name}" + ("s" if name == "CPU" and amount != 1 else "")
                     for name, amount in totals.items())
