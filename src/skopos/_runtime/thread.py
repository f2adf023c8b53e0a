"""The in-process runtime: the worker and the writer on threads of the host's process.

It builds and wires everything one SDK needs in this process: the PocketBase client, the
queue, the ledger, the site registry, the pipeline, the sessionizer, the spool, the writer
and the worker. ``child`` runs one of these in the worker process too.
"""

from __future__ import annotations

import os

from skopos._config import SkoposOptions
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
    """One process's machinery for one ``SkoposSDK``, with the worker on a thread."""

    def __init__(
        self,
        options: SkoposOptions,
        client: PocketBaseClient,
        salts: SaltBook,
        *,
        known_sites: dict[str, SiteRules] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.options = options
        self.salts = salts
        self.client = client
        self.ledger = Ledger()
        self.internal_errors = InternalErrors(self.ledger, strict=options.strict)
        self.queue: WorkQueue[TrackCall] = WorkQueue(options.max_queue_size)
        self.sites = SiteRegistry(
            client, refresh_interval=options.config_refresh_interval, realtime=options.realtime
        )
        if known_sites:
            self.sites.remember(known_sites)
        database = open_database(options.geoip_database) if options.geoip_database else None
        self.pipeline = Pipeline(
            self.sites,
            VisitorHasher(salts),
            trusted_proxies=TrustedProxies(options.trusted_proxies),
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
        self.worker = Worker(
            queue=self.queue,
            pipeline=self.pipeline,
            sessionizer=self.sessionizer,
            sites=self.sites,
            writer=writer,
            writes=WriterThread(writer, on_done=self.queue.wake, errors=self.internal_errors),
            stopping=stopping,
            ledger=self.ledger,
            errors=self.internal_errors,
            options=options,
            spool=self.spool,
        )

    @property
    def spoof_attempts(self) -> int:
        """Forged forwarding headers seen."""
        return self.pipeline.spoof_attempts

    @property
    def anonymous_calls(self) -> int:
        """Calls counted without identification (privacy signals)."""
        return self.pipeline.anonymous_calls

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

    def for_child(self) -> ThreadRuntime:
        """A fresh runtime for a forked child (called in the child, single-threaded)."""
        keep_inherited(self)
        if self.spool is not None:
            self.spool.abandon()  # the parent's segments stay the parent's
        client = new_client(self.options)
        return ThreadRuntime(
            self.options,
            client,
            self.salts.with_client(client),
            known_sites=self.sites.snapshot_unlocked(),
        )
