"""A flaky workload: handlers fail or return invalid output at a seeded rate.

Retries, reassignments, abandonments and escalations all show up in the log. The chaos
is a pure function of the seed and the assignment id, so a rerun is the same run:

    BATON_CHAOS_RATE=0.3 BATON_CHAOS_SEED=7 baton run examples/flaky.py
    baton show RUN        # the ledger, and any escalation still waiting on a person

With escalations (required tasks that exhaust every handler) the run does not hang:
it ends `waiting`, and `baton show` lists the open questions.
"""

from __future__ import annotations

import os
import random
from typing import Any

from pydantic import BaseModel

import baton
from baton import Assignment, Budget, Task

RATE = float(os.environ.get("BATON_CHAOS_RATE", "0.3"))
SEED = int(os.environ.get("BATON_CHAOS_SEED", "7"))


class Square(BaseModel):
    n: int
    square: int


def chaos(assignment: Assignment) -> str:
    """What goes wrong with this attempt: nothing, a crash, or a wrong answer."""
    draw = random.Random(f"{SEED}:{assignment.handler}:{assignment.id}").random()
    if draw < RATE / 2:
        return "crash"
    if draw < RATE:
        return "wrong"
    return "fine"


def square(assignment: Assignment) -> Any:
    n = assignment.inputs["n"]
    fault = chaos(assignment)
    if fault == "crash":
        raise ConnectionError(f"upstream refused attempt {assignment.id}")
    return Square(n=n, square=n * n + (1 if fault == "wrong" else 0))


primary = baton.handler(capabilities=["square"], num_cpus=0.5, name="primary")(square)
backup = baton.handler(capabilities=["square"], num_cpus=0.5, name="backup")(square)



class CheckedSquares(baton.DefaultPolicy):
    """Checks each square against its input (a check needs the truth to compare with)."""

    def validate(self, task: Task, output: Any) -> baton.events.Verdict:
        verdict = super().validate(task, output)
        if verdict.accepted and output["square"] != output["n"] ** 2:
            return baton.events.Verdict.of([f"wrong square: {output['n']}² is not "
                                            f"{output['square']}"])
        return verdict


spec = baton.Spec(
    goal=f"square 40 numbers with chaos rate {RATE} seed {SEED}",
    tasks=[
        Task(id=f"square-{n}", capability="square", inputs={"n": n}, output_schema=Square,
             required=n % 4 != 0, budget=Budget(attempts=2))
        for n in range(40)
    ],
    handlers=[primary, backup],
    policy=CheckedSquares(),
)
