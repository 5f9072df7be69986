"""Audit the Python standard library installed on this machine.

The coordinator does not list files itself: a `discover` task, done by a worker, returns
the `.py` files under the interpreter's stdlib directory, and the policy expands the
plan with one `analyze` task per file (a recorded PlanChanged). Each `analyze` parses
one file with `ast`; task checks reject impossible reports; the synthesis ranks modules.

    baton run examples/stdlib_audit.py
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import baton
from baton import Assignment, Check, DefaultPolicy, Task
from baton.events.policy import PlanView


class Listing(BaseModel):
    """What `discover` found: the stdlib root and its .py files, relative to it."""

    root: str
    files: list[str]


class FileReport(BaseModel):
    """What `analyze` found in one file."""

    path: str
    module: str
    lines: int
    functions: int
    classes: int
    definitions: int
    documented: int
    docstring_coverage: float
    longest_function: str | None
    longest_function_lines: int
    parse_error: str | None = None


REPORT_CHECKS = (
    Check(field="lines", op=">=", value=0, message="a file has no negative lines"),
    Check(field="definitions", op=">=", value=0),
    Check(field="documented", op="<=", other="definitions",
          message="more documented definitions than definitions"),
    Check(field="docstring_coverage", op="<=", value=1.0, message="coverage above 100%"),
    Check(field="docstring_coverage", op=">=", value=0.0, message="coverage below 0%"),
    Check(field="longest_function_lines", op="<=", other="lines",
          message="a function longer than its file"),
)


@baton.handler(capabilities=["discover"], num_cpus=0.5)
def discover(assignment: Assignment) -> Listing:
    """List the standard library's .py files (not site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )
    return Listing(root=str(root), files=files)


@baton.handler(capabilities=["analyze"], replicas=2, num_cpus=0.5)
def analyze(assignment: Assignment) -> FileReport:
    """Parse one file: functions, classes, docstring coverage, the longest function."""
    root, relative = Path(assignment.inputs["root"]), assignment.inputs["path"]
    source = (root / relative).read_bytes()
    lines = source.count(b"\n") + (0 if source.endswith(b"\n") or not source else 1)
    module = relative[:-3].replace("/", ".").removesuffix(".__init__")
    try:
        tree = ast.parse(source, filename=relative)
    except (SyntaxError, ValueError) as error:
        # Test data in the stdlib is sometimes deliberately invalid Python: a finding.
        return FileReport(path=relative, module=module, lines=lines, functions=0, classes=0,
                          definitions=0, documented=0, docstring_coverage=0.0,
                          longest_function=None, longest_function_lines=0,
                          parse_error=f"{type(error).__name__}: {error}")
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    definitions = functions + classes
    documented = sum(1 for n in definitions if ast.get_docstring(n))
    longest = max(functions, key=lambda f: (f.end_lineno or f.lineno) - f.lineno, default=None)
    return FileReport(
        path=relative,
        module=module,
        lines=lines,
        functions=len(functions),
        classes=len(classes),
        definitions=len(definitions),
        documented=documented,
        docstring_coverage=round(documented / len(definitions), 4) if definitions else 1.0,
        longest_function=longest.name if longest else None,
        longest_function_lines=((longest.end_lineno or longest.lineno) - longest.lineno + 1)
        if longest else 0,
    )


def analyze_task(root: str, relative: str) -> Task:
    return Task(
        id="analyze:" + re.sub(r"[\s#]", "_", relative),
        capability="analyze",
        instructions="Parse the file; count functions, classes and docstrings.",
        inputs={"root": root, "path": relative},
        output_schema=FileReport,
        done_when=REPORT_CHECKS,
    )


class AuditPolicy(DefaultPolicy):
    """The default rules, plus: a discovery adds one analyze task per file, and the
    synthesis ranks modules instead of listing every report."""

    def expand(self, task: Task, output: Any) -> list[Task]:
        if task.capability != "discover":
            return []
        listing = Listing.model_validate(output)
        return [analyze_task(listing.root, relative) for relative in listing.files]

    def synthesize(self, plan: PlanView) -> Any:
        reports = [FileReport.model_validate(out) for tid, out in plan.outputs.items()
                   if tid.startswith("analyze:")]
        parsed = [r for r in reports if r.parse_error is None]
        definitions = sum(r.definitions for r in parsed)
        documented = sum(r.documented for r in parsed)

        def top(key: Any, n: int = 10) -> list[dict[str, Any]]:
            return [{"module": r.module, "value": key(r)}
                    for r in sorted(parsed, key=lambda r: (-key(r), r.module))[:n]]

        substantial = [r for r in parsed if r.definitions >= 20]
        return {
            "files": len(reports),
            "lines": sum(r.lines for r in reports),
            "functions": sum(r.functions for r in parsed),
            "classes": sum(r.classes for r in parsed),
            "docstring_coverage": round(documented / definitions, 4) if definitions else None,
            "largest_modules": top(lambda r: r.lines),
            "most_functions": top(lambda r: r.functions),
            "longest_functions": [
                {"module": r.module, "function": r.longest_function,
                 "lines": r.longest_function_lines}
                for r in sorted(parsed, key=lambda r: (-r.longest_function_lines, r.module))[:10]
            ],
            "least_documented": [
                {"module": r.module, "coverage": r.docstring_coverage,
                 "definitions": r.definitions}
                for r in sorted(substantial, key=lambda r: (r.docstring_coverage, r.module))[:10]
            ],
            "unparseable": sorted(r.path for r in reports if r.parse_error),
        }


spec = baton.Spec(
    goal="Audit the Python standard library on this machine",
    tasks=[Task(id="discover", capability="discover", output_schema=Listing,
                instructions="List every .py file of the standard library.",
                done_when=(Check(field="files", op="nonempty"),))],
    handlers=[discover, analyze],
    policy=AuditPolicy(),
)
