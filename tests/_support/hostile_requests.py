"""Hostile requests through one integration, in a fresh process, against a real PocketBase.

``python -m tests._support.hostile_requests INTEGRATION COUNT CONFIG_JSON`` builds the
integration's app the way its README says (``wsgi``, ``asgi``, ``flask``, ``django``,
``starlette``), sends it ``COUNT`` requests from a seeded generator of what a hostile or
broken client sends (bodies of every shape and size, lying and malformed Content-Length,
headers of random bytes and of 20 KiB, forged forwarding headers, peers that are no
address, non-BMP text, valid events with every field at its bound, and a few plain valid
events), calling the app in-process as a server would, and prints one JSON object:
how many requests raised into the host (must be 0), the statuses, the SDK's ``stats()``
after a flush, and the resident set's growth from after the SDK started to the end.

Apps are called in-process: the server's own work is not what is tested, and 100,000
requests through five integrations take about a minute this way.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from skopos import SkoposSDK
from tests._support.memory_probe import rss

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
]
BOTS = ["curl/8.5.0", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]
# Characters that cost 1, 2 and 4 bytes each in memory, and a few that validation removes.
ALPHABET = "abcxyz019 /?#&=%.:,;\"'<>\\\x00\x07\x1b\x85é€\u2028\u202e\ud7ff\U0001f600"
BAD_LENGTHS = ["²", "١٢", "-1", "+5", "1e3", "12 34", "0x10", "9" * 25, "\x00", ""]


class Hostile:
    """A seeded stream of (method, path, headers, body, peer), headers as lower-case str."""

    def __init__(self, seed: int, domain: str) -> None:
        self.rng = random.Random(seed)
        self.domain = domain
        # Text is cut from one random pool: drawing each character costs more than the
        # request it goes into.
        self._pool = "".join(self.rng.choices(ALPHABET, k=1 << 16))

    def text(self, size: int) -> str:
        start = self.rng.randrange(len(self._pool) - size)
        return self._pool[start : start + size]

    def latin1(self, size: int) -> str:
        return self.rng.randbytes(size).decode("latin-1")

    def ip(self) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.5:
            return ".".join(str(rng.randint(1, 223)) for _ in range(4))
        if pick < 0.7:
            return f"2001:db8::{rng.randint(1, 0xFFFF):x}"
        return rng.choice(
            ["10.0.0.1", "unknown", "_hidden", "[::1]:80", "1.2.3", "", "::ffff:1.2.3.4"]
        )

    def url(self) -> str:
        rng = self.rng
        base = f"https://{self.domain}"
        pick = rng.random()
        if pick < 0.4:
            return f"{base}/{self.text(rng.randint(0, 30))}"
        if pick < 0.55:
            return base + "/" + "\U0001f600" * rng.randint(300, 600)  # long once encoded
        if pick < 0.65:
            return base + "/" + "x" * rng.randint(2000, 2100)
        if pick < 0.75:
            return rng.choice(
                ["javascript:alert(1)", "", "//x", f"https://evil.test/{self.text(5)}"]
            )
        return f"https://{self.text(rng.randint(1, 20))}/"

    def event(self) -> dict[str, Any]:
        rng = self.rng
        event: dict[str, Any] = {
            "type": rng.choice(["pageView", "custom", "click", "jsError", "PAGEVIEW", 7, None]),
            "url": self.url(),
        }
        fields: tuple[tuple[str, Callable[[], object]], ...] = (
            ("name", lambda: self.text(rng.randint(0, 120))),
            ("referrer", self.url),
            ("language", lambda: self.text(rng.randint(0, 40))),
            ("screenWidth", lambda: rng.choice([1920, -5, 1e300, "12", None, [1]])),
            ("errorMessage", lambda: self.text(rng.randint(0, 1200))),
            ("stackTrace", lambda: "\U0001f600" * rng.randint(0, 9000)),
            (
                "customData",
                lambda: rng.choice(
                    [
                        {"k": self.text(50)},
                        {"deep": [[[[[[[1]]]]]]]},
                        {f"k{n}": n for n in range(60)},
                        {"s": "x" * 9000},
                        "not an object",
                    ]
                ),
            ),
        )
        for key, value in fields:
            if rng.random() < 0.5:
                event[key] = value()
        return event

    def body(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.03:  # plain valid events: some calls must be written
            path = f"/valid/{rng.randint(0, 50)}"
            return json.dumps({"type": "pageView", "url": f"https://{self.domain}{path}"}).encode()
        if pick < 0.45:
            try:
                return json.dumps(self.event(), ensure_ascii=rng.random() < 0.5).encode(
                    "utf-8", "surrogatepass"
                )
            except ValueError:
                return b"{}"
        if pick < 0.55:
            return rng.randbytes(rng.randint(0, 300))
        if pick < 0.65:
            return rng.choice(
                [b"[" * 50_000, b'{"a":NaN}', b"\xef\xbb\xbf{}", b"[]", b"null", b'"x"', b"1e999"]
            )
        if pick < 0.72:
            return b"x" * rng.randint(16 * 1024, 100 * 1024)  # over the limit
        if pick < 0.75:
            return b""
        return json.dumps({"type": "pageView", "url": self.url(), "pad": "x" * 16_000}).encode()

    def request(self) -> tuple[str, str, dict[str, str], bytes, str | None]:
        rng = self.rng
        method = rng.choices(["POST", "OPTIONS", "GET", "PUT", "P\x00ST", ""], [85, 5, 5, 2, 2, 1])[
            0
        ]
        path = rng.choices(["/api/event", "/skopos.js", "/", "/api/event/"], [90, 5, 3, 2])[0]
        body = self.body()
        headers: dict[str, str] = {}
        pick = rng.random()
        if pick < 0.7:
            headers["content-length"] = str(len(body))
        elif pick < 0.85:
            headers["content-length"] = rng.choice(BAD_LENGTHS)
        elif pick < 0.95:
            headers["content-length"] = str(max(0, len(body) + rng.randint(-50, 50)))
        headers["content-type"] = rng.choice(
            ["text/plain;charset=UTF-8", "application/json", "", "text/html", self.latin1(20)]
        )
        pick = rng.random()
        if pick < 0.5:
            headers["user-agent"] = rng.choice(BROWSERS)
        elif pick < 0.6:
            headers["user-agent"] = rng.choice(BOTS)
        elif pick < 0.9:
            headers["user-agent"] = self.latin1(rng.choice([10, 200, 20_000]))
        for name in ("accept-language", "sec-fetch-mode", "sec-ch-ua", "origin", "if-none-match"):
            if rng.random() < 0.4:
                headers[name] = self.latin1(rng.choice([5, 50, 5000]))
        if rng.random() < 0.5:
            headers["accept-language"] = "en-US,en;q=0.9"
        for name in ("x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip"):
            pick = rng.random()
            if pick < 0.15:
                headers[name] = ", ".join(self.ip() for _ in range(rng.randint(1, 5)))
            elif pick < 0.2:
                headers[name] = ", ".join(["6.6.6.6"] * rng.randint(500, 3000)) + ", " + self.ip()
            elif pick < 0.25:
                headers[name] = self.latin1(rng.randint(1, 300))
        if rng.random() < 0.05:
            headers["cookie"] = "session=" + "c" * 8000
        peer = rng.choice(["10.0.0.1", "203.0.113.9", self.ip(), None, "/run/app.sock"])
        return method, path, headers, body, peer


# -- the integrations, called as their servers call them --------------------------------------


def environ_of(
    method: str, path: str, headers: dict[str, str], body: bytes, peer: str | None
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "fuzz.test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "fuzz.test",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return environ


def wsgi_caller(app: Callable[..., Any]) -> Callable[..., int]:
    def call(method: str, path: str, headers: dict[str, str], body: bytes, peer: str | None) -> int:
        status: list[str] = []

        def start_response(line: str, response_headers: list[Any], exc_info: Any = None) -> None:
            status.append(line)

        chunks = app(environ_of(method, path, headers, body, peer), start_response)
        try:
            b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(status[0].split()[0])

    return call


def _raw(value: str) -> bytes:
    """A header value as it came off the wire (what a server decoded as latin-1, or UTF-8)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def asgi_caller(app: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> Callable[..., int]:
    async def run(
        method: str, path: str, headers: dict[str, str], body: bytes, peer: str | None
    ) -> int:
        size = max(1, len(body) // 3 + 1)
        parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        messages = [
            {"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
            for n, part in enumerate(parts)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("latin-1", "replace"),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), _raw(v)) for k, v in headers.items()],
            "client": (peer, 50000) if peer is not None else None,
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        status: int = sent[0]["status"]
        return status

    def call(method: str, path: str, headers: dict[str, str], body: bytes, peer: str | None) -> int:
        return loop.run_until_complete(run(method, path, headers, body, peer))

    return call


def build(integration: str, options: dict[str, Any]) -> tuple[Callable[..., int], SkoposSDK]:
    """The integration's app, as a caller of (method, path, headers, body, peer) → status."""
    if integration == "django":
        from django.conf import settings  # type: ignore[import-untyped]

        settings.configure(
            SECRET_KEY="fuzz",
            DATABASES={},
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["skopos.integrations.django"],
            ROOT_URLCONF="skopos.integrations.django.urls",
            DEBUG_PROPAGATE_EXCEPTIONS=True,  # an exception must reach us, not become a 500
            SKOPOS={**options, "handle_sigterm": False, "cors_origins": ["*"]},
        )
        import django  # type: ignore[import-untyped]
        from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped]

        django.setup()
        from skopos.integrations import django as skopos_django

        return wsgi_caller(WSGIHandler()), skopos_django.get_sdk()

    sdk = SkoposSDK.init(**options, wait=True, handle_sigterm=False)
    if integration == "wsgi":
        from skopos.integrations.wsgi import SkoposMiddleware

        return wsgi_caller(SkoposMiddleware(None, sdk)), sdk
    if integration == "flask":
        from flask import Flask

        from skopos.integrations.flask import Skopos

        app = Flask(__name__)
        app.config["PROPAGATE_EXCEPTIONS"] = True
        Skopos(app, sdk=sdk)
        return wsgi_caller(app), sdk
    loop = asyncio.new_event_loop()
    if integration == "asgi":
        from skopos.integrations.asgi import SkoposMiddleware as AsgiMiddleware

        return asgi_caller(AsgiMiddleware(None, sdk), loop), sdk
    from starlette.applications import Starlette

    from skopos.integrations.starlette import skopos_routes

    return asgi_caller(Starlette(routes=skopos_routes(sdk)), loop), sdk


