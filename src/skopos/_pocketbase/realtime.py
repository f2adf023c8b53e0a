"""PocketBase realtime subscriptions (Server-Sent Events) that survive restarts.

PocketBase's protocol: ``GET /api/realtime`` opens an event stream whose first
event, ``PB_CONNECT``, carries a ``clientId``; ``POST /api/realtime`` with that id
and a list of topics (``"websites/*"``, ``"websites/RECORD_ID"``) subscribes,
authenticated as the superuser. Each change then arrives as an event named after
the topic, with ``{"action": "...", "record": {...}}`` as data.

A daemon thread keeps the stream open and reconnects with capped, jittered
backoff. ``on_connect`` runs after every (re)subscription so the owner can
re-read whatever changed while the stream was down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from skopos._exceptions import PocketBaseError
from skopos._pocketbase.client import PocketBaseClient

__all__ = ["RealtimeEvent", "RealtimeSubscription"]

logger = logging.getLogger("skopos")

# PocketBase closes a silent stream after 5 minutes; a longer read timeout
# only catches half-open connections that never close.
_READ_TIMEOUT = 330.0


@dataclass(frozen=True, slots=True)
class RealtimeEvent:
    """One record change: ``action`` is ``create``, ``update`` or ``delete``."""

    topic: str
    action: str
    record: dict[str, Any]


@dataclass(slots=True)
class _SseMessage:
    event: str
    data: str


def _parse_sse(lines: Iterator[str]) -> Iterator[_SseMessage]:
    """Turn event-stream lines into messages (fields ``event`` and ``data`` only)."""
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data or event:
                yield _SseMessage(event or "message", "\n".join(data))
            event, data = "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


class RealtimeSubscription:
    """Subscribe to PocketBase record changes on a background thread.

    Example::

        def on_event(event: RealtimeEvent) -> None:
            print(event.action, event.record["id"])

        sub = RealtimeSubscription(client, ["websites/*"], on_event)
        sub.start()
        sub.wait_connected(timeout=5)
        ...
        sub.stop()
    """

    def __init__(
        self,
        client: PocketBaseClient,
        topics: Sequence[str],
        on_event: Callable[[RealtimeEvent], None],
        *,
        on_connect: Callable[[], None] | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        name: str = "skopos-realtime",
    ) -> None:
        self._client = client
        self._topics = list(topics)
        self._on_event = on_event
        self._on_connect = on_connect
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._name = name
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()
        self.connections = 0  # how many times a subscription was established

    @property
    def connected(self) -> bool:
        """True while the stream is open and the topics are subscribed."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed, at most ``timeout`` seconds; returns whether it is."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the stream and wait up to ``timeout`` seconds for the thread to end."""
        self._stopping.set()
        with self._socket_lock:
            if self._socket is not None:
                # Closing from another thread does not wake a blocked recv(); shutdown does.
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._listen_once()
                failures = 0  # the server ended a healthy stream: reconnect at once
            except (httpx.HTTPError, PocketBaseError, OSError, ValueError) as exc:
                failures += 1
                if not self._stopping.is_set():
                    logger.debug("skopos realtime: stream lost (%r), reconnecting", exc)
            except Exception:  # never let the thread die for good
                failures += 1
                logger.exception("skopos realtime: unexpected error, reconnecting")
            finally:
                self._connected.clear()
                with self._socket_lock:
                    self._socket = None
            if failures:
                delay = min(self._max_backoff, self._min_backoff * 2 ** (failures - 1))
                self._stopping.wait(delay * random.uniform(0.5, 1.0))

    def _listen_once(self) -> None:
        timeout = httpx.Timeout(10.0, read=_READ_TIMEOUT)
        with (
            httpx.Client(base_url=self._client.url, timeout=timeout) as http,
            http.stream("GET", "/api/realtime", headers={"Accept": "text/event-stream"}) as stream,
        ):
            stream.raise_for_status()
            self._remember_socket(stream)
            if self._stopping.is_set():
                return
            for message in _parse_sse(stream.iter_lines()):
                if message.event == "PB_CONNECT":
                    self._subscribe(json.loads(message.data)["clientId"])
                    continue
                self._dispatch(message)

    def _remember_socket(self, stream: httpx.Response) -> None:
        network_stream = stream.extensions.get("network_stream")
        raw = network_stream.get_extra_info("socket") if network_stream is not None else None
        with self._socket_lock:
            self._socket = raw if isinstance(raw, socket.socket) else None

    def _subscribe(self, client_id: str) -> None:
        # PocketBase answers 204 to a subscription with a revoked token and then
        # sends nothing, as to a guest: prove the token first.
        self._client.revalidate()
        self._client.request(
            "POST",
            "/api/realtime",
            json_body={"clientId": client_id, "subscriptions": self._topics},
        )
        self.connections += 1
        self._connected.set()
        logger.debug("skopos realtime: subscribed to %s", ", ".join(self._topics))
        if self._on_connect is not None:
            self._call_safely(self._on_connect)

    def _dispatch(self, message: _SseMessage) -> None:
        try:
            payload = json.loads(message.data)
        except ValueError:
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("record"), dict):
            return
        event = RealtimeEvent(message.event, str(payload.get("action", "")), payload["record"])
        self._call_safely(lambda: self._on_event(event))

    @staticmethod
    def _call_safely(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("skopos realtime: a subscriber callback failed")
