"""The browser tests' web server: serves the client script and test pages, records every POST.

The server (stdlib ``ThreadingHTTPServer`` on 127.0.0.1, port 0) serves the client script from
``src/skopos/static``, HTML pages that each test writes, and records every POST. Tests are kept
apart by a per-test path prefix: every payload carries the page URL, and ``Site`` only shows the
payloads whose ``url`` starts with its own prefix, so a late beacon from the previous test's
closing page can never leak into the next test.

"Another host" for outbound links is the same server reached as ``localhost`` while the pages
are served from ``127.0.0.1``: a different host to the browser, no second server needed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests._support.paths import STATIC

if TYPE_CHECKING:
    from playwright.sync_api import Page

STUB = (
    "<script>window.skopos=window.skopos||function()"
    "{(window.skopos.q=window.skopos.q||[]).push(arguments)}</script>"
)
SENTINEL = "__test_sentinel__"
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# The recording server


@dataclass(frozen=True)
class Post:
    """One POST the server received."""

    path: str
    content_type: str
    cookie: str
    raw: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data = json.loads(self.raw)
        assert isinstance(data, dict), self.raw
        return data


@dataclass
class Response:
    """A canned answer for GET ``path``."""

    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer(ThreadingHTTPServer):
    """Serves ``routes`` and the static directory; records POSTs in a thread-safe list."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Response] = {}
        self._posts: list[Post] = []
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, post: Post) -> None:
        with self._lock:
            self._posts.append(post)

    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        response = self.server.routes.get(path)
        if response is None and path.startswith("/static/"):
            file = STATIC / path.removeprefix("/static/")
            if file.parent == STATIC and file.is_file():
                response = Response(file.read_bytes(), "text/javascript; charset=utf-8")
        if response is None:
            self._send(404, Response(b"not found", "text/plain"))
        else:
            self._send(200, response)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.record(
            Post(
                path=self.path,
                content_type=self.headers.get("Content-Type", ""),
                cookie=self.headers.get("Cookie", ""),
                raw=raw,
            )
        )
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, response: Response) -> None:
        self.send_response(status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


# --------------------------------------------------------------------------------------------
# One test's view of the server


class Site:
    """Pages under a prefix of their own, and the payloads those pages sent."""

    def __init__(self, server: RecordingServer, prefix: str, script: str) -> None:
        self.server = server
        self.prefix = prefix
        self.script = script
        self.origin = f"http://127.0.0.1:{server.port}"
        # Same server, other host name: what the browser considers another site.
        self.other_origin = f"http://localhost:{server.port}"

    def url(self, path: str = "") -> str:
        return f"{self.origin}{self.prefix}{path}"

    def page(
        self,
        path: str = "",
        body: str = "",
        *,
        attrs: str = 'data-endpoint="/e/collect"',
        head: str = "",
        script_tags: int = 1,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve an HTML page that loads the client script; returns its absolute URL."""
        tag = f'<script defer src="/static/{self.script}" {attrs}></script>'
        html = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{path or 'home'}</title>"
            f"{head}{tag * script_tags}</head><body>{body}</body></html>"
        )
        self.serve(path, html.encode(), headers=headers)
        return self.url(path)

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.server.routes[self.prefix + path] = Response(body, content_type, headers or {})

    def posts(self) -> list[Post]:
        """This test's POSTs (sentinels excluded), in arrival order."""
        mine = []
        for post in self.server.posts():
            try:
                payload = post.payload
            except (ValueError, AssertionError):
                continue
            url = str(payload.get("url", ""))
            if url.startswith(self.url()) and payload.get("name") != SENTINEL:
                mine.append(post)
        return mine

    def events(self, type: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """This test's payloads, optionally only those of one type and/or name."""
        return [
            p
            for p in (post.payload for post in self.posts())
            if (type is None or p.get("type") == type) and (name is None or p.get("name") == name)
        ]

    def wait(
        self,
        count: int = 1,
        *,
        type: str | None = None,
        name: str | None = None,
        timeout: float = 5,
    ) -> list[dict[str, Any]]:
        """Poll until at least ``count`` matching payloads arrived; return all of them."""
        return wait_until(
            lambda: self.events(type, name),
            lambda found: len(found) >= count,
            timeout,
            lambda: f"{count} x type={type} name={name}; got {self.events()}",
        )

    def flush(self, page: Page, grace: float = 0.1) -> None:
        """Make sure everything the page sent so far has landed.

        The sentinel is sent after whatever the test did, so once it arrived the earlier
        beacons were dispatched too; the short grace covers them overtaking each other.
        """
        marker = f"{time.monotonic_ns()}"
        page.evaluate(f"m => window.skopos('event', '{SENTINEL}', {{m}})", marker)

        def arrived() -> bool:
            for post in self.server.posts():
                payload = post.payload
                custom = payload.get("customData") or {}
                if payload.get("name") == SENTINEL and custom.get("m") == marker:
                    return True
            return False

        wait_until(arrived, bool, 5, lambda: "the sentinel event never arrived")
        time.sleep(grace)


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    explain: Callable[[], str],
) -> T:
    """Poll ``probe`` every 20 ms until ``done(result)``; fail with ``explain()`` at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {explain()}")
        time.sleep(0.02)


def served_script() -> str:
    """The file a site serves: the minified build when there is one, else the source.

    ``SKOPOS_JS_FILE=skopos.js`` runs the suite against the readable source instead (handy
    while editing it; tests/browser/test_skopos_js_build.py makes sure the build is not stale).
    """
    chosen = os.environ.get("SKOPOS_JS_FILE")
    if chosen:
        return chosen
    return "skopos.min.js" if (STATIC / "skopos.min.js").is_file() else "skopos.js"
