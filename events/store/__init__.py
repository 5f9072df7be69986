"""baton.events.store: persistence of run logs, kept apart from the pure core."""

from .codec import Codec
from .index import RunInfo
from .recorder import (
    DEFAULT_URL,
    EventStore,
    Notification,
    Recorded,
    collector_paused,
    masked_url,
    open_store,
)

__all__ = ["DEFAULT_URL", "Codec", "EventStore", "Notification", "Recorded", "RunInfo",
           "collector_paused", "masked_url", "open_store"]
