"""What a handler reports about an assignment besides its output: what it spent on models
(`baton.report_usage`, or `baton.agent` for its model runs) and, for an agent, its
transcript (the messages of its model run). The worker collects both per assignment
and records them with its result or failure.

The cost is genai-prices' from its bundled price table (nothing is fetched), and absent,
never zero, where the table does not know the model: a total with any unknown part is
unknown too, so a sum never reads as less than was spent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from baton.events.model import Json, Usage


@dataclass
class Reported:
    """One assignment's reports so far."""

    usage: list[Usage] = field(default_factory=list)
    transcript: Json = None


# The reports of the assignment running in this context (each of an async worker's
# assignments runs in a task of its own, so in a context of its own).
_REPORTED: ContextVar[Reported | None] = ContextVar("baton_reported", default=None)


def report_usage(*, model: str, requests: int = 1, input_tokens: int = 0,
                 output_tokens: int = 0, cost_usd: float | None = None) -> None:
    """Record what the running assignment spent on a model (call it once per model run,
    or once with the totals). `model` is ``provider:name`` (``openai:gpt-4o``) or a name;
    without `cost_usd`, the price table's, where it knows the model. Outside a worker (a
    handler called in a unit test) there is nothing to record it with: nothing happens."""
    reported = _REPORTED.get()
    if reported is None:
        return
    if cost_usd is None:
        cost_usd = price(model, input_tokens, output_tokens)
    reported.usage.append(Usage(model=model, requests=requests, input_tokens=input_tokens,
                                output_tokens=output_tokens, cost_usd=cost_usd))


def report_transcript(messages: Json) -> None:
    """Keep the running assignment's transcript (an agent's messages, as JSON) with its
    result or failure; the last one reported is kept. Outside a worker: nothing."""
    reported = _REPORTED.get()
    if reported is not None:
        reported.transcript = messages


def bounded(messages: Json, limit: int) -> tuple[Json, int]:
    """A transcript as it is recorded, and its bytes of JSON. Past `limit` bytes, its
    first messages (the prompt) and its last (the reply) are kept, as many as fit, with
    a message between them saying what was left out."""
    if messages is None:
        return None, 0
    size = len(json.dumps(messages, ensure_ascii=False, default=str))
    if size <= limit:
        return messages, size
    every = messages if isinstance(messages, list) else [messages]
    sizes = [len(json.dumps(m, ensure_ascii=False, default=str)) + 1 for m in every]
    # The reply, if it takes at most half the limit; then the first messages that fit.
    last = [every[-1]] if len(every) > 1 and sizes[-1] <= limit // 2 else []
    room = limit - 400 - (sizes[-1] if last else 0)  # (400: the note's own bytes)
    head = 0
    while head < len(every) - len(last) and sizes[head] <= room:
        room, head = room - sizes[head], head + 1
    left_out = len(every) - head - len(last)
    note = {"kind": "omitted", "messages": left_out,
            "bytes": sum(sizes[head:len(every) - len(last)]),
            "note": f"the transcript was {size:,} bytes of JSON, past the limit of "
                    f"{limit:,} (max_output_bytes): {left_out} message(s) left out here"}
    kept = [*every[:head], note, *last]
    return kept, len(json.dumps(kept, ensure_ascii=False, default=str))


@contextmanager
def collecting() -> Iterator[Reported]:
    """Collect what is reported while the block runs (one assignment's handler)."""
    reported = Reported()
    token = _REPORTED.set(reported)
    try:
        yield reported
    finally:
        _REPORTED.reset(token)


def total(reported: list[Usage]) -> Usage | None:
    """One assignment's usage: the sum of its reports (None when there were none)."""
    if not reported:
        return None
    models = list(dict.fromkeys(u.model for u in reported if u.model))
    costs = [u.cost_usd for u in reported]
    return Usage(model=", ".join(models), requests=sum(u.requests for u in reported),
                 input_tokens=sum(u.input_tokens for u in reported),
                 output_tokens=sum(u.output_tokens for u in reported),
                 cost_usd=None if None in costs else sum(c for c in costs if c is not None))


def price(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """US dollars for these tokens by genai-prices' bundled table; None when it does not
    know the model (or is not installed: it comes with the `agents` extra)."""
    try:
        from genai_prices import Usage as Tokens
        from genai_prices import calc_price
    except ImportError:
        return None
    provider, _, name = model.rpartition(":")
    try:
        priced = calc_price(Tokens(input_tokens=input_tokens, output_tokens=output_tokens),
                            model_ref=name, provider_id=provider or None)
    except (LookupError, ValueError):
        return None
    return float(priced.total_price)
