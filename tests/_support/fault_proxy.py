"""An HTTP proxy in front of PocketBase that fails requests on purpose (tests only).

``FaultProxy(upstream, plan)``: ``plan(method, path, number)`` decides, for the
``number``-th request matching nothing but order, one of:
- ``"pass"``: forward and answer;
- ``"error"``: answer 500 without forwarding (nothing written);
- ``"drop"``: forward (PocketBase commits), then close the connection without an
  answer, as a crash or a network cut after the commit would;
- ``"stall"``: hold the request unanswered for ``stall_seconds``, then close.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Plan = Callable[[str, str, int], str]


class FaultProxy:
    """Forward to ``upstream`` on 127.0.0.1, failing requests as ``plan`` says."""

    def __init__(self, upstream: str, plan: Plan) -> None:
        self.plan = plan
        self.stall_seconds = 60.0
        self.actions: Counter[str] = Counter()
        self._numbers = itertools.count(1)
        self._client = httpx.Client(base_url=upstream, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy.plan(self.command, self.path, next(proxy._numbers))
                proxy.actions[action] += 1
                if action == "stall":
                    time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if action == "error":
                    payload = b'{"message":"injected failure","data":{},"status":500}'
                    self._answer(500, {"Content-Type": "application/json"}, payload)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                try:
                    upstream = proxy._client.request(
                        self.command, self.path, content=body, headers=headers
                    )
                except httpx.HTTPError:  # PocketBase itself is down: a gateway error
                    payload = b'{"message":"bad gateway","data":{},"status":502}'
                    self._answer(502, {"Content-Type": "application/json"}, payload)
                    return
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                passed = {
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() in ("content-type", "retry-after")
                }
                self._answer(upstream.status_code, passed, upstream.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
