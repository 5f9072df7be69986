"""baton.agent: a handler made from a pydantic-ai `Agent`, one model run per assignment.

The assignment becomes the prompt: its instructions, then the feedback the recovery
rule passed on from earlier attempts (so a retry is asked again with what was wrong),
then its inputs as JSON, exactly the context the task allows and nothing else. The
task's output schema becomes the run's output type, so the model is asked for that
shape (the coordinator still validates what comes back). What the run spent is
reported (`usage.report_usage`) and recorded with the result or failure, under the name
of the model that answered.

Which model answers: the agent's own, unless the run names one for every agent
(`baton run --model provider:name`, `baton.run(model=...)`, or $BATON_MODEL); `test`
is pydantic-ai's TestModel, which needs no key and no network (a dry run). pydantic-ai
is imported only when an agent is made or runs (the `agents` extra).
"""

from __future__ import annotations

import contextvars
import json
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from baton.events.errors import BadSpecError
from baton.events.model import Assignment

from .handlers import Handler, handler
from .reported import report_transcript, report_usage
from .spec import ImportedSchemas, Spec

MODEL_ENV = "BATON_MODEL"
DRY_RUN_MODEL = "test"  # pydantic-ai's TestModel: no key, no network


def prompt(assignment: Assignment) -> str:
    """What the model is asked for one assignment."""
    parts = [assignment.instructions.strip() or f"Do the task {assignment.task_id!r}."]
    if assignment.feedback:
        parts.append("Earlier attempts at this task were not accepted:\n" +
                     "\n".join(f"- {line}" for line in assignment.feedback) +
                     "\nAnswer again, putting that right.")
    parts.append("Inputs (JSON):\n" + json.dumps(assignment.inputs, indent=2, sort_keys=True,
                                                 ensure_ascii=False))
    return "\n\n".join(parts)


class AgentCall:
    """The code of an agent handler: runs its agent on each assignment."""

    def __init__(self, agent: Any, model: str | None = None,
                 schemas: Mapping[str, type[BaseModel]] | None = None):
        self.agent = agent
        self.model = model  # the run's choice for every agent; None: the agent's own
        # The run's output schemas, travelling with the handler: a spec loaded from a
        # file defines classes no worker could import by their topic.
        self.schemas = ImportedSchemas(schemas)

    def __reduce__(self) -> tuple[Any, ...]:
        # A pydantic-ai Agent keeps per-process things that do not pickle: its overrides
        # (ContextVars, unset here) and a cache of models (weak references). Both are
        # made afresh, empty, where it lands.
        return _rebuilt, (self.model, dict(self.schemas.found), type(self.agent),
                          *_portable(self.agent))

    def prepared(self, model: str | None,
                 schemas: Mapping[str, type[BaseModel]]) -> AgentCall:
        """The same agent for one run: answering with `model` (None: its own), knowing
        the run's output schemas."""
        return AgentCall(self.agent, model, schemas)

    async def __call__(self, assignment: Assignment) -> Any:
        from pydantic_ai.usage import RunUsage

        output_type: Any = str
        if assignment.output_schema is not None:
            output_type = self.schemas[assignment.output_schema]  # KeyError: not importable
        spent = RunUsage()
        model = _model(self.model)
        try:
            ran = await self.agent.run(prompt(assignment), output_type=output_type,
                                       model=model, usage=spent)
        except BaseException:
            if spent.requests:
                report_usage(model=self._name(model), requests=spent.requests,
                             input_tokens=spent.input_tokens,
                             output_tokens=spent.output_tokens)
            raise
        report_transcript(json.loads(ran.all_messages_json()))
        answered = ran.response
        name = answered.model_name or self._name(model)
        provider = getattr(answered, "provider_name", None)
        report_usage(model=f"{provider}:{name}" if provider and provider != name else name,
                     requests=spent.requests, input_tokens=spent.input_tokens,
                     output_tokens=spent.output_tokens)
        return ran.output

    def _name(self, model: Any) -> str:
        chosen = model if model is not None else self.agent.model
        return chosen if isinstance(chosen, str) else str(getattr(chosen, "model_name", chosen))


