"""Store URLs: which store a caller means, and how it is shown.

One function, `store_url`, turns what a caller gave (a URL, or nothing) into the URL
every process of a run can open: `open_store`, `baton.run` and the CLI all use it.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlparse

DEFAULT_URL = "sqlite:///.baton/baton.db"
STORE_ENV = "BATON_STORE"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def store_url(url: str | None = None) -> str:
    """The store URL to use: `url`, else $BATON_STORE, else the default; with a SQLite
    path made absolute, since actors may not share the caller's working directory, and a
    PostgreSQL URL without a password given $PGPASSWORD's, since they may not share its
    environment either."""
    url = url or os.environ.get(STORE_ENV) or DEFAULT_URL
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        url = prefix + os.path.abspath(url[len(prefix) :])
    parts = urlparse(url)
    password = os.environ.get("PGPASSWORD")
    if parts.scheme in POSTGRES_SCHEMES and parts.username and password and (
            parts.password is None):
        user, _, where = parts.netloc.rpartition("@")
        url = parts._replace(netloc=f"{user}:{quote(password, safe='')}@{where}").geturl()
    return url


def file_missing(url: str | None) -> bool:
    """Does `url` name a SQLite store whose file is not there? (Opening one creates it:
    right for a run, litter for a reader with a mistyped path.)"""
    prefix = "sqlite:///"
    url = store_url(url)
    return url.startswith(prefix) and not os.path.isfile(url[len(prefix):])


def masked_url(url: str) -> str:
    """`url` with the password, if it has one, shown as ***."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()
