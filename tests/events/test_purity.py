"""The pure core stays pure: nothing in events/ outside events/store/ reaches the world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "events"
FORBIDDEN = {"ray", "time", "random", "uuid", "datetime", "os", "sqlite3", "threading",
             "asyncio", "eventsourcing", "pathlib", "subprocess", "socket", "secrets",
             "importlib"}


def core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "store" not in p.relative_to(CORE).parts)


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level and node.module == "store":
            roots.add("events.store")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots.add("__import__")
    return roots


def test_the_core_has_modules_to_check() -> None:
    """The scan looks at the real core (decider, model, schema, policy, errors)."""
    names = {p.stem for p in core_modules()}
    assert {"decider", "model", "schema", "policy", "errors"} <= names


@pytest.mark.parametrize("module", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_a_core_module_imports_no_clock_randomness_disk_or_ray(module: Path) -> None:
    """No core module imports ray, time, random, uuid, datetime, os, sqlite3, threading,
    asyncio, eventsourcing, importlib (or the store, or anything via __import__): the
    shell resolves user code (schemas, policies) and hands it to the decider."""
    found = imported_roots(module.read_text()) & (FORBIDDEN | {"events.store", "__import__"})
    assert not found, f"{module.name} imports {sorted(found)}"


def test_the_scan_catches_a_forbidden_import() -> None:
    """The scanner itself sees `import time`, `from os import path` and a store import."""
    source = "import time\nfrom os import path\nfrom .store import codec\n"
    assert {"time", "os", "events.store"} <= imported_roots(source)
