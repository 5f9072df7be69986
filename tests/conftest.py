"""Shared fixtures. One local Ray cluster for the whole run, started only by tests that
ask for it (pure tests never start Ray)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray with 2 CPUs; workers can import `tests.*` like the test process."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        namespace="baton",
        include_dashboard=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store in a temporary directory."""
    return f"sqlite:///{tmp_path / 'baton.db'}"
