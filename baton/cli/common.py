"""What every `baton` command shares: the app, the consoles, the --store and --json
options, exit codes, and how a BatonError becomes a message and an exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from baton.events.errors import (
    EXIT_FAILED,
    BatonError,
    UnknownRunError,
)
from baton.events.store import (
    EventStore,
    faults,
    file_missing,
    masked_url,
    open_store,
    store_url,
)


class Commands(TyperGroup):
    """The `baton` command group, and its one error boundary: whatever a command raises
    that Baton means (a BatonError), or a store's error no layer turned into one, ends
    as one line on stderr and the exit code its class names; never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BatonError as error:
            fail(error)
        except Exception as error:
            if not faults.is_store_error(error):
                raise
            err.print(Text.assemble(("error:", "bold red"),
                                    f" store: {faults.cause_of(error)}"), highlight=False)
            raise typer.Exit(EXIT_FAILED) from None


app = typer.Typer(
    name="baton",
    help=(
        "Run multi-agent work on Ray with every decision recorded.\n\n"
        "Start with: baton run examples/stdlib_audit.py, then baton runs and "
        "baton show RUN.\n\n"
        "After the fact: baton report RUN -o run.html (a page to open in a browser: "
        "the timeline, every task, each one's trace), baton log RUN, baton trace RUN TASK, "
        "baton replay RUN --verify "
        "(or --policy M:P to ask what another policy would have done), baton fork RUN "
        "--at SEQ, baton diff RUN_A RUN_B.\n\n"
        "What Baton costs on your cluster, beside plain Ray: baton bench --quick.\n\n"
        "Exit codes: 0 done, 1 the run failed or waits on people, 2 bad input, "
        "130 interrupted (Ctrl-C)."
    ),
    no_args_is_help=True,
    add_completion=True,
    cls=Commands,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs re-wrapped, \b blocks kept
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # long messages wrap where the terminal does
DISTRIBUTION = "baton-ray"  # the name on the package index (`baton` is another project's)


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"baton {metadata.version(DISTRIBUTION)}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print Baton's version and exit.")] = False,
) -> None:
    # Options of `baton` itself, before any command (the app's help is its own).
    pass

Store = Annotated[
    str | None,
    typer.Option("--store", envvar="BATON_STORE", show_envvar=True, metavar="URL",
                 help="Where logs are kept: sqlite:///path.db, "
                      "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by a cluster) or "
                      "memory:// [default: sqlite:///.baton/baton.db]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout and nothing else.")]
Address = Annotated[str | None, typer.Option(
    "--address", envvar="RAY_ADDRESS", metavar="ADDR",
    help="Ray cluster to attach to (`local`: start a new one); without one, the cluster "
         "already running on this machine, if any, else a new local one.")]
Detach = Annotated[bool, typer.Option(
    "--detach", help="Leave the run to a detached coordinator and return at once.")]
Model = Annotated[str | None, typer.Option(
    "--model", envvar="BATON_MODEL", show_envvar=True, metavar="PROVIDER:NAME",
    help="The model every agent of the spec answers with (default: each agent's own); "
    "`test` is a dry run on pydantic-ai's TestModel, with no key and no network.")]
StorePatience = Annotated[float, typer.Option(
    "--store-patience", envvar="BATON_STORE_PATIENCE", show_envvar=True, metavar="SECONDS",
    min=0, help="How long the coordinator waits out a store that fails for a while (a "
    "server restarting, a connection cut) before it stops, leaving the run to resume.")]



@contextmanager
def run_log(run_id: str, store: str | None) -> Iterator[EventStore]:
    """The store holding `run_id`, open; UnknownRunError when the run is not there."""
    refuse_missing(run_id, store)
    with open_store(store) as log:
        log.require_run(run_id)
        yield log


def refuse_missing(run_id: str, store: str | None) -> None:
    """UnknownRunError when `store` is a SQLite file that is not there, before opening
    it would make one: a mistyped path leaves nothing behind."""
    if file_missing(store):
        raise UnknownRunError(run_id, masked_url(store_url(store)), no_file=True)


def progress(label: str, *, hidden: bool = False) -> Progress:
    """A bar on stderr for long work (`label`, how far, for how long), gone once done,
    and shown only to a terminal."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=hidden or not err.is_terminal)


def fail(error: BatonError) -> NoReturn:
    """End the command: the error in one line, and the exit code its class names."""
    # The message is printed as written: a bracket in it (a package extra such as
    # pydantic-ai-slim[openai], a list) is text, not a style.
    err.print(Text.assemble(("error:", "bold red"), " ", str(error)), highlight=False)
    raise typer.Exit(error.exit_code)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def say(text: str = "") -> None:
    """Print plain text: no markup, no highlighting (logs hold brackets and numbers)."""
    out.print(text, highlight=False, markup=False)


def styled(status: str) -> str:
    colour = {"completed": "green", "accepted": "green", "failed": "red", "abandoned": "red",
              "waiting": "yellow", "escalated": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/]"
