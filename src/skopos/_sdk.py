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

import skopos._signals as _signals
from skopos._config import BeforeSend, SkoposOptions, resolve_option, resolve_options
from skopos._delivery.spool import check_spool_dir
from skopos._runtime.base import Runtime
from skopos._runtime.process import ProcessRuntime
from skopos._runtime.thread import ThreadRuntime
from skopos._stats import DropReason, SkoposStats
from skopos._tracking.activity import (
    CALL_BYTES,
    MEASURED_BACKLOG,
    NOMINAL_PAYLOAD_BYTES,
    CallKind,
    TrackCall,
    payload_size,
)
from skopos._tracking.geo import open_database
from skopos._tracking.payload import MAX_RAW_BYTES
from skopos._tracking.salt import read_pepper
from skopos._tracking.snapshot import capture_request

__all__ = ["SkoposSDK", "install_sigterm_handler"]

logger = logging.getLogger("skopos")

# At interpreter exit, flush for at most this long: never hold up a restart.
ATEXIT_BUDGET = 1.0
_QUEUE_FULL_LOG_INTERVAL = 60.0

_ANY_HOST = frozenset({"*"})
# Every SDK not shut down, so a forked child can rebuild each one's runtime.
_LIVE: weakref.WeakSet[SkoposSDK] = weakref.WeakSet()


def _rebuild_after_fork() -> None:
    for sdk in list(_LIVE):
        try:
            sdk._after_fork()
        except Exception:  # never break the host's fork
            logger.exception("skopos: could not reset after fork")


os.register_at_fork(after_in_child=_rebuild_after_fork)


def _oversized(payload: object) -> bool:
    """A body over ``MAX_RAW_BYTES`` (given that its ``payload_size`` is): bytes, or
    characters, which never outnumber UTF-8 bytes; a mapping by its top-level strings."""
    if isinstance(payload, (bytes, bytearray, str)):
        return len(payload) > MAX_RAW_BYTES
    if isinstance(payload, memoryview):
        return payload.nbytes > MAX_RAW_BYTES
    if isinstance(payload, Mapping):
        strings = (v for v in payload.values() if isinstance(v, (str, bytes, bytearray)))
        return sum(map(len, strings)) > MAX_RAW_BYTES
    return False


def install_sigterm_handler(options: Mapping[str, Any] | None = None) -> bool:
    """From the main thread, where nothing handles SIGTERM yet: make it a normal exit while
    an SDK is live in this process, so ``atexit`` flushes it (``_signals``), unless the
    ``handle_sigterm`` option (in ``options``, else ``SKOPOS_HANDLE_SIGTERM``) is off. True
    if installed now. Integrations that start the SDK lazily call it when they are set up,
    in the main thread (the SDK itself may start in a request thread, where Python allows
    no signal handler to be installed).

    Example::

        install_sigterm_handler(sdk_options)  # Flask's init_app, Django's AppConfig.ready
    """
    if options is not None and not resolve_option("handle_sigterm", options):
        return False
    return _signals.install(lambda: bool(_LIVE))


