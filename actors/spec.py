"""Spec: what a user hands Baton — a goal, a plan, handlers and a policy — and loading one.

A spec is a Python module exposing `spec`; `baton run path/to/file.py` or
`baton run package.module:spec`. Everything wrong with a spec is found here, before
anything starts: a missing file, no `spec`, an unknown capability, a cycle, a duplicate.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from baton.events.errors import BadSpecError
from baton.events.model import HandlerInfo, RunBudget, Task, schema_identity, schema_topic
from baton.events.plan import plan_problems
from baton.events.policy import DefaultPolicy, Policy

from .handlers import Handler


@dataclass
class Spec:
    """A run to make: the goal, the initial plan, the handlers, the policy, and what it
    may spend (`budget`: dollars and tokens on models, seconds; none: no limit)."""

    goal: str
    tasks: Sequence[Task]
    handlers: Sequence[Handler]
    policy: Policy = field(default_factory=DefaultPolicy)
    source: str = ""  # where it was loaded from, for messages
    budget: RunBudget | None = None

    def handler_infos(self) -> tuple[HandlerInfo, ...]:
        return tuple(h.info() for h in self.handlers)

    def problems(self) -> list[str]:
        """Everything that stops this spec from running (empty when it can run)."""
        problems: list[str] = []
        for h in self.handlers:
            if not isinstance(h, Handler):
                problems.append(f"{h!r} is not a handler; decorate it with @baton.handler")
        if problems:
            return problems
        names = [h.name for h in self.handlers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"handler names used twice: {', '.join(duplicates)}")
        if not self.tasks:
            problems.append("the plan has no tasks")
        for task in self.tasks:
            if not isinstance(task, Task):
                return [*problems, f"{task!r} in tasks is not a baton.Task"]
        by_capability: dict[str, list[str]] = {}
        for h in self.handlers:
            for cap in h.capabilities:
                by_capability.setdefault(cap, []).append(h.name)
        problems += plan_problems(self.tasks, {}, by_capability, schemas=None)
        for task in self.tasks:
            try:
                schema_of(task)
            except BadSpecError as error:
                problems.append(f"task {task.id!r}: {error}")
        return problems

    def validate(self) -> None:
        """Raise BadSpecError listing every problem, if there are any."""
        problems = self.problems()
        if problems:
            where = f"spec {self.source}" if self.source else "the spec"
            raise BadSpecError(f"{where} cannot run:\n" + "\n".join(f"  - {p}" for p in problems))


def load_spec(ref: str) -> Spec:
    """The Spec named by `ref`: ``path/to/file.py[:name]`` or ``package.module[:name]``
    (the name defaults to `spec`; it may be a Spec or a function returning one)."""
    target, _, name = ref.partition(":") if not _is_windows_drive(ref) else (ref, "", "")
    name = name or "spec"
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    if not hasattr(module, name):
        raise BadSpecError(
            f"{target} has no `{name}`; define `{name} = baton.Spec(goal=..., tasks=[...], "
            "handlers=[...])` at module level"
        )
    found: Any = getattr(module, name)
    if callable(found) and not isinstance(found, Spec):
        try:
            found = found()
        except Exception as error:
            raise BadSpecError(f"{target}:{name}() failed to make the spec: "
                               f"{type(error).__name__}: {error}") from error
    if not isinstance(found, Spec):
        raise BadSpecError(f"{target}:{name} is a {type(found).__name__}, not a baton.Spec")
    found.source = ref
    return found


def resolve_schema(topic: str) -> type[BaseModel]:
    """The output schema class recorded as `topic` (``module:QualName``), imported;
    BadSpecError when it cannot be."""
    module_name, _, qualname = topic.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise BadSpecError(f"output schema {topic!r} cannot be imported ({error}); define it at "
                           "module level in an importable module") from error
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise BadSpecError(f"output schema {topic!r} is not a pydantic model class")
    return found


def schema_of(task: Task) -> type[BaseModel] | None:
    """The task's output schema class: the one it carries, else imported by its topic."""
    if task.output_schema is None:
        return None
    return task.schema_model() or resolve_schema(task.output_schema)


def schemas_of(tasks: Iterable[Task]) -> dict[str, type[BaseModel]]:
    """The output schema classes the decider needs for `tasks`, by topic; BadSpecError for
    the first that cannot be found."""
    found: dict[str, type[BaseModel]] = {}
    for task in tasks:
        if task.output_schema is not None and task.output_schema not in found:
            found[task.output_schema] = schema_of(task)  # type: ignore[assignment]
    return found


class ImportedSchemas(Mapping[str, type[BaseModel]]):
    """Output schema classes by topic, imported when first asked for: what a replay
    hands the decider for the tasks of a recorded log (whose topics are known only as
    it is read). A topic that does not import is absent; why is kept in `missing`."""

    def __init__(self, known: Mapping[str, type[BaseModel]] | None = None):
        self.found: dict[str, type[BaseModel]] = dict(known or {})
        self.missing: dict[str, str] = {}

    def __getitem__(self, topic: str) -> type[BaseModel]:
        model = self.found.get(topic)
        if model is not None:
            return model
        if topic not in self.missing:
            try:
                self.found[topic] = model = resolve_schema(topic)
                return model
            except BadSpecError as error:
                self.missing[topic] = str(error)
        raise KeyError(topic)

    def __iter__(self) -> Iterator[str]:
        return iter(self.found)

    def __len__(self) -> int:
        return len(self.found)


