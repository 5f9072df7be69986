"""Every error Baton raises on purpose: one root, a few kinds, each message saying what
to fix, and each class carrying the exit code the `baton` command ends with for it."""

from __future__ import annotations

import warnings

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


class BatonError(Exception):
    """Root of every error Baton raises on purpose; catch this to catch them all."""

    exit_code = EXIT_FAILED


# --- bad input: what a person gave cannot be used; nothing was changed ----------------


class BadInputError(BatonError):
    """Something given to Baton cannot be used as it is: a file that is not there or not
    writable, a value out of range, an option that needs a package not installed. The
    message says what to give instead; nothing was recorded or changed."""

    exit_code = EXIT_BAD_INPUT


class BadSpecError(BadInputError):
    """A spec or plan cannot run as written: a duplicate task id, a cycle, an unknown
    capability or dependency. Nothing has been dispatched when this is raised."""


class BadAnswerError(BadInputError):
    """An answer that cannot apply: the escalation is not open, or the handler is wrong."""


class BadStoreURLError(BadInputError):
    """A store URL Baton cannot open; the message lists the schemes it knows."""


class UnknownRunError(BadInputError):
    """No run with this id is in the store; `baton runs` lists the ones that are."""

    def __init__(self, run_id: str, store: str, *, no_file: bool = False):
        super().__init__(
            f"no run {run_id!r} in {store}: no store file is there (check --store, or "
            "$BATON_STORE)" if no_file else
            f"no run {run_id!r} in {store}; `baton runs` lists the runs there")
        self.run_id = run_id


class UnknownTaskError(BadInputError):
    """The run's plan never held a task with this id."""


class RunExistsError(BadInputError):
    """A run with this id is already in the store; an import never writes over one."""

    def __init__(self, run_ids: list[str], store: str):
        named = ", ".join(repr(r) for r in run_ids[:5]) + (" …" if len(run_ids) > 5 else "")
        super().__init__(f"{store} already has run {named}; import into another store, "
                         "or remove the run there first")
        self.run_ids = run_ids


class EncryptionKeyError(BadInputError):
    """The store's records are encrypted and no key is set, or another key; or the key
    set is not one Baton can use. The message says which and what to set."""


# --- the world outside Baton ----------------------------------------------------------


class ClusterUnavailableError(BatonError):
    """Ray cannot be reached, or cannot host the handlers the spec asks for."""

    exit_code = EXIT_BAD_INPUT  # a wrong address or a cluster to start: the person's move


class StoreUnavailableError(BatonError):
    """The store's server cannot be used: unreachable, a wrong password, no such database.
    The message names host and port, with the password masked. `passing` when the cause
    may go away by itself (the server is down or restarting), not on a person's mistake."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, passing: bool = False):
        super().__init__(message)
        self.passing = passing


class StoreFaultError(BatonError):
    """The store failed a read or a write, for a cause that does not pass by itself (a
    full disk, no permission, a damaged file) or that lasted longer than Baton waits (a
    server down). The message names the store and the cause; what was recorded before it
    is kept, and a run under way says the `baton resume` that continues it."""

    def __init__(self, message: str, *, store: str = "", cause: str = "",
                 passing: bool = False):
        super().__init__(message)
        self.store = store
        self.cause = cause
        self.passing = passing  # the cause may go away by itself (a writer may wait)

    def __reduce__(self) -> tuple[type[StoreFaultError], tuple[str], dict[str, object]]:
        # Raised in a coordinator and re-raised in its driver: it crosses processes.
        return type(self), (str(self),), {"store": self.store, "cause": self.cause,
                                          "passing": self.passing}


# --- logs and the code that decides them ----------------------------------------------


class BadLogError(BatonError):
    """A recorded log cannot be read back faithfully: a gap or repeat in `seq`, an
    unknown event type, a malformed record, a broken digest chain. Names run and seq."""

    def __init__(self, message: str, *, run_id: str | None = None, seq: int | None = None):
        where = ""
        if run_id is not None:
            where = f"run {run_id!r}" + (f" at seq {seq}" if seq is not None else "") + ": "
        super().__init__(where + message)
        self.detail = message  # without the run and seq in front
        self.run_id = run_id
        self.seq = seq


class ConcurrencyConflictError(BatonError):
    """Another writer appended to the run first; nothing of this batch was written.
    Re-read the run's log, re-decide, and append again."""

    def __init__(self, run_id: str, expected_last_seq: int, actual_last_seq: int | None):
        actual = "unknown" if actual_last_seq is None else str(actual_last_seq)
        super().__init__(
            f"run {run_id!r}: expected the log to end at seq {expected_last_seq}, "
            f"but it ends at seq {actual}; another writer appended first"
        )
        self.run_id = run_id
        self.expected_last_seq = expected_last_seq
        self.actual_last_seq = actual_last_seq


class PolicyError(BatonError):
    """A policy's rule raised, or chose what cannot be done (a handler without the
    capability, one that is not free), while deciding; the message names the rule and the
    stimulus it was deciding about. What was recorded before it stands."""


# --- runs that end early --------------------------------------------------------------


class RunInterrupted(BatonError):
    """The person running the run pressed Ctrl-C: its coordinator and workers are
    stopped, and everything recorded stays, for `baton resume` or `baton cancel`."""

    exit_code = EXIT_INTERRUPTED


class BenchError(BatonError):
    """A bench run did not complete: what is measured would not be the work asked for."""


# --- the names before the Error suffix --------------------------------------------------

FORMER_NAMES = {
    "BadInput": BadInputError, "BadSpec": BadSpecError, "BadAnswer": BadAnswerError,
    "BadStoreURL": BadStoreURLError, "UnknownRun": UnknownRunError,
    "UnknownTask": UnknownTaskError, "RunExists": RunExistsError,
    "EncryptionKeyProblem": EncryptionKeyError, "ClusterUnavailable": ClusterUnavailableError,
    "StoreUnavailable": StoreUnavailableError, "StoreFault": StoreFaultError,
    "BadLog": BadLogError, "ConcurrencyConflict": ConcurrencyConflictError,
    "BenchFailed": BenchError,
}


# What the package and the core exported under those names (baton.events.errors had
# them all): the former names resolve where they did, and nowhere else.
EXPORTED_BEFORE = {
    "baton": {"BadInput", "BadLog", "BadSpec", "BadStoreURL", "ClusterUnavailable",
              "ConcurrencyConflict", "EncryptionKeyProblem", "StoreFault", "StoreUnavailable"},
    "baton.events": {"BadInput", "BadLog", "BadSpec", "BadStoreURL", "ClusterUnavailable",
                     "ConcurrencyConflict", "EncryptionKeyProblem", "StoreFault",
                     "StoreUnavailable", "UnknownRun"},
    __name__: set(FORMER_NAMES),
}


def former(name: str, module: str) -> type[BatonError]:
    """The class an error of `module` was called before (code written against it keeps
    working, with a DeprecationWarning naming the new name); AttributeError for any
    other name."""
    if name not in EXPORTED_BEFORE.get(module, ()):
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    error = FORMER_NAMES[name]
    warnings.warn(f"{module}.{name} is now {error.__name__}", DeprecationWarning,
                  stacklevel=3)
    return error


def __getattr__(name: str) -> type[BatonError]:
    return former(name, __name__)