class SkoposSDK:
    """Server-side Skopos tracking for one PocketBase and one default site.

    Create it once per process with ``SkoposSDK.init(...)`` (or ``await
    SkoposSDK.ainit(...)``). Tracking methods return in microseconds and never
    raise; a background thread connects to PocketBase and does the parsing, filtering,
    sessionizing and writing. Use it as a context manager, or call ``shutdown()``, to
    flush at exit; an ``atexit`` hook also flushes for up to a second.
    """

    def __init__(self, options: SkoposOptions, *, wait: bool = False) -> None:
        """Use ``SkoposSDK.init``: it resolves the options; ``wait`` connects here."""
        self.options = options
        self._runtime: Runtime
        runtime: ProcessRuntime | ThreadRuntime
        if options.worker_process:
            if options.geoip_database:
                open_database(options.geoip_database).close()  # a bad path fails now
            if options.salt_file:
                read_pepper(options.salt_file)  # so does a bad secret
            runtime = ProcessRuntime(options)
        else:
            runtime = ThreadRuntime.open(options)
        if wait:
            runtime.connect()
        self._runtime = runtime
        self._origin_hosts: frozenset[str] | None = None  # collect_origin_hosts, once known
        self._closed = False
        self._close_lock = threading.Lock()
        self._queue_full_logged = 0.0
        self._late_calls = 0
        self._too_large = 0
        self._runtime.start()
        _LIVE.add(self)
        atexit.register(self._at_exit)
        if options.handle_sigterm:
            install_sigterm_handler()

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

    @property
    def collect_origin_hosts(self) -> frozenset[str]:
        """The hosts whose pages may post to ``/collect`` from another origin: the domains
        of ``site_id`` and ``collect_site_ids``, with and without ``www.``, as read when the
        SDK connected; ``{"*"}`` (any) until then, so that a PocketBase outage at start does
        not make browsers refuse to send: the worker drops messages for sites it does not
        serve, or from pages off their site's domain, whatever the origin said. The
        integrations' CORS answers use it."""
        hosts = self._origin_hosts
        if hosts is None:  # not known yet: ask the runtime (no fork check: a forked
            # child's runtime starts with its parent's hosts, and os.getpid is a system call)
            hosts = self._origin_hosts = self._runtime.collect_origin_hosts
        return _ANY_HOST if hosts is None else hosts

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
        max_queue_bytes: int | None = None,
        request_timeout: float | None = None,
        trusted_proxies: Sequence[str] | str | None = None,
        client_ip_header: str | None = None,
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
        handle_sigterm: bool | None = None,
        strict: bool | None = None,
        wait: bool = False,
    ) -> SkoposSDK:
        """Start tracking; returns at once and connects to PocketBase in the background.

        Every option may also come from ``SKOPOS_<OPTION>`` in the environment
        (an argument wins). A bad or missing option raises ``ConfigurationError`` here.
        Anything about PocketBase (down, slow, wrong credentials, unknown tracking id,
        schema missing, batch API off) never does: calls wait in the queue while the
        SDK keeps trying, the log and ``stats().last_error`` say why, and once it is
        fixed they are written. ``wait=True`` connects before returning instead and
        raises what prevents it: ``ConfigurationError`` (unknown tracking id, schema
        missing), ``PocketBaseAuthError`` (wrong credentials), ``PocketBaseUnreachable``,
        ``PocketBaseBatchDisabled`` (for scripts and tests that want to fail fast).

        Times are seconds: ``batch_interval`` (10.0), ``session_timeout`` (1800.0),
        ``js_error_batch_interval`` (0: error groups go with the next write; more
        aggregates them longer, in memory), ``config_refresh_interval`` (900.0).
        ``batch=False`` writes promptly; ``batch=True`` every ``batch_interval`` or
        at ``max_batch_size`` (100). ``max_queue_size`` (10,000 calls) and
        ``max_queue_bytes`` (32 MiB) bound memory: beyond them, new calls are dropped
        and counted as ``queue_full``.
        ``trusted_proxies``: your reverse proxies, as CIDR ranges or presets
        (``"private"``, ``"cloudflare"``, ``"unix"``); only requests arriving from
        them name the client, in the header ``client_ip_header`` says
        (``"x-forwarded-for"``, ``"x-real-ip"``, ``"forwarded"``, ``"cf-connecting-ip"``
        or a proxy: ``"nginx"``, ``"caddy"``, ``"traefik"``, ``"aws-alb"``,
        ``"cloudflare"``). Default: none, the peer address is the client.
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
        ``handle_sigterm`` (True): where nothing handles SIGTERM, make it exit like
        Ctrl-C does, so the SDK flushes at exit (see README, Lifecycle).
        ``strict=True`` re-raises internal errors (for tests and debugging).

        Example::

            skopos = SkoposSDK.init(pocketbase_url="http://127.0.0.1:8090",
                                    site_id="abc123", admin_email="a@b.c",
                                    admin_password="secret", batch=True)
        """
        arguments = {name: value for name, value in locals().items() if name not in ("cls", "wait")}
        options = resolve_options(arguments)
        if options.spool_dir:
            check_spool_dir(options.spool_dir)
        return cls(options, wait=wait)

    @classmethod
    async def ainit(cls, **options: Any) -> SkoposSDK:
        """``init`` for asyncio apps, run in a thread (it does no network I/O unless
        ``wait=True``, but reads files: the spool directory, a GeoIP database).

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
            queue = runtime.queue
            # Measured exactly once a backlog builds up, where the byte budget matters; before
            # that, what costs a look at every header or value is charged a nominal size.
            # At most MEASURED_BACKLOG calls in the queue are unmeasured: each entered
            # behind fewer than that many.
            backlog = len(queue) >= MEASURED_BACKLOG
            if type(payload) is bytes:  # the common case inline: a call is a tenth of this
                size = len(payload)
            elif backlog or type(payload) is not dict:
                size = payload_size(payload)
            else:
                size = NOMINAL_PAYLOAD_BYTES
            if size > MAX_RAW_BYTES and _oversized(payload):
                self._too_large += 1  # never queued: the worker would refuse it anyway
                return
            captured = capture_request(request, measure=backlog)
            call = TrackCall(kind, site_id, captured, payload, name, data)
            if captured is not None:
                size += captured.size
            if not queue.put(call, size + CALL_BYTES):
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
                "skopos: queue full (%d calls or %d bytes); dropping new calls until it drains%s",
                self.options.max_queue_size,
                self.options.max_queue_bytes,
                "" if self._runtime.ledger.connected else " (not connected to PocketBase yet)",
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
        if self._too_large:
            dropped[DropReason.BODY_TOO_LARGE.value] = self._too_large
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
            connected=ledger.connected,
            anonymous=runtime.anonymous_calls,
            realtime_connected=runtime.realtime_connected,
            last_error=ledger.last_error,
            last_error_at=ledger.last_error_at,
            spooled=ledger.spooled,
            recovered=dict(ledger.recovered),
            dropped_items=dict(ledger.dropped_items),
        )
