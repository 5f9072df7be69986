"""Other rules for the stdlib audit, to ask what they would have done with a recorded run.

    baton replay RUN --policy examples/what_if.py:NoUnparsableFiles
    baton replay RUN --policy examples/what_if.py:ByLength

No worker is called: each policy is fed the run's recorded facts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from baton import Task, Verdict
from baton.events.policy import PlanView

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stdlib_audit import AuditPolicy


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
