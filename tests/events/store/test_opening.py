"""Opening a store: the URL it is opened from (given, $BATON_STORE, or the default
file), and each mistake in one said clearly, with no password shown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from baton import BadStoreURLError, StoreUnavailableError, open_store
from tests.events.store.test_recorder import recorded_run


def test_the_default_store_is_a_sqlite_file_under_dot_baton(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """open_store() with no URL creates .baton/baton.db in the working directory."""
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        store.append("run-1", recorded_run(), 0)
    assert (tmp_path / ".baton" / "baton.db").is_file()


def test_open_store_without_a_url_takes_baton_store_as_run_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store() reads $BATON_STORE, as `baton.run` and every command do, and makes a
    relative SQLite path absolute, so actors elsewhere open the same file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATON_STORE", "sqlite:///elsewhere.db")
    with open_store() as store:
        store.append("run-1", recorded_run(), 0)
        assert store.url == f"sqlite:///{tmp_path}/elsewhere.db"
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / ".baton").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/baton", "unknown store URL 'mysql://db/baton'; use sqlite:///"),
        ("sqlite://", "names no file"),
        ("postgresql://localhost/baton", "names no user; write postgresql://USER:PASSWORD@"),
        ("postgresql://me:secret@db", "names no database"),
        ("postgresql://me:secret@db:5x/baton", "port must be a number"),
        ("postgresql://me:secret@db/baton?sslmode=require", "unknown option 'sslmode'"),
        ("postgressql://me:secret@db/baton", "did you mean postgresql://"),
    ],
)
def test_a_store_url_baton_cannot_open_is_refused_clearly(url: str, message: str) -> None:
    """Unknown schemes and incomplete URLs raise BadStoreURLError saying what to write, and
    never show the password."""
    with pytest.raises(BadStoreURLError, match=message) as raised:
        open_store(url)
    assert "secret" not in str(raised.value)


def _with_password(url: str, password: str) -> str:
    parts = urlparse(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
                          ).geturl()


def test_a_postgres_server_that_cannot_be_used_is_named(postgres_server: str) -> None:
    """An unreachable port, a wrong password and a missing database each raise one clear
    StoreUnavailableError naming host and port, the password masked."""
    parts = urlparse(postgres_server)
    where = f"{parts.hostname}:{parts.port}"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    cases = [
        (parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{closed}"
                        ).geturl(), f"cannot reach PostgreSQL at 127.0.0.1:{closed}: "),
        (_with_password(postgres_server, "wrong-secret"),
         f"PostgreSQL at {where} refused user 'baton': wrong password"),
        (parts._replace(path="/no_such_db").geturl(),
         f"PostgreSQL at {where} has no database 'no_such_db'; create it"),
    ]
    for url, message in cases:
        with pytest.raises(StoreUnavailableError, match=message) as raised:
            open_store(url)
        assert str(parts.password) not in str(raised.value)
        assert "wrong-secret" not in str(raised.value) and ":***@" in str(raised.value)


def test_a_password_kept_in_a_password_file_opens_a_url_that_has_none(
    postgres_server: str, tmp_path: Path
) -> None:
    """A URL with no password takes libpq's password file (PGPASSFILE, ~/.pgpass), so
    the URL a job's environment shows holds no secret; with none there, the error says
    where a password could come from. (The `baton` command, in a process of its own.)"""
    parts = urlparse(postgres_server)
    bare = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{parts.hostname}:{parts.port}:{parts.path.lstrip('/')}:"
                        f"{parts.username}:{parts.password}\n")
    passfile.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "BATON_STORE")}
    baton = str(Path(sys.executable).with_name("baton"))

    def runs(passfile: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([baton, "runs", "--store", bare], capture_output=True,
                              text=True, env={**env, "PGPASSFILE": str(passfile)})

    found = runs(passfile)
    assert found.returncode == 0 and "no runs in" in found.stdout, found.stderr
    refused = runs(tmp_path / "none")
    assert refused.returncode == 2
    assert "no password was given: put one in ~/.pgpass" in refused.stderr
    assert str(parts.password) not in refused.stderr + found.stdout
