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
from skopos._runtime.imports import import_what_threads_need
from skopos._stats import InternalErrors, Ledger
from skopos._tracking.activity import TrackCall
from skopos._tracking.client_ip import TrustedProxies
from skopos._tracking.geo import GeoLocator, open_database
from skopos._tracking.hooks import BeforeSendHook, load_hook
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.pipeline import Pipeline, PrivacySignals
from skopos._tracking.salt import SaltBook
from skopos._tracking.scrub import Scrubber
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

    ``connected`` when PocketBase is known to be ready (a forked child of a connected
    process): the worker then starts connected.
    """

    def __init__(
        self,
        options: SkoposOptions,
        client: PocketBaseClient,
        salts: SaltBook,
        *,
        connected: bool = False,
        known_sites: dict[str, SiteRules] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.options = options
        self.salts = salts
        self.client = client
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
        database = open_database(options.geoip_database) if options.geoip_database else None
        # Built without I/O (the salt book reads salts when first needed); the worker uses
        # it once connected.
        self._pipeline = Pipeline(
            self.sites,
            VisitorHasher(salts),
            trusted_proxies=TrustedProxies(options.trusted_proxies),
            client_ip_header=options.client_ip_header,
            geo=GeoLocator(countries=options.country_lookup, database=database),
            scrubber=Scrubber(paths=options.scrub_paths, ids=options.scrub_ids),
            privacy=PrivacySignals(
                options.respect_privacy_signals,
                options.respect_dnt,
                options.privacy_signal_action,
            ),
            before_send=(
                BeforeSendHook(load_hook(options.before_send)) if options.before_send else None
            ),
            collect_sites=(options.site_id, *options.collect_site_ids),
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
        self._connector = connector = Connector(
            client,
            self.sites,
            salts,
            self._pipeline,
            pocketbase_url=options.pocketbase_url,
            site_id=options.site_id,
            collect_site_ids=options.collect_site_ids,
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
            pipeline=self._pipeline if connected else None,
        )
        if connected:
            self.ledger.connected = True

    @classmethod
    def open(cls, options: SkoposOptions) -> ThreadRuntime:
        """A runtime with a client and a salt book of its own (no I/O)."""
        import_what_threads_need()
        client = new_client(options)
        return cls(options, client, SaltBook.of(client, options))

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline, once connected."""
        return self.worker.pipeline

    @property
    def spoof_attempts(self) -> int:
        """Forged forwarding headers seen."""
        return self._pipeline.spoof_attempts

    @property
    def anonymous_calls(self) -> int:
        """Calls counted without identification (privacy signals)."""
        return self._pipeline.anonymous_calls

    @property
    def collect_origin_hosts(self) -> frozenset[str] | None:
        """The domains of the sites ``/collect`` serves, once connected."""
        return self._connector.origin_hosts

    @property
    def realtime_connected(self) -> bool:
        """Whether site rules follow PocketBase live."""
        return self.sites.realtime_connected

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the worker."""
        return len(self.queue)

    def connect(self) -> None:
        """Connect now, from the calling thread; raises what prevents it (and closes)."""
        try:
            self.worker.connect_now()
        except BaseException:
            self.client.close()  # never started: nothing else to release
            raise

    def start(self) -> None:
        """Start (or restart) the background threads; idempotent."""
        self.sites.start()
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout``, then stop threads and close."""
        self.worker.stop(timeout)
        self.sites.stop()
        self.client.close()

    def for_child(self) -> ThreadRuntime:
        """A fresh runtime for a forked child (called in the child, single-threaded)."""
        keep_inherited(self)
        if self.spool is not None:
            self.spool.abandon()  # the parent's segments stay the parent's
        client = new_client(self.options)
        child = ThreadRuntime(
            self.options,
            client,
            self.salts.with_client(client),
            connected=self.worker.pipeline is not None,  # a connected parent's child is
            known_sites=self.sites.snapshot_unlocked(),
        )
        child._connector.origin_hosts = self._connector.origin_hosts
        return child
