"""baton.events.store: persistence of run logs, kept apart from the pure core."""

from .codec import Codec
from .index import RunInfo
from .recorder import EventStore, Notification, Recorded, collector_paused, open_store
from .urls import DEFAULT_URL, masked_url, store_url

__all__ = ["DEFAULT_URL", "Codec", "EventStore", "Notification", "Recorded", "RunInfo",
           "collector_paused", "masked_url", "open_store", "store_url"]
