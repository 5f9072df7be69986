"""Other rules for the stdlib audit, to ask what they would have done with a recorded run.

    baton replay RUN --policy examples/what_if.py:NoUnparsableFiles
    baton replay RUN --policy examples/what_if.py:ByLength

No worker is called: each policy is fed the run's recorded facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from baton import Task, Verdict, load_spec
from baton.events.policy import PlanView

# The audit's own policy class, loaded the way `baton run` loaded it, so the plan it
# expands names the same output schemas as the recorded run's.
AuditPolicy: Any = type(load_spec(str(Path(__file__).with_name("stdlib_audit.py"))).policy)


class NoUnparsableFiles(AuditPolicy):
    """Treat a file that does not parse as a failed analysis rather than a finding.
    The first rejection asks for a second attempt nobody made, so the replay stops there."""

    def validate(self, task: Task, output: Any) -> Verdict:
        verdict = super().validate(task, output)
        if verdict.accepted and isinstance(output, dict) and output.get("parse_error"):
            return Verdict.of([f"{output['path']} does not parse: {output['parse_error']}"])
        return verdict


class ByLength(AuditPolicy):
    """Rank the audit by the longest files only: every decision is the same until the
    synthesis, whose output differs."""

    def synthesize(self, plan: PlanView) -> Any:
        report = super().synthesize(plan)
        lengths = sorted(((out["lines"], out["module"]) for tid, out in plan.outputs.items()
                          if tid.startswith("analyze:")), reverse=True)
        return {"files": report["files"], "longest": [
            {"module": module, "lines": lines} for lines, module in lengths[:10]]}
