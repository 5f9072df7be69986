"""Recorded values: the Frozen base of every one, and the canonical JSON and digests
that make their bytes stable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict

Json: TypeAlias = Any
"""A JSON value: None, bool, int, float, str, list of Json, dict of str to Json."""


class Frozen(BaseModel):
    """Base of every recorded value: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (Ray's wire, a plan handed to the coordinator) as the class and its
        # field values in order. pydantic's own pickle carries a dict of them and the
        # set of fields given, for every model: twice the bytes, and a plan of 100,000
        # tasks rebuilt with a set each holds a fifth of its memory in those sets.
        fields = self.__dict__
        return rebuilt, (type(self), tuple([fields[name] for name in _layout(type(self))[0]]))


def rebuilt(cls: type[Frozen], values: tuple[Any, ...]) -> Frozen:
    """A model as `Frozen.__reduce__` pickled it: not validated again (it was when it
    was built), and every field counted as given, in one set its class's models share
    (pydantic copies that set before changing it, and frozen models never do)."""
    names, given = _layout(cls)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", dict(zip(names, values, strict=True)))
    object.__setattr__(model, "__pydantic_fields_set__", given)
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def _layout(cls: type[Frozen]) -> tuple[tuple[str, ...], set[str]]:
    """A model class's field names in order, and the set of them."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = (tuple(cls.model_fields), set(cls.model_fields))
    return layout


_LAYOUTS: dict[type[Frozen], tuple[tuple[str, ...], set[str]]] = {}

# --- canonical JSON --------------------------------------------------------------------


# What json.dumps would build afresh on every call given these arguments.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    """Stable bytes for a JSON value: sorted keys, no spaces (for digests)."""
    return _CANONICAL.encode(value).encode()


def as_json(value: Any) -> Json:
    """`value` as a reader of the log will decode it (tuples become lists, and so on),
    so a replay compares like with like. Copies only when it has to."""
    return value if _is_json(value) else json.loads(json.dumps(value, default=str))


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def digest(data: bytes) -> str:
    """A short hex digest of bytes (sha256, 32 hex characters)."""
    return hashlib.sha256(data).hexdigest()[:32]