def schema_identities(schemas: dict[str, type[BaseModel]]) -> dict[str, str]:
    """What a run records of its output schemas: a digest of each one's JSON Schema."""
    return {topic: schema_identity(model) for topic, model in sorted(schemas.items())}


POLICY_RULES = ("route", "validate", "recover", "expand", "check", "synthesize")


def load_policy(ref: str) -> Policy:
    """The policy named by `ref`: ``path/to/file.py:Name`` or ``package.module:Name``,
    where Name is a policy class (made with no arguments) or a policy instance."""
    target, _, name = ref.rpartition(":")
    if not target or not name:
        raise BadSpecError(f"policy {ref!r}: write module:Name or path/to/file.py:Name")
    module = (_import_file(target, "policy") if target.endswith(".py")
              else _import_module(target, "policy"))
    found: Any = getattr(module, name, None)
    if found is None:
        raise BadSpecError(f"{target} has no `{name}`")
    missing = [rule for rule in POLICY_RULES if not callable(getattr(found, rule, None))]
    if missing:
        kind = found.__name__ if isinstance(found, type) else type(found).__name__
        raise BadSpecError(f"{ref} is {kind}, not a policy: it lacks {', '.join(missing)} "
                           "(subclass baton.DefaultPolicy)")
    if isinstance(found, type):
        try:
            found = found()
        except Exception as error:
            raise BadSpecError(f"policy class {ref} cannot be made without arguments "
                               f"({type(error).__name__}: {error}); export an instance") from None
    return found  # type: ignore[no-any-return]


IDENTITY_VERSION = "h1"  # how policy_identity hashes; a new way gets a new version


def policy_identity(policy: Policy) -> tuple[str, str]:
    """The policy's qualified name, and a hash of its classes' source and its settings,
    so a replay can tell whether the policy it is given is the one that ran."""
    cls = type(policy)
    parts: list[str] = []
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", "abc", "typing"):
            continue
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):  # defined where no source is kept
            parts.append(f"{klass.__module__}.{klass.__qualname__}")
    # Its settings, by value where they are plain data and by type otherwise (a repr
    # may hold a memory address, which would differ in every process).
    settings = getattr(policy, "__dict__", {})
    parts.append(json.dumps(settings, sort_keys=True, default=lambda v: type(v).__qualname__))
    source_hash = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{cls.__module__}:{cls.__qualname__}", f"{IDENTITY_VERSION}:{source_hash}"


def same_policy(recorded: tuple[str, str], now: tuple[str, str]) -> bool | None:
    """Is the policy identified `now` (name, source hash) the one `recorded`? None when
    that cannot be told: nothing was recorded, or the hash was made another way."""
    if not recorded[0]:
        return None
    if recorded[0] != now[0]:
        return False
    if not recorded[1] or recorded[1].partition(":")[0] != now[1].partition(":")[0]:
        return None
    return recorded[1] == now[1]


def require_handlers(spec: Spec, handlers: Iterable[HandlerInfo], run_id: str) -> None:
    """BadSpecError unless `spec` offers the handlers the run has (names and capabilities):
    its log names them, so code may change but names may not."""
    offered = {h.name: h.capabilities for h in spec.handler_infos()}
    recorded = {h.name: h.capabilities for h in handlers}
    if offered != recorded:
        raise BadSpecError(f"the spec's handlers {offered} differ from those run {run_id!r} "
                           f"records, {recorded}; keep their names and capabilities (change "
                           "their code, not their names)")


def absolute_ref(ref: str) -> str:
    """`ref` (file.py[:name] or module[:name]) with a file's path made absolute, so it
    loads again from any working directory."""
    target, sep, name = ref.partition(":")
    if target.endswith(".py"):
        target = str(Path(target).resolve())
    return target + sep + name


FILE_MODULE_PREFIX = "baton_spec_"  # a spec or policy file's module, named for its file


def _is_windows_drive(ref: str) -> bool:
    return len(ref) > 1 and ref[1] == ":" and ref[0].isalpha()


def _import_file(path_text: str, what: str = "spec") -> ModuleType:
    path = Path(path_text)
    if not path.is_file():
        raise BadSpecError(f"{what} file {path_text} does not exist")
    module_name = f"{FILE_MODULE_PREFIX}{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadSpecError(f"{what} file {path_text} cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise BadSpecError(f"{what} file {path_text} failed to import: "
                           f"{type(error).__name__}: {error}") from error
    return module


def modules_from_files() -> list[ModuleType]:
    """The modules loaded in this process from a file by path. A worker cannot import
    them, so the launcher sends their code by value along with the handlers."""
    return [m for name, m in list(sys.modules.items()) if name.startswith(FILE_MODULE_PREFIX)]


def schemas_from_files() -> dict[str, type[BaseModel]]:
    """The pydantic models defined in modules loaded from files, by topic: output
    schemas a policy may give the tasks it adds while a run goes, which no worker could
    import by their topic."""
    return {schema_topic(value): value for module in modules_from_files()
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, BaseModel)
            and value.__module__ == module.__name__}


def _import_module(name: str, what: str = "spec") -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise BadSpecError(f"{what} module {name!r} cannot be found ({error}); give a path to a "
                           ".py file or an importable module") from error
    except Exception as error:
        raise BadSpecError(f"{what} module {name!r} failed to import: "
                           f"{type(error).__name__}: {error}") from error
