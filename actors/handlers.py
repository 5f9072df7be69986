"""@handler: mark a function or class as the code that does one kind of work.

A handler is hosted in worker actors (its `replicas`), with the Ray resources it asks
for. It receives one `Assignment` and returns an output (a pydantic model or a JSON
value) or raises. An `async def` handler (a function, or a class whose `__call__` is
one) runs on an async worker, which may run `concurrency` of its assignments at once:
work that waits (a model's reply, a download) overlaps. The coordinator knows a handler
only as a `HandlerInfo`: a name, the capabilities it offers, and how many assignments it
can hold at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from baton.events.errors import BadSpecError
from baton.events.model import HandlerInfo

from .ratelimit import RateLimit

DEFAULT_QUEUE_DEPTH = 16


@dataclass(frozen=True)
class Handler:
    """A handler as a spec declares it: the code, what it can do, where it runs."""

    name: str
    target: Any  # the function, or the class whose instances are called
    capabilities: tuple[str, ...]
    replicas: int = 1
    num_cpus: float = 1.0
    resources: dict[str, float] = field(default_factory=dict)
    queue_depth: int = DEFAULT_QUEUE_DEPTH
    concurrency: int = 1  # assignments a replica runs at once (more than one: async only)
    rate_limit: RateLimit | None = None  # sends a period, across its replicas

    @property
    def is_class(self) -> bool:
        return isinstance(self.target, type)

    @property
    def is_async(self) -> bool:
        """Is it an `async def` (a class: its `__call__`)? Then an async worker hosts it."""
        return is_async(self.target)

    def info(self) -> HandlerInfo:
        """What the coordinator records about this handler."""
        return HandlerInfo(
            name=self.name,
            capabilities=self.capabilities,
            capacity=self.replicas * self.queue_depth,
            subrun=getattr(self.target, "is_subrun", False),  # (a @baton.subrun)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the handler directly, as in a unit test (a class is instantiated first)."""
        if self.is_class:
            return self.target()(*args, **kwargs)
        return self.target(*args, **kwargs)


F = TypeVar("F", bound=Callable[..., Any])


@overload
def handler(target: F) -> Handler: ...


@overload
def handler(
    target: None = None,
    *,
    capabilities: Sequence[str] | None = None,
    replicas: int = 1,
    num_cpus: float = 1.0,
    resources: dict[str, float] | None = None,
    queue_depth: int | None = None,
    concurrency: int = 1,
    rate_limit: str | None = None,
    name: str | None = None,
) -> Callable[[F], Handler]: ...


def handler(
    target: Any = None,
    *,
    capabilities: Sequence[str] | None = None,
    replicas: int = 1,
    num_cpus: float = 1.0,
    resources: dict[str, float] | None = None,
    queue_depth: int | None = None,
    concurrency: int = 1,
    rate_limit: str | None = None,
    name: str | None = None,
) -> Any:
    """Declare a handler. Use bare (`@handler`: its capability is its name) or with
    options: ``@handler(capabilities=["analyze"], replicas=4, num_cpus=0.5)``.

    `queue_depth` is how many assignments each replica may hold at once: running, sent
    to it in a batch, or dispatched and waiting to be sent (default 16, and never fewer
    than `concurrency`). Deep enough, a fast handler's replica never idles and gets its
    work in batches; lower it for slow handlers that share a capability, so work is
    routed when a replica is free, not long before.

    `concurrency` is how many assignments each replica runs at once. Above 1 the handler
    must be an `async def`: its waits overlap on one event loop (a sync handler runs one
    at a time; give it more replicas instead).

    `rate_limit` ("60/min", "10/s", "1000/h") caps the assignments sent to the handler
    in any such period, across its replicas: the coordinator holds the rest back."""

    def wrap(obj: Any) -> Handler:
        if not callable(obj):
            raise BadSpecError(f"@handler decorates a function or a class, not {obj!r}")
        own_name = name or getattr(obj, "__name__", None)
        if not own_name:
            raise BadSpecError(f"@handler on {obj!r} needs name=...")
        caps = tuple(capabilities) if capabilities is not None else (own_name,)
        if not caps or not all(isinstance(c, str) and c for c in caps):
            raise BadSpecError(f"handler {own_name!r}: capabilities must be non-empty strings")
        if replicas < 1:
            raise BadSpecError(f"handler {own_name!r}: replicas must be at least 1, not {replicas}")
        if concurrency < 1:
            raise BadSpecError(f"handler {own_name!r}: concurrency must be at least 1, "
                               f"not {concurrency}")
        if concurrency > 1 and not is_async(obj):
            raise BadSpecError(
                f"handler {own_name!r}: concurrency={concurrency} needs an async def "
                "handler (its waits overlap on one event loop); a sync handler runs one "
                "assignment at a time: give it more replicas instead")
        depth = max(DEFAULT_QUEUE_DEPTH, concurrency) if queue_depth is None else queue_depth
        if depth < concurrency:
            raise BadSpecError(f"handler {own_name!r}: queue_depth ({depth}) must be at "
                               f"least its concurrency ({concurrency})")
        if depth < 1:
            raise BadSpecError(f"handler {own_name!r}: queue_depth must be at least 1")
        if num_cpus < 0:
            raise BadSpecError(f"handler {own_name!r}: num_cpus cannot be negative")
        return Handler(
            name=own_name,
            target=obj,
            capabilities=caps,
            replicas=replicas,
            num_cpus=num_cpus,
            resources=dict(resources or {}),
            queue_depth=depth,
            concurrency=concurrency,
            rate_limit=RateLimit.parse(rate_limit, own_name) if rate_limit else None,
        )

    if target is not None:
        return wrap(target)
    return wrap


def is_async(target: Any) -> bool:
    """Is `target` (a function, a class whose instances are called, or such an instance)
    an `async def`?"""
    if isinstance(target, type):
        return inspect.iscoroutinefunction(target.__call__)
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        type(target).__call__)
