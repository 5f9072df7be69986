"""Audit the Python standard library as a team of teams: one child run per package.

The parent's `discover` task lists the standard library's top-level packages (and
groups its top-level modules as one more); the policy expands the plan with one
`audit_package` task per package. Each of those is a subrun: a child run with its own
coordinator and its own log, whose plan is one `analyze` task per file of its package
and whose output is the package's summary. The parent checks each summary like any
output and ranks the packages.

    baton run examples/nested_audit.py
    baton show RUN.package-json-1      # one package's run: its own ledger and log

NESTED_AUDIT_PACKAGES=json,email audits only those (a quick look: a child run per
package starts its own coordinator and workers, a few seconds each on a laptop).

Each child's log names the parent's assignment it answers, and the parent's dispatch
names the child, so `baton show` of either leads to the other.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import baton
from baton import Assignment, Check, DefaultPolicy, Task
from baton.events.policy import PlanView

# The flat audit's file analysis, loaded as baton loads a spec file (so its code goes to
# the workers with the handlers, as this file's does).
baton.load_spec(str(Path(__file__).with_name("stdlib_audit.py")))
flat = sys.modules["baton_spec_stdlib_audit"]
FileReport, analyze, analyze_task = flat.FileReport, flat.analyze, flat.analyze_task

TOP_LEVEL = "(top-level modules)"  # the package that groups the stdlib's own .py files
ONLY = [p for p in os.environ.get("NESTED_AUDIT_PACKAGES", "").split(",") if p.strip()]


class Packages(BaseModel):
    """What `discover` found: the stdlib root and its packages, each with its files."""

    root: str
    packages: dict[str, list[str]]


class PackageSummary(BaseModel):
    """A child run's output: one package, summed over its files."""

    package: str
    files: int
    lines: int
    functions: int
    classes: int
    docstring_coverage: float | None
    unparseable: list[str]


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if "site-packages" not in p.parts and "dist-packages" not in p.parts)


@baton.handler(capabilities=["discover_packages"], num_cpus=0.5)
def discover(assignment: Assignment) -> Packages:
    """Group the standard library's .py files by top-level package."""
    root = Path(sysconfig.get_paths()["stdlib"])
    packages: dict[str, list[str]] = {}
    only = set(assignment.inputs.get("only", []))
    for path in _python_files(root):
        relative = path.relative_to(root)
        package = relative.parts[0] if len(relative.parts) > 1 else TOP_LEVEL
        if not only or package in only:
            packages.setdefault(package, []).append(str(relative))
    return Packages(root=str(root), packages=packages)


class PackagePolicy(DefaultPolicy):
    """A child run's rules: the default ones, and a summary of the package."""

    def synthesize(self, plan: PlanView) -> Any:
        reports = [FileReport.model_validate(out) for out in plan.outputs.values()]
        parsed = [r for r in reports if r.parse_error is None]
        definitions = sum(r.definitions for r in parsed)
        return PackageSummary(
            package=plan.tasks[0].inputs.get("package", "?") if plan.tasks else "?",
            files=len(reports), lines=sum(r.lines for r in reports),
            functions=sum(r.functions for r in parsed),
            classes=sum(r.classes for r in parsed),
            docstring_coverage=round(sum(r.documented for r in parsed) / definitions, 4)
            if definitions else None,
            unparseable=sorted(r.path for r in reports if r.parse_error)).model_dump()


@baton.subrun(capabilities=["audit_package"], concurrency=4)
def audit_package(assignment: Assignment) -> baton.Spec:
    """One package's audit, as a run of its own: a task per file (from the assignment's
    inputs only: the root and the package's files)."""
    root, package = assignment.inputs["root"], assignment.inputs["package"]
    tasks = [analyze_task(root, relative) for relative in assignment.inputs["files"]]
    tasks = [t.model_copy(update={"inputs": {**t.inputs, "package": package}})
             for t in tasks]
    return baton.Spec(goal=f"Audit the package {package}", tasks=tasks,
                      handlers=[analyze], policy=PackagePolicy())


class NestedAuditPolicy(DefaultPolicy):
    """A discovery adds one package audit (a subrun) per package; the synthesis ranks
    the packages by size and by documentation."""

    def expand(self, task: Task, output: Any) -> list[Task]:
        if task.capability != "discover_packages":
            return []
        found = Packages.model_validate(output)
        return [Task(id="package-" + "".join(c if c.isalnum() else "_" for c in name),
                     capability="audit_package", output_schema=PackageSummary,
                     instructions=f"Audit every file of the package {name}.",
                     inputs={"root": found.root, "package": name, "files": files},
                     done_when=(Check(field="files", op=">=", value=1),))
                for name, files in sorted(found.packages.items())]

    def synthesize(self, plan: PlanView) -> Any:
        summaries = [PackageSummary.model_validate(out) for tid, out in plan.outputs.items()
                     if tid.startswith("package-")]
        documented = [s for s in summaries if s.docstring_coverage is not None
                      and s.functions + s.classes >= 50]
        return {
            "packages": len(summaries),
            "files": sum(s.files for s in summaries),
            "lines": sum(s.lines for s in summaries),
            "largest_packages": [{"package": s.package, "lines": s.lines} for s in
                                 sorted(summaries, key=lambda s: (-s.lines, s.package))[:10]],
            "least_documented": [{"package": s.package, "coverage": s.docstring_coverage}
                                 for s in sorted(documented, key=lambda s: (
                                     s.docstring_coverage or 0, s.package))[:10]],
        }


spec = baton.Spec(
    goal="Audit the Python standard library, a child run per package",
    tasks=[Task(id="discover", capability="discover_packages", output_schema=Packages,
                instructions="Group the standard library's .py files by package.",
                inputs={"only": ONLY} if ONLY else {},
                done_when=(Check(field="packages", op="nonempty"),))],
    handlers=[discover, audit_package],
    policy=NestedAuditPolicy(),
)
