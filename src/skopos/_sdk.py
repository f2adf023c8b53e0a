"""``SkoposSDK``: the public facade. Tracking calls snapshot and enqueue; nothing else.

Example::

    from skopos import SkoposSDK

    skopos = SkoposSDK.init(
        pocketbase_url="http://127.0.0.1:8090",
        site_id="TRACKING_ID",
        admin_email="admin@example.com",
        admin_password="...",
    )
    skopos.track_api_event(request, payload)  # in the endpoint skopos.js posts to
    skopos.track_collect(request, body)  # in the endpoint the official script posts to
    skopos.track_server_event(request, "payment-webhook-received", {"source": "stripe"})
    skopos.shutdown()
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from skopos._config import BeforeSend, SkoposOptions, resolve_options
from skopos._delivery.spool import check_spool_dir
from skopos._exceptions import ConfigurationError, PocketBaseNotFound
from skopos._pocketbase.client import PocketBaseClient
from skopos._runtime.base import Runtime
from skopos._runtime.process import ProcessRuntime
from skopos._runtime.thread import ThreadRuntime, new_client
from skopos._stats import DropReason, SkoposStats
from skopos._tracking.activity import CallKind, TrackCall
from skopos._tracking.salt import SaltBook
from skopos._tracking.snapshot import capture_request

__all__ = ["SkoposSDK"]

logger = logging.getLogger("skopos")

# At interpreter exit, flush for at most this long: never hold up a restart.
ATEXIT_BUDGET = 1.0
_QUEUE_FULL_LOG_INTERVAL = 60.0

# Every SDK not shut down, so a forked child can rebuild each one's runtime.
_LIVE: weakref.WeakSet[SkoposSDK] = weakref.WeakSet()


def _rebuild_after_fork() -> None:
    for sdk in list(_LIVE):
        try:
            sdk._after_fork()
        except Exception:  # never break the host's fork
            logger.exception("skopos: could not reset after fork")


os.register_at_fork(after_in_child=_rebuild_after_fork)


class SkoposSDK:
    """Server-side Skopos tracking for one PocketBase and one default site.

    Create it once per process with ``SkoposSDK.init(...)`` (or ``await
    SkoposSDK.ainit(...)``). Tracking methods return in microseconds and never
    raise; a background thread does the parsing, filtering, sessionizing and
    writing. Use it as a context manager, or call ``shutdown()``, to flush at exit;
    an ``atexit`` hook also flushes for up to a second.

    ``collect_origin_hosts`` holds the hosts whose pages may post to ``/collect`` from
    another origin: the domains of ``site_id`` and ``collect_site_ids`` as ``init`` read
    them, with and without ``www.`` (the integrations' CORS answers use it).
    """

    def __init__(self, options: SkoposOptions, client: PocketBaseClient) -> None:
        """Use ``SkoposSDK.init``; this constructor assumes an authenticated client."""
        self.options = options
        salts = SaltBook.of(client, options)
        try:
            salts.salt_for(time.time())  # read (or create) now: fail fast on a bare server
        except PocketBaseNotFound as exc:
            raise ConfigurationError(
                f"PocketBase at {options.pocketbase_url} lacks the Skopos schema;"
                " run `skopos setup` first"
            ) from exc
        runtime = ThreadRuntime(options, client, salts)
        if runtime.sites.get(options.site_id) is None:
            raise ConfigurationError(
                f"no website with tracking id {options.site_id!r} in PocketBase at"
                f" {options.pocketbase_url} (create one in the dashboard or with"
                " `skopos setup --domain ...`)"
            )
        self.collect_origin_hosts = _collect_origin_hosts(runtime, options)
        self._runtime: Runtime
        if options.worker_process:
            client.close()  # checked; the worker process opens its own
            self._runtime = ProcessRuntime(options)
        else:
            runtime.pipeline.warm_up()  # ~0.3 s once, here rather than on the first request
            runtime.worker.replay_orphans()  # what a killed process left in spool_dir
            self._runtime = runtime
        self._closed = False
        self._close_lock = threading.Lock()
        self._queue_full_logged = 0.0
        self._late_calls = 0
        self._runtime.start()
        _LIVE.add(self)
        atexit.register(self._at_exit)

    def _current(self) -> Runtime:
        """This process's runtime, rebuilt first if we are in a forked child."""
        runtime = self._runtime
        if runtime.pid != os.getpid():
            runtime = self._after_fork()
        return runtime

    def _after_fork(self) -> Runtime:
        runtime = self._runtime
        if runtime.pid != os.getpid():
            # Fresh locks, queue, counters, connections; threads start on first use.
            self._close_lock = threading.Lock()
            runtime = self._runtime = runtime.for_child()
        return runtime

    # -- construction ----------------------------------------------------------------

    @classmethod
    def init(
        cls,
        *,
        pocketbase_url: str | None = None,
        site_id: str | None = None,
        admin_email: str | None = None,
        admin_password: str | None = None,
        batch: bool | None = None,
        batch_interval: float | None = None,
        max_batch_size: int | None = None,
        session_timeout: float | None = None,
        js_error_batch_interval: float | None = None,
        config_refresh_interval: float | None = None,
        realtime: bool | None = None,
        max_queue_size: int | None = None,
        request_timeout: float | None = None,
        trusted_proxies: Sequence[str] | str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | None = None,
        worker_process: bool | None = None,
        country_lookup: bool | None = None,
        geoip_database: str | os.PathLike[str] | None = None,
        visitor_id: Literal["stable", "daily"] | None = None,
        salt_file: str | os.PathLike[str] | None = None,
        respect_privacy_signals: bool | None = None,
        respect_dnt: bool | None = None,
        privacy_signal_action: Literal["anonymous", "drop"] | None = None,
        scrub_paths: bool | None = None,
        scrub_ids: bool | None = None,
        before_send: BeforeSend | str | None = None,
        collect_site_ids: Sequence[str] | str | None = None,
        strict: bool | None = None,
    ) -> SkoposSDK:
        """Connect to PocketBase and start tracking; fails fast with a clear error.

        Every option may also come from ``SKOPOS_<OPTION>`` in the environment
        (an argument wins). Raises ``ConfigurationError`` (bad or missing option,
        unknown tracking id, schema missing), ``PocketBaseAuthError`` (wrong
        credentials), ``PocketBaseUnreachable``, ``PocketBaseBatchDisabled``.

        Times are seconds: ``batch_interval`` (10.0), ``session_timeout`` (1800.0),
        ``js_error_batch_interval`` (300.0), ``config_refresh_interval`` (900.0).
        ``batch=False`` writes promptly; ``batch=True`` every ``batch_interval`` or
        at ``max_batch_size`` (100). ``max_queue_size`` (10,000) bounds memory:
        beyond it, new calls are dropped and counted as ``queue_full``.
        ``trusted_proxies``: your reverse proxies, as CIDR ranges or presets
        (``"private"``, ``"cloudflare"``, ``"unix"``); only requests arriving from
        them may name the client with ``Forwarded`` / ``X-Forwarded-For`` /
        ``X-Real-IP`` (``CF-Connecting-IP`` only from Cloudflare). Default: none,
        the peer address is the client.
        ``spool_dir``: a local directory for a crash-safe journal of tracking calls
        (default: none, memory only). What PocketBase has not acknowledged by the
        shutdown deadline, or when the process is killed, is written by the next
        process started with the same directory, exactly once; while PocketBase is
        away the queue drains to disk, up to ``spool_max_bytes`` (256 MiB).
        ``worker_process=True`` runs validation, filtering, sessionizing and writing
        in a child process instead of a thread, so they do not compete with your
        request threads for the GIL (for CPU-bound hosts; costs a Python process).
        ``country_lookup`` (True): countries from the registry data installed with the
        package; ``geoip_database``: a local MMDB file for regions.
        Privacy: ``visitor_id="daily"`` changes every visitor's id each UTC day (salts
        rotated and deleted); ``salt_file``: a secret outside PocketBase that keys the salt;
        ``respect_privacy_signals=True`` (and ``respect_dnt``) counts ``Sec-GPC: 1``
        (``DNT: 1``) requests without identification, or drops them
        (``privacy_signal_action="drop"``); ``scrub_paths`` / ``scrub_ids`` (True):
        e-mails, tokens and numeric ids in paths become placeholders; ``before_send``: a
        function (or ``"module:function"``) that changes or drops what an activity stores.
        ``collect_site_ids``: tracking ids that messages of the official client script
        (``track_collect``, the ``/collect`` endpoint) may name besides ``site_id``; a
        message for any other site is dropped (``site_not_served``).
        ``strict=True`` re-raises internal errors (for tests and debugging).

        Example::

            skopos = SkoposSDK.init(pocketbase_url="http://127.0.0.1:8090",
                                    site_id="abc123", admin_email="a@b.c",
                                    admin_password="secret", batch=True)
        """
        arguments = {name: value for name, value in locals().items() if name != "cls"}
        options = resolve_options(arguments)
        if options.spool_dir:
            check_spool_dir(options.spool_dir)
        client = new_client(options)
        try:
            client.authenticate()
            client.batch_max_requests()  # PocketBaseBatchDisabled says "run skopos setup"
            return cls(options, client)
        except BaseException:
            client.close()
            raise

    @classmethod
    async def ainit(cls, **options: Any) -> SkoposSDK:
        """``init`` for asyncio apps: the blocking setup runs in a thread.

        Example::

            skopos = await SkoposSDK.ainit(site_id="abc123")  # rest from SKOPOS_* env
        """
        return await asyncio.to_thread(lambda: cls.init(**options))

    # -- tracking: microseconds, never raises ------------------------------------------

    def track_api_event(self, request: object, payload: object) -> None:
        """Queue a payload that ``skopos.js`` sent to your endpoint.

        ``request`` is the framework request (Flask, Django, Starlette/FastAPI), a
        WSGI environ or an ASGI scope; ``payload`` the parsed JSON body (a dict),
        or the raw body (``bytes``/``str``: sendBeacon sends ``text/plain``).
        Validation happens in the background; bad payloads are counted and dropped.

        Example (Flask)::

            @app.post("/api/event")
            def event():
                skopos.track_api_event(request, request.get_data())
                return "", 204
        """
        self._submit("api", self.options.site_id, request, payload=payload)

    def track_collect(self, request: object, body: object) -> None:
        """Queue a message the official client script (``skopos.min.js``) posted to
        ``/collect``.

        ``body`` is the raw body (``bytes``/``str``), as posted: ``{"_d": ..., "_v": 1}``
        or a plain message. It is decoded and validated in the background; the message's
        site (``sid``) must be ``site_id`` or one of ``collect_site_ids``. The integrations
        answer ``/collect`` with this; call it yourself only from an endpoint of your own.

        Example (Flask)::

            @app.post("/collect")
            def collect():
                skopos.track_collect(request, request.get_data())
                return "", 204
        """
        self._submit("collect", self.options.site_id, request, payload=body)

    def track_server_event(
        self,
        request: object,
        event_name: str,
        custom_data: Mapping[str, Any] | None = None,
        site_id: str | None = None,
    ) -> None:
        """Queue a backend-only event (webhook, job, API call) as a custom event.

        ``request`` links it to the visitor's session (``None`` for cron jobs and
        queues: such events belong to one "server" visitor per site).
        ``site_id`` sends it to another website than the default one.

        Example::

            skopos.track_server_event(request, "payment-webhook-received",
                                      {"source": "stripe", "amount": 42})
        """
        self._submit(
            "server", site_id or self.options.site_id, request, name=event_name, data=custom_data
        )

    def identify(
        self, request: object, user_id: str, traits: Mapping[str, Any] | None = None
    ) -> None:
        """Link the visitor behind ``request`` to your app's user id.

        ``traits`` may carry ``name`` and ``phone`` (stored in those fields) and
        anything else JSON-serialisable (stored as ``metadata``, at most 8 KiB).

        Example::

            skopos.identify(request, "user_123", {"name": "Ada", "plan": "pro"})
        """
        self._submit("identify", self.options.site_id, request, name=user_id, data=traits)

    def _submit(
        self,
        kind: CallKind,
        site_id: str,
        request: object,
        *,
        payload: object = None,
        name: object = None,
        data: object = None,
    ) -> None:
        try:
            if self._closed:
                self._late_calls += 1
                return
            runtime = self._runtime
            if runtime.pid != os.getpid():
                runtime = self._after_fork()
            call = TrackCall(kind, site_id, capture_request(request), payload, name, data)
            if not runtime.queue.put(call):
                self._warn_queue_full()
            if not runtime.worker.running:  # a flag: Thread.is_alive costs more than a put
                runtime.start()
        except Exception:
            if self.options.strict:
                raise
            logger.exception("skopos: internal error in a tracking call (ignored)")

    def _warn_queue_full(self) -> None:
        now = time.monotonic()
        if now - self._queue_full_logged >= _QUEUE_FULL_LOG_INTERVAL:
            self._queue_full_logged = now
            logger.warning(
                "skopos: queue full (%d calls); dropping new calls until it drains",
                self.options.max_queue_size,
            )

    # -- flushing and lifecycle ------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every call accepted so far is written or dropped; False on timeout.

        Example::

            skopos.flush(timeout=5.0)
        """
        runtime = self._current()
        target = runtime.queue.accepted
        if not runtime.worker.alive and not self._closed:
            runtime.start()
        generation = runtime.ledger.request_flush()
        runtime.worker.request_flush()
        done = runtime.ledger.wait_acknowledged(target, timeout, generation)
        self._raise_if_strict()
        return done

    async def aflush(self, timeout: float = 10.0) -> bool:
        """``flush`` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush for at most ``timeout`` seconds, then stop threads and close connections.

        What cannot be written by then is dropped and counted
        (``undelivered_at_shutdown``), or, with ``spool_dir``, kept on disk for the
        next start (``stats().spooled``). Idempotent; later tracking calls are ignored.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._at_exit)
        _LIVE.discard(self)
        self._current().stop(timeout)
        self._raise_if_strict()

    async def ashutdown(self, timeout: float = 10.0) -> None:
        """``shutdown`` without blocking the event loop."""
        await asyncio.to_thread(self.shutdown, timeout)

    def _at_exit(self) -> None:
        try:
            self.shutdown(ATEXIT_BUDGET)
        except Exception:
            logger.exception("skopos: error while flushing at exit")

    def _raise_if_strict(self) -> None:
        error = self._runtime.internal_errors.take()  # kept in strict mode only
        if error is not None:
            raise error

    def __enter__(self) -> SkoposSDK:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- observability ----------------------------------------------------------------------

    def stats(self) -> SkoposStats:
        """What happened so far: accepted, written, dropped by reason, queue depth, ...

        Example::

            >>> skopos.stats().dropped  # doctest: +SKIP
            {'bot:ua_list': 12, 'invalid:bad_url': 1}
        """
        runtime = self._current()
        ledger, queue = runtime.ledger, runtime.queue
        dropped = dict(ledger.dropped)
        if queue.rejected:
            dropped[DropReason.QUEUE_FULL.value] = queue.rejected
        if self._late_calls:
            dropped[DropReason.AFTER_SHUTDOWN.value] = self._late_calls
        depth = runtime.queue_depth
        return SkoposStats(
            accepted=queue.accepted,
            written=ledger.written,
            dropped=dropped,
            queue_depth=depth,
            pending=max(0, queue.accepted - ledger.acknowledged - depth),
            records=dict(ledger.records),
            retries=ledger.retries,
            spoofed_forwarding_headers=runtime.spoof_attempts,
            anonymous=runtime.anonymous_calls,
            realtime_connected=runtime.realtime_connected,
            last_error=ledger.last_error,
            last_error_at=ledger.last_error_at,
            spooled=ledger.spooled,
            recovered=dict(ledger.recovered),
            dropped_items=dict(ledger.dropped_items),
        )


def _collect_origin_hosts(runtime: ThreadRuntime, options: SkoposOptions) -> frozenset[str]:
    """The hosts whose pages may post to ``/collect`` from another origin: the domain of
    each site the endpoint accepts, with and without ``www.`` (as the dashboard allows).
    Read once, here: the request path never asks PocketBase. Raises ``ConfigurationError``
    for an unknown tracking id in ``collect_site_ids``."""
    hosts: set[str] = set()
    for tracking_id in (options.site_id, *options.collect_site_ids):
        site = runtime.sites.get(tracking_id)
        if site is None:
            raise ConfigurationError(
                f"collect_site_ids: no website with tracking id {tracking_id!r} in PocketBase"
                f" at {options.pocketbase_url}"
            )
        if site.domain:
            hosts.update((site.domain, "www." + site.domain))
    return frozenset(hosts)
