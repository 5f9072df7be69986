"""Events to stored bytes and back: compact JSON, validated on the way in, upcast by version.

Old events are upgraded where they are read, never rewritten in the store: an upcaster
turns the JSON of version N of a type into version N+1, and they chain. The bytes as
stored stay what the digest chain was computed over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import BadLogError
from ..schema import EVENT_ADAPTER, EVENT_TYPES, Envelope, Event, encode

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_VERSION: dict[str, int] = {
    name: cls.model_fields["schema_version"].default for name, cls in EVENT_TYPES.items()
}

# (type, version) -> function from that version's JSON to the next version's.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class Codec:
    """Encodes events to compact JSON and decodes (validates, upcasts) them back."""

    def __init__(self, upcasters: Mapping[tuple[str, int], Upcaster] | None = None):
        self.upcasters = dict(UPCASTERS if upcasters is None else upcasters)

    def encode(self, event: Envelope) -> bytes:
        return encode(event)

    def decode(self, data: bytes, *, run_id: str, seq: int) -> Event:
        """The event recorded as `data` at (`run_id`, `seq`); BadLogError names both when the
        record is malformed, of an unknown type, or filed under the wrong place."""
        try:
            event: Event = EVENT_ADAPTER.validate_json(data)
        except ValidationError:
            event = self._decode_slowly(data, run_id, seq)
        else:
            if event.schema_version != CURRENT_VERSION[event.type]:
                event = self._decode_slowly(data, run_id, seq)
        if event.run_id != run_id or event.seq != seq:
            raise BadLogError(
                f"record says run {event.run_id!r} seq {event.seq} but is filed under "
                "this place; the store was edited",
                run_id=run_id,
                seq=seq,
            )
        return event

    def _decode_slowly(self, data: bytes, run_id: str, seq: int) -> Event:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadLogError(f"record is not JSON ({error})", run_id=run_id, seq=seq) from None
        except RecursionError:
            raise BadLogError("record nests deeper than it can be read", run_id=run_id,
                              seq=seq) from None
        if not isinstance(obj, dict):
            raise BadLogError("record is not a JSON object", run_id=run_id, seq=seq)
        kind = obj.get("type")
        if kind not in EVENT_TYPES:
            raise BadLogError(
                f"unknown event type {kind!r}; this Baton knows {', '.join(sorted(EVENT_TYPES))}",
                run_id=run_id,
                seq=seq,
            )
        version = obj.get("schema_version", 1)
        current = CURRENT_VERSION[kind]
        if not isinstance(version, int) or version > current:
            raise BadLogError(
                f"{kind} schema version {version!r} is newer than this Baton reads "
                f"(up to {current}); upgrade Baton",
                run_id=run_id,
                seq=seq,
            )
        while version < current:
            upcast = self.upcasters.get((kind, version))
            if upcast is None:
                raise BadLogError(
                    f"no upcaster from {kind} version {version} to {version + 1}",
                    run_id=run_id,
                    seq=seq,
                )
            obj = upcast(dict(obj))
            version += 1
            obj["schema_version"] = version
        try:
            event: Event = EVENT_TYPES[kind].model_validate(obj)  # type: ignore[assignment]
            return event
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadLogError(
                f"malformed {kind} record: {where}: {first['msg']}", run_id=run_id, seq=seq
            ) from None
