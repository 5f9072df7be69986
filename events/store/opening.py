"""Opening a store by its URL: the scheme chooses the backend module, which is imported
only then (psycopg loads for a postgresql:// URL alone)."""

from __future__ import annotations

import difflib
from urllib.parse import urlparse

from ..errors import BadStoreURLError
from . import faults
from .backend import Backend
from .event_store import EventStore
from .mapper import Mapper
from .sealing import Sealer
from .urls import masked_url, store_url


def _memory(url: str) -> Backend:
    from . import memory

    return memory.open_backend(url)


def _sqlite(url: str) -> Backend:
    from . import sqlite

    return sqlite.open_backend(url)


def _postgres(url: str) -> Backend:
    from . import postgres

    return postgres.open_backend(url)


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "postgresql": _postgres,
            "postgres": _postgres}


def open_store(url: str | None = None, *, sealer: Sealer | None = None) -> EventStore:
    """Open the event store at `url` (else $BATON_STORE, else ``sqlite:///.baton/baton.db``),
    sealing with `sealer`, or by default with the key in BATON_ENCRYPTION_KEY, if there
    is one."""
    url = store_url(url)
    scheme = urlparse(url).scheme
    opener = BACKENDS.get(scheme)
    if opener is None:
        near = difflib.get_close_matches(scheme, BACKENDS, n=1)
        hint = f"did you mean {near[0]}://? " if near and scheme else ""
        raise BadStoreURLError(
            f"unknown store URL {masked_url(url)!r}; {hint}use sqlite:///path/to/file.db, "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or memory://"
        )
    # A key that is not one is refused before the store opens.
    sealer = sealer if sealer is not None else Sealer.from_env()
    try:
        backend = opener(url)
    except Exception as error:
        if faults.is_store_error(error):
            raise faults.fault(faults.cause_of(error), masked_url(url),
                               passing=faults.passes(error)) from None
        raise
    return EventStore(url, backend, Mapper(sealer=sealer))
