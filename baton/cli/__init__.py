"""The `baton` command: run a spec on Ray, operate it, read and debug its log, export it.

Every command takes --store URL (default sqlite:///.baton/baton.db, or $BATON_STORE)
and --json (machine-readable output on stdout, nothing else there). Exit codes:
0 done, 1 the run failed (or waits on people), 2 bad input.

One module per group of commands, each registering its own on the one `app`:
operating (run, resume, inbox, answer, cancel, keygen), watching (status, wait),
reading (runs, show, log, replay, fork, diff, trace), reporting (export, import, report)
and benchmarking (bench); `common` holds what they share, `display` how a run shows as
it goes.
"""

from . import benchmarking, operating, reading, reporting, watching
from .common import app

__all__ = ["app", "benchmarking", "main", "operating", "reading", "reporting", "watching"]


def main() -> None:
    """Entry point of the `baton` console script (errors end in common.Commands)."""
    app()