def main() -> None:
    integration, count = sys.argv[1], int(sys.argv[2])
    config = json.loads(sys.argv[3])
    options = {
        "pocketbase_url": config["url"],
        "site_id": config["site_id"],
        "admin_email": config["email"],
        "admin_password": config["password"],
        "realtime": False,
        "trusted_proxies": ["private", "unix"],
    }
    call, sdk = build(integration, options)
    hostile = Hostile(config.get("seed", 14), config["domain"])
    call("POST", "/api/event", {"content-type": "text/plain"}, b"{}", "10.0.0.1")  # warm up
    gc.collect()
    before = rss()
    peak = before
    statuses: Counter[int] = Counter()
    raised: Counter[str] = Counter()
    started = time.monotonic()
    for number in range(count):
        request = hostile.request()
        try:
            statuses[call(*request)] += 1
        except Exception as exc:  # what the host would have seen
            raised[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
        if number % 5000 == 0:
            peak = max(peak, rss())
    elapsed = time.monotonic() - started
    flushed = sdk.flush(timeout=120)
    gc.collect()
    peak = max(peak, rss())
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    print(
        json.dumps(
            {
                "integration": integration,
                "requests": count,
                "seconds": round(elapsed, 1),
                "raised": dict(raised),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "flushed": flushed,
                "accepted": stats.accepted,
                "written": stats.written,
                "dropped": stats.dropped,
                "growth": peak - before,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
