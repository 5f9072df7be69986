"""A disk that fills under a run: `baton run` ends in one line naming the store, the
cause and the `baton resume` to type; once space is freed, the resume completes the run
and it verifies. And a store that may not be written. A real tmpfs, filled or made
read-only for real (CI runs as root, which mounting needs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from baton import open_store
from baton.replay import verify
from baton.testing import Scenario
from tests.cli.test_operations import REPO, SPECS, until
from tests.fixtures.specs import counting, handlers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs, mounted for the test and gone after it."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def environment() -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "PYTHONPATH": str(REPO)}


BATON = str(Path(sys.executable).with_name("baton"))


def used(disk: Path) -> int:
    """Bytes in the files on the disk (the database, its write-ahead log)."""
    return sum(f.stat().st_size for f in disk.iterdir())


def fill(disk: Path) -> Path:
    """Write to the disk until it has no room left."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_ends_the_run_in_one_line_and_resume_finishes_it(
    small_disk: Path,
) -> None:
    """The disk fills mid-run: exit 1, one line naming the store and `baton resume RUN`,
    no traceback. Freed, `baton resume RUN` completes it, every task once, verified."""
    url = f"sqlite:///{small_disk / 'baton.db'}"
    driver = subprocess.Popen(
        [BATON, "run", str(SPECS / "bulky.py"), "--run-id", "full", "--store", url],
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: driver.poll() is not None or used(small_disk) > 1_000_000, seconds=120)
        assert driver.poll() is None, driver.communicate()
        filler = fill(small_disk)
        _, stderr = driver.communicate(timeout=300)
    finally:
        driver.kill()
    *progress, last = stderr.strip().splitlines()
    assert driver.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert all(line.startswith("full: ") for line in progress), progress  # no terminal
    assert last.startswith(f"error: store {url}: database or disk is full; run full is "
                           "recorded up to seq "), last
    assert last.endswith("`baton resume full` continues it"), last

    filler.unlink()
    resumed = subprocess.run([BATON, "resume", "full", "--store", url], env=environment(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    with open_store(url) as store:
        assert store.state("full").accepted == 300
        assert verify(store, "full").reproduced


def test_a_store_it_may_not_write_gives_one_line_and_loses_nothing(small_disk: Path) -> None:
    """The store's filesystem turns read-only (as a failing disk is remounted): a command
    that writes (cancel) ends in one line naming the store and the cause, exit 1; once
    it is writable again, the run is as it was, and the cancel goes through."""
    url = f"sqlite:///{small_disk / 'baton.db'}"
    with open_store(url) as store:
        Scenario([counting("a")], handlers("h"), run_id="ro", store=store)
        recorded = store.last_seq("ro")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = subprocess.run([BATON, "cancel", "ro", "--store", url], env=environment(),
                              capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: store {url}: "), line
    assert line.endswith("(may this user write the file and its directory, and is the disk "
                         "mounted read-write?)"), line
    with open_store(url) as store:
        assert store.last_seq("ro") == recorded
    done = subprocess.run([BATON, "cancel", "ro", "--store", url], env=environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