def _portable(agent: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent's attributes that pickle, and how to make the rest afresh: a ContextVar
    as its name and default, a weak cache as its type."""
    fresh = contextvars.Context()
    state: dict[str, Any] = {}
    remade: dict[str, Any] = {}
    for attribute, value in vars(agent).items():
        if isinstance(value, contextvars.ContextVar):
            try:
                remade[attribute] = (value.name, fresh.run(value.get))
            except LookupError:
                remade[attribute] = (value.name, _NO_DEFAULT)
        elif isinstance(value, weakref.WeakValueDictionary | weakref.WeakKeyDictionary):
            remade[attribute] = type(value)
        else:
            state[attribute] = value
    return state, remade


_NO_DEFAULT = "baton:no-default"


def _rebuilt(model: str | None, schemas: dict[str, type[BaseModel]], cls: type[Any],
             state: dict[str, Any], remade: dict[str, Any]) -> AgentCall:
    agent = object.__new__(cls)
    vars(agent).update(state)
    for attribute, how in remade.items():
        if isinstance(how, type):
            setattr(agent, attribute, how())
        else:
            name, default = how
            setattr(agent, attribute, contextvars.ContextVar(name) if default == _NO_DEFAULT
                    else contextvars.ContextVar(name, default=default))
    return AgentCall(agent, model, schemas)


def _model(name: str | None) -> Any:
    if name is None:
        return None
    if name == DRY_RUN_MODEL:
        from pydantic_ai.models.test import TestModel

        return TestModel()
    return name


def agent(
    agent: Any,
    *,
    capabilities: Sequence[str] | None = None,
    replicas: int = 1,
    concurrency: int = 1,
    num_cpus: float = 0.5,
    resources: dict[str, float] | None = None,
    queue_depth: int | None = None,
    rate_limit: str | None = None,
    name: str | None = None,
) -> Handler:
    """A handler made from a pydantic-ai `Agent`: each assignment is one run of it.
    ``baton.agent(Agent("openai:gpt-4o", instructions=...), capabilities=["research"],
    replicas=2, concurrency=8)``. Options as `baton.handler`'s; its name is the
    agent's name, else its first capability."""
    try:
        from pydantic_ai import Agent
    except ImportError:
        raise BadSpecError("baton.agent needs pydantic-ai: pip install 'baton-ray[agents]'"
                           ) from None
    if not isinstance(agent, Agent):
        raise BadSpecError(f"baton.agent takes a pydantic_ai.Agent, not {agent!r}")
    caps = list(capabilities) if capabilities is not None else None
    own = name or agent.name or (caps[0] if caps else None)
    if not own:
        raise BadSpecError("baton.agent needs name= or capabilities= (its agent has no name)")
    return handler(capabilities=caps, replicas=replicas, concurrency=concurrency,
                   num_cpus=num_cpus, resources=resources, queue_depth=queue_depth,
                   rate_limit=rate_limit, name=own)(AgentCall(agent))


def prepared(spec: Spec, model: str | None,
             schemas: Mapping[str, type[BaseModel]]) -> Spec:
    """The spec with its agents ready for one run: each answering with `model` (else
    $BATON_MODEL; neither: each its own) and knowing the run's output schemas. A model
    that cannot be used here (an unknown provider, a provider whose package is not
    installed, a missing key) is refused before anything starts."""
    if not any(isinstance(h.target, AgentCall) for h in spec.handlers):
        return spec
    model = model or os.environ.get(MODEL_ENV) or None
    if model is None:  # each its own: each must be usable here
        for h in spec.handlers:
            if isinstance(h.target, AgentCall) and isinstance(h.target.agent.model, str):
                _usable(h.target.agent.model, f"agent {h.name!r} answers with ")
    elif model != DRY_RUN_MODEL:
        _usable(model, "")
    handlers = [replace(h, target=h.target.prepared(model, schemas))
                if isinstance(h.target, AgentCall) else h for h in spec.handlers]
    return replace(spec, handlers=handlers)


def _usable(model: str, whose: str) -> None:
    """BadSpecError unless pydantic-ai can make `model` here (its provider known, its
    package installed, its key set)."""
    from pydantic_ai.models import infer_model

    try:
        infer_model(model)
    except Exception as error:  # pydantic-ai's UserError, ImportError, a key missing
        raise BadSpecError(f"{whose}model {model!r}, which cannot be used here: {error} "
                           f"(--model {DRY_RUN_MODEL} runs every agent on a test model, "
                           "with no key and no network)") from None
