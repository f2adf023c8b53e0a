"""What ``SkoposSDK`` needs of a runtime, whichever runs its worker (a thread or a process).

``thread.ThreadRuntime`` runs the worker on a thread of this process; ``process.ProcessRuntime``
runs it in a child process and keeps only the queue and a feeder thread here. The SDK
holds one behind the ``Runtime`` protocol and never asks which.

After ``fork()`` a child inherits copies of a runtime in whatever state the parent's
threads left them: locks possibly held forever, sockets and pipes shared with the parent,
a queue of calls the parent will send itself, and no threads at all. ``for_child`` builds a
fresh runtime instead, without network I/O and without touching an inherited lock or
socket; the child starts its threads on its first tracking call.
"""

from __future__ import annotations

from typing import Protocol

from skopos._config import SkoposOptions
from skopos._queue import WorkQueue
from skopos._stats import InternalErrors, Ledger
from skopos._tracking.activity import TrackCall

__all__ = ["Runtime", "WorkerControl", "keep_inherited"]

# Runtimes a forked child inherited. Never closed or collected: closing their connections or
# pipes could shut down what the parent is still using.
_INHERITED: list[object] = []


def keep_inherited(runtime: object) -> None:
    """Keep a runtime inherited over ``fork()`` alive and untouched for good."""
    _INHERITED.append(runtime)


class WorkerControl(Protocol):
    """The worker as the SDK drives it (a thread here, or a feeder to a worker process)."""

    running: bool  # read on every tracking call: a plain attribute, set by the worker itself

    @property
    def alive(self) -> bool:
        """Whether it runs (costlier than ``running``: for flush and restart decisions)."""
        ...

    def request_flush(self) -> None:
        """Write everything held now, without waiting for intervals."""
        ...


class Runtime(Protocol):
    """One process's machinery for one ``SkoposSDK``."""

    pid: int  # the process it belongs to: another pid means we are a forked child
    options: SkoposOptions
    ledger: Ledger
    queue: WorkQueue[TrackCall]
    internal_errors: InternalErrors

    @property
    def worker(self) -> WorkerControl:
        """The worker's controls."""
        ...

    @property
    def spoof_attempts(self) -> int:
        """Forwarding headers ignored because the peer is not a trusted proxy."""
        ...

    @property
    def anonymous_calls(self) -> int:
        """Calls counted without identification because of a privacy signal."""
        ...

    @property
    def realtime_connected(self) -> bool:
        """Whether site rules follow PocketBase live."""
        ...

    @property
    def collect_origin_hosts(self) -> frozenset[str] | None:
        """The domains (with and without ``www.``) of the sites ``/collect`` serves, once
        connected; None before."""
        ...

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the worker."""
        ...

    def connect(self) -> None:
        """Connect to PocketBase now, from the calling thread, before ``start``
        (``init(wait=True)``); raises ``ConfigurationError`` or ``PocketBaseError``, having
        released what was built."""
        ...

    def start(self) -> None:
        """Start (or restart) the background threads (and process); idempotent, never
        waits: the worker connects to PocketBase in the background."""
        ...

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout`` s, then stop and close everything."""
        ...

    def for_child(self) -> Runtime:
        """A fresh runtime for a forked child (called in the child, single-threaded)."""
        ...
