"""The Ray cluster a run goes to: starting or attaching Ray (quietly, on a laptop or a
cluster), whether it can hold a spec's workers, and asking it about a run's coordinator.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from concurrent.futures import Future
from typing import Any

import ray
from ray._private import services  # ray.init's lookup of a local cluster
from ray.exceptions import GetTimeoutError, RayActorError

from baton.events.errors import ClusterUnavailableError

from . import reservation
from .pool import NAMESPACE
from .progress import RunProgress
from .spec import Spec


def _init_ray(**options: Any) -> None:
    """ray.init, called from a thread that lives as long as this process.

    A local Ray's GCS, raylet and helpers are started with prctl(PR_SET_PDEATHSIG,
    SIGKILL), and Linux sends that signal when the *thread* that forked them ends, not
    the process: a local Ray started by baton.run in a threading.Thread would be killed
    as soon as that thread returns. The main thread lasts as long as the process; from
    any other, ray.init runs in a daemon thread that never ends.
    """
    if threading.current_thread() is threading.main_thread():
        ray.init(**options)
        return
    started: Future[None] = Future()

    def keep() -> None:
        try:
            ray.init(**options)
        except BaseException as error:
            started.set_exception(error)
            return
        started.set_result(None)
        threading.Event().wait()  # never returns: Ray's processes die with this thread

    threading.Thread(target=keep, name="baton-ray", daemon=True).start()
    started.result()


def ensure_ray(address: str | None = None) -> None:
    """Attach to Ray at `address` (or $RAY_ADDRESS), else to the cluster already running
    on this machine (`ray start --head`), as ray.init does, saying so on stderr; else
    start a quiet local one. `local` always starts a separate one."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {
        "namespace": NAMESPACE,
        "logging_level": logging.ERROR,
        "include_dashboard": False,
        "configure_logging": True,
    }
    if address and ":" in address and "://" not in address and not _answers(address):
        # ray.init would wait minutes for a head that is not there.
        raise ClusterUnavailableError(
            f"no Ray cluster answers at {address}: nothing listens there. Start one "
            "(`ray start --head`), or leave out --address (and RAY_ADDRESS) to use this "
            "machine's")
    try:
        if address:
            try:
                _init_ray(address=address, **options)  # "local" starts one too
            except ValueError as error:
                raise ClusterUnavailableError(
                    f"Ray cannot use the address {address!r} ({error}); give HOST:PORT of "
                    "the cluster's head, ray://HOST:PORT, auto, or local for a new local "
                    "Ray") from None
        else:
            try:
                _init_ray(num_cpus=os.cpu_count() or 1, **options)
            except ValueError as error:
                # Ray found a cluster `ray start` left on this machine, and will only
                # attach to it.
                if "existing cluster" not in str(error):
                    raise
                address = _attach_or_start_beside(options)
    except (ConnectionError, RuntimeError) as error:
        where = f"at {address}" if address else "locally"
        raise ClusterUnavailableError(f"cannot start or reach Ray {where}: {error}"
                                      + _auth_hint(address)) from error


def _attach_or_start_beside(options: dict[str, Any]) -> str:
    """Attach to the cluster `ray start` left on this machine, if it answers, else start
    a separate one; say which on stderr. Returns the address used."""
    # ray.init's own lookup (it is annotated as taking a str, and takes None).
    found = services.canonicalize_bootstrap_address(None)  # type: ignore[arg-type]
    if found and _answers(found):
        # "auto", not the address: so Ray also finds the cluster's token, if it has one.
        _init_ray(address="auto", namespace=NAMESPACE, logging_level=logging.ERROR,
                  configure_logging=True)
        print(f"baton: attached to the Ray cluster already running on this machine "
              f"({found}); --address local starts a separate one", file=sys.stderr)
        return found
    _init_ray(address="local", num_cpus=os.cpu_count() or 1, **options)
    print(f"baton: the Ray cluster `ray start` left on this machine ({found}) does not "
          "answer (`ray stop` forgets it); started a separate local one", file=sys.stderr)
    return "local"


def _answers(address: str) -> bool:
    """Does something listen at host:port (a cluster's GCS)?"""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


def attach_ray(address: str | None = None) -> None:
    """Attach to a running Ray (at `address`, $RAY_ADDRESS, or this machine's), never
    starting one; ClusterUnavailableError when there is none."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=target, namespace=NAMESPACE, logging_level=logging.ERROR,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterUnavailableError(f"no Ray cluster at {target}: {error}"
                                      + _auth_hint(target)) from error


def _auth_hint(address: str | None) -> str:
    """What to try when a cluster would not let this process in: Ray's own message says
    only that it failed to connect when the cause is a missing token."""
    if not address or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return ("; if the cluster uses token authentication (`ray start --head` turns it on in "
            "this Ray), set RAY_AUTH_MODE=token, with the cluster's token in "
            "~/.ray/auth_token or RAY_AUTH_TOKEN")


def check_capacity(spec: Spec) -> None:
    """ClusterUnavailableError when the cluster cannot hold every replica the spec asks for."""
    total = ray.cluster_resources()
    cpus = sum(h.replicas * h.num_cpus for h in spec.handlers)
    if cpus > total.get("CPU", 0):
        asks = ", ".join(f"{h.name}: {h.replicas} x {h.num_cpus:g}" for h in spec.handlers)
        raise ClusterUnavailableError(
            f"the handlers ask for {cpus:g} CPUs ({asks}) but the cluster has "
            f"{total.get('CPU', 0):g}; lower replicas or num_cpus"
        )
    for h in spec.handlers:
        for name, amount in h.resources.items():
            if amount * h.replicas > total.get(name, 0):
                raise ClusterUnavailableError(
                    f"handler {h.name!r} asks for {amount * h.replicas:g} of resource "
                    f"{name!r}; the cluster has {total.get(name, 0):g}"
                )
    # A replica's reservation lies on one node: one no node can hold would wait forever.
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    for h in spec.handlers:
        need = reservation.bundle(h)
        if need and not any(all(node.get(name, 0) >= amount for name, amount in need.items())
                            for node in nodes):
            asked = ", ".join(f"{amount:g} {name}" for name, amount in need.items())
            raise ClusterUnavailableError(
                f"one replica of handler {h.name!r} asks for {asked}, more than any one "
                "node of the cluster has; lower num_cpus or resources")


def coordinator_alive(run_id: str) -> bool:
    """Is a coordinator for `run_id` alive in the Ray cluster this process is attached to?"""
    try:
        ray.get_actor(f"baton:{run_id}", namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def live_progress(run_id: str, timeout_s: float = 5.0) -> RunProgress | None:
    """How `run_id` stands as its live coordinator sees it (in the Ray cluster this
    process is attached to), or None when it has none that answers."""
    try:
        coordinator = ray.get_actor(f"baton:{run_id}", namespace=NAMESPACE)
        ref: ray.ObjectRef[dict[str, Any]] = coordinator.progress.remote()
        return RunProgress(**ray.get(ref, timeout=timeout_s))
    except (ValueError, RayActorError, GetTimeoutError):
        return None
