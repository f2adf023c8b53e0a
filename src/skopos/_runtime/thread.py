"""The in-process runtime: the worker and the writer on threads of the host's process.

It builds and wires everything one SDK needs in this process: the PocketBase client, the
queue, the ledger, the site registry, the sessionizer, the spool, the writer and the worker,
without any I/O; the worker connects to PocketBase in the background and builds the
pipeline then (``_delivery/connecting.py``), or ``connect`` does it now. ``child`` runs one
of these in the worker process too.
"""

from __future__ import annotations

import os

from skopos._config import SkoposOptions
from skopos._delivery.connecting import Connector
from skopos._delivery.sessions import Sessionizer
from skopos._delivery.spool import Spool
from skopos._delivery.stopping import Stopping
from skopos._delivery.worker import Worker
from skopos._delivery.writer import BatchWriter
from skopos._delivery.writer_thread import WriterThread
from skopos._pocketbase.client import PocketBaseClient
from skopos._queue import WorkQueue
from skopos._runtime.base import keep_inherited
from skopos._stats import InternalErrors, Ledger
from skopos._tracking.activity import TrackCall
from skopos._tracking.client_ip import TrustedProxies
from skopos._tracking.geo import GeoLocator, open_database
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.sites import SiteRegistry

__all__ = ["ThreadRuntime", "new_client"]


def new_client(options: SkoposOptions) -> PocketBaseClient:
    """A PocketBase client for ``options`` (no I/O until first used)."""
    return PocketBaseClient(
        options.pocketbase_url,
        options.admin_email,
        options.admin_password,
        timeout=options.request_timeout,
    )


class ThreadRuntime:
    """One process's machinery for one ``SkoposSDK``, with the worker on a thread.

    ``salt`` is given when it is known already (a forked child of a connected process):
    the worker then starts connected.
    """

    def __init__(
        self,
        options: SkoposOptions,
        client: PocketBaseClient,
        salt: bytes | None = None,
        *,
        known_sites: dict[str, SiteRules] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.options = options
        self.client = client
        self.salt: bytes | None = None  # known once connected
        self.ledger = Ledger()
        self.internal_errors = InternalErrors(self.ledger, strict=options.strict)
        self.queue: WorkQueue[TrackCall] = WorkQueue(
            options.max_queue_size, max_bytes=options.max_queue_bytes
        )
        self.sites = SiteRegistry(
            client, refresh_interval=options.config_refresh_interval, realtime=options.realtime
        )
        if known_sites:
            self.sites.remember(known_sites)
        self._geo_database = (
            open_database(options.geoip_database) if options.geoip_database else None
        )
        self.sessionizer = Sessionizer(client, session_timeout=options.session_timeout)
        self.spool = (
            Spool(options.spool_dir, max_bytes=options.spool_max_bytes)
            if options.spool_dir
            else None
        )
        stopping = Stopping()
        writer = BatchWriter(
            client,
            self.ledger,
            on_dropped_parent=self.sessionizer.forget,
            stopping=stopping,
            spool=self.spool,
        )
        connector = Connector(
            client,
            self.sites,
            pocketbase_url=options.pocketbase_url,
            site_id=options.site_id,
            build_pipeline=self._pipeline,
        )
        self.worker = Worker(
            queue=self.queue,
            connector=connector,
            sessionizer=self.sessionizer,
            sites=self.sites,
            writer=writer,
            writes=WriterThread(writer, on_done=self.queue.wake, errors=self.internal_errors),
            stopping=stopping,
            ledger=self.ledger,
            errors=self.internal_errors,
            options=options,
            spool=self.spool,
            pipeline=self._pipeline(salt) if salt is not None else None,
        )
        if salt is not None:
            self.ledger.connected = True

    def _pipeline(self, salt: bytes) -> Pipeline:
        """The pipeline, once the salt is known."""
        self.salt = salt
        return Pipeline(
            self.sites,
            VisitorHasher(salt),
            trusted_proxies=TrustedProxies(self.options.trusted_proxies),
            client_ip_header=self.options.client_ip_header,
            geo=GeoLocator(countries=self.options.country_lookup, database=self._geo_database),
        )

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline, once connected."""
        return self.worker.pipeline

    @property
    def spoof_attempts(self) -> int:
        """Forged forwarding headers seen."""
        pipeline = self.worker.pipeline
        return pipeline.spoof_attempts if pipeline is not None else 0

    @property
    def realtime_connected(self) -> bool:
        """Whether site rules follow PocketBase live."""
        return self.sites.realtime_connected

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the worker."""
        return len(self.queue)

    def connect(self) -> None:
        """Connect now, from the calling thread; raises what prevents it."""
        self.worker.connect_now()

    def start(self) -> None:
        """Start (or restart) the background threads; idempotent."""
        self.sites.start()
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout``, then stop threads and close."""
        self.worker.stop(timeout)
        self.sites.stop()
        self.client.close()

    def close(self) -> None:
        """Release what was built, when it never started (a failed ``init(wait=True)``)."""
        self.client.close()

    def for_child(self) -> ThreadRuntime:
        """A fresh runtime for a forked child (called in the child, single-threaded)."""
        keep_inherited(self)
        if self.spool is not None:
            self.spool.abandon()  # the parent's segments stay the parent's
        return ThreadRuntime(
            self.options,
            new_client(self.options),
            self.salt,  # a connected parent's child starts connected
            known_sites=self.sites.snapshot_unlocked(),
        )
