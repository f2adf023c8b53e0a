"""The per-process half of an SDK: connections, threads, locks, the queue, the counters.

After ``fork()`` a child inherits copies of all of these in whatever state the
parent's threads left them: locks possibly held forever, sockets shared with the
parent, a queue of calls the parent will send itself, and no threads at all.
``Runtime.for_child`` builds fresh ones instead, without network I/O and
without touching an inherited lock or socket; the child starts its threads on
its first tracking call.
"""

from __future__ import annotations

import os

from skopos._config import SkoposOptions
from skopos._delivery.sessions import Sessionizer
from skopos._delivery.spool import Spool
from skopos._delivery.worker import Worker
from skopos._pocketbase.client import PocketBaseClient
from skopos._queue import WorkQueue
from skopos._stats import Ledger
from skopos._tracking.activity import TrackCall
from skopos._tracking.client_ip import TrustedProxies
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.sites import SiteRegistry

__all__ = ["Runtime"]

# Runtimes a child inherited. Never closed or collected: closing their HTTP
# connections could shut down sockets the parent is still using.
_INHERITED: list[Runtime] = []


def new_client(options: SkoposOptions) -> PocketBaseClient:
    """A PocketBase client for ``options`` (no I/O until first used)."""
    return PocketBaseClient(
        options.pocketbase_url,
        options.admin_email,
        options.admin_password,
        timeout=options.request_timeout,
    )


class Runtime:
    """One process's machinery for one ``SkoposSDK``."""

    def __init__(
        self,
        options: SkoposOptions,
        client: PocketBaseClient,
        salt: bytes,
        *,
        known_sites: dict[str, SiteRules] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.options = options
        self.salt = salt
        self.client = client
        self.ledger = Ledger()
        self.queue: WorkQueue[TrackCall] = WorkQueue(options.max_queue_size)
        self.sites = SiteRegistry(
            client, refresh_interval=options.config_refresh_interval, realtime=options.realtime
        )
        if known_sites:
            self.sites.remember(known_sites)
        self.pipeline = Pipeline(
            self.sites, VisitorHasher(salt), trusted_proxies=TrustedProxies(options.trusted_proxies)
        )
        self.sessionizer = Sessionizer(client, session_timeout=options.session_timeout)
        self.spool = (
            Spool(options.spool_dir, max_bytes=options.spool_max_bytes)
            if options.spool_dir
            else None
        )
        self.worker = Worker(
            queue=self.queue,
            pipeline=self.pipeline,
            sessionizer=self.sessionizer,
            sites=self.sites,
            client=client,
            ledger=self.ledger,
            options=options,
            spool=self.spool,
        )

    @property
    def spoof_attempts(self) -> int:
        """Forged forwarding headers seen."""
        return self.pipeline.spoof_attempts

    @property
    def realtime_connected(self) -> bool:
        """Whether site rules follow PocketBase live."""
        return self.sites.realtime_connected

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the worker."""
        return len(self.queue)

    def start(self) -> None:
        """Start (or restart) the background threads; idempotent."""
        self.sites.start()
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout``, then stop threads and close."""
        self.worker.stop(timeout)
        self.sites.stop()
        self.client.close()

    def for_child(self) -> Runtime:
        """A fresh runtime for a forked child (called in the child, single-threaded)."""
        _INHERITED.append(self)
        if self.spool is not None:
            self.spool.abandon()  # the parent's segments stay the parent's
        return Runtime(
            self.options,
            new_client(self.options),
            self.salt,
            known_sites=self.sites.snapshot_unlocked(),
        )
