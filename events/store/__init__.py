"""baton.events.store: persistence of run logs, kept apart from the pure core.

`opening.open_store` chooses a backend by URL (memory.py, sqlite.py, postgres.py) and
makes an `EventStore` of it (event_store.py): runs' logs, appended and read through one
mapper (mapper.py), with a repository of runs' states (repository.py) and two
projections of the logs, the runs index (index.py) and the query columns (chunks.py).
"""

from .codec import Codec
from .event_store import EventStore, Notification
from .index import RunInfo
from .mapper import Recorded
from .opening import open_store
from .repository import collector_paused
from .urls import DEFAULT_URL, file_missing, masked_url, store_url

__all__ = ["DEFAULT_URL", "Codec", "EventStore", "Notification", "Recorded", "RunInfo",
           "collector_paused", "file_missing", "masked_url", "open_store", "store_url"]
