"""Simulated visitors for ``skopos demo --traffic N``, and the truth of what they did.

Two halves:

- ``plan_traffic`` (pure, seeded): who visits and what each visitor's browser sends, as the
  HTTP requests ``skopos.js`` makes: page views, custom events, JS errors, and page exits as
  a custom event ``exit`` with ``customData: {"duration": seconds}`` (the dashboard's format),
  with the headers a real browser sends (``User-Agent``, ``Accept-Language``,
  ``Sec-Fetch-*``, ``Sec-CH-UA`` for Chromium, ``Origin``), or the SDK's bot filter would drop
  them. A share of the visitors are crawlers with their real user agents: the SDK drops
  them, so they must not appear in any number. Some visitors come back after the session
  timeout, as returning visitors. ``TrafficPlan.expected`` says what the dashboard should
  show for the humans.
- ``send_traffic``: plays the plan against a running app's ``POST /api/event``, visitors
  concurrently, each visitor's requests in order with short pauses.

Every simulated visitor comes from 127.0.0.1, so each gets its own client address through
``X-Forwarded-For``, from 198.18.0.0/15 (RFC 2544's range for benchmarks: never routed), which
the app believes because it runs with ``SKOPOS_TRUSTED_PROXIES=127.0.0.1/32``, as it would
behind a local nginx. The address only feeds the visitor hash; nothing ever connects to it.

Example::

    plan = plan_traffic(200, page_url="http://127.0.0.1:8000", seed=1)
    result = send_traffic(plan, "http://127.0.0.1:8000")
    plan.expected.page_views == ...  # compare with skopos report
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "Expected",
    "Request",
    "TrafficPlan",
    "TrafficResult",
    "VisitorPlan",
    "plan_traffic",
    "send_traffic",
]

_FIRST_ADDRESS = int(ipaddress.IPv4Address("198.18.0.1"))

# (user agent, Sec-CH-UA or None, platform, mobile): what a few real browsers send.
_BROWSERS: tuple[tuple[str, str | None, str, bool], ...] = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        '"Windows"',
        False,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        '"macOS"',
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Mobile Safari/537.36",
        '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        '"Android"',
        True,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        '"Microsoft Edge";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        '"Windows"',
        False,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
        "",
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
        "",
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        None,
        "",
        True,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/17.6 Safari/605.1.15",
        None,
        "",
        False,
    ),
)
_BROWSER_WEIGHTS = (30, 14, 16, 8, 6, 5, 14, 7)
_BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2;"
    " +https://openai.com/gptbot)",
    "curl/8.5.0",
    "python-requests/2.32.3",
)
_LANGUAGES = (
    ("en-US", "en-US,en;q=0.9"),
    ("de-DE", "de-DE,de;q=0.9,en;q=0.8"),
    ("fr-FR", "fr-FR,fr;q=0.9,en;q=0.7"),
    ("en-GB", "en-GB,en;q=0.9"),
    ("es-ES", "es-ES,es;q=0.9"),
    ("ja-JP", "ja-JP,ja;q=0.9,en;q=0.6"),
)
_LANGUAGE_WEIGHTS = (45, 15, 12, 12, 9, 7)
_SCREENS = {
    False: ((1920, 1080), (2560, 1440), (1440, 900), (1366, 768)),
    True: ((390, 844), (412, 915), (375, 667)),
}
_REFERRERS = (
    "",
    "",
    "",
    "https://www.google.com/",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/item?id=42",
    "https://github.com/skopos-analytics",
    "https://www.reddit.com/r/selfhosted/",
)
# The example app's routes, with how likely a visit starts there.
_PAGES = ("/", "/about", "/spa/step-2")
_ENTRY_WEIGHTS = (70, 20, 10)
_ERRORS = (
    (
        "TypeError: Cannot read properties of undefined (reading 'price')",
        "TypeError: Cannot read properties of undefined (reading 'price')\n"
        "    at renderCart (/static/app.js:42:17)\n    at onClick (/static/app.js:88:5)",
    ),
    (
        "ReferenceError: analyticsReady is not defined",
        "ReferenceError: analyticsReady is not defined\n    at /static/boot.js:3:1",
    ),
)


@dataclass(frozen=True, slots=True)
class Request:
    """One POST to ``/api/event``: wait ``pause`` seconds, then send ``payload``."""

    pause: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class VisitorPlan:
    """One visitor: the headers of their browser and their sessions' requests.

    Sessions after the first start ``return_after`` seconds after the previous one ended.
    """

    index: int
    human: bool
    headers: dict[str, str]
    sessions: list[list[Request]]
    return_after: float = 0.0

    @property
    def requests(self) -> int:
        """How many requests this visitor sends."""
        return sum(len(session) for session in self.sessions)


@dataclass
class Expected:
    """What the dashboard should show for the planned humans (bots excluded)."""

    sessions: int = 0
    distinct_visitors: int = 0
    new_visitors: int = 0
    returning_visitors: int = 0
    page_views: int = 0
    events: int = 0  # records in ``events``: page views, custom events, exits
    bounced_sessions: int = 0
    engaged_sessions: int = 0
    js_errors: int = 0
    bots: int = 0
    bot_requests: int = 0
    top_pages: Counter[str] = field(default_factory=Counter)
    entry_pages: Counter[str] = field(default_factory=Counter)
    exit_pages: Counter[str] = field(default_factory=Counter)
    custom_events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class TrafficPlan:
    """Every visitor's requests, and ``expected``: the truth they add up to."""

    visitors: list[VisitorPlan]
    expected: Expected

    @property
    def requests(self) -> int:
        """How many requests the whole plan sends."""
        return sum(visitor.requests for visitor in self.visitors)


@dataclass(frozen=True)
class TrafficResult:
    """What ``send_traffic`` did: requests sent, how many the app refused, wall time."""

    sent: int
    failed: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def _browser_headers(rng: random.Random, index: int, origin: str) -> tuple[dict[str, str], bool]:
    agent, hints, platform, mobile = rng.choices(_BROWSERS, _BROWSER_WEIGHTS)[0]
    _, accept_language = rng.choices(_LANGUAGES, _LANGUAGE_WEIGHTS)[0]
    headers = {
        "User-Agent": agent,
        "Accept": "*/*",
        "Accept-Language": accept_language,
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Content-Type": "text/plain;charset=UTF-8",
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "no-cors",
        "Sec-Fetch-Dest": "empty",
        "X-Forwarded-For": str(ipaddress.IPv4Address(_FIRST_ADDRESS + index)),
    }
    if hints is not None:
        headers["Sec-CH-UA"] = hints
        headers["Sec-CH-UA-Mobile"] = "?1" if mobile else "?0"
        headers["Sec-CH-UA-Platform"] = platform
    return headers, mobile


def _session(
    rng: random.Random,
    page_url: str,
    headers: dict[str, str],
    mobile: bool,
    pause: float,
    expected: Expected,
) -> list[Request]:
    language = headers["Accept-Language"].split(",")[0]
    width, height = rng.choice(_SCREENS[mobile])
    common = {"screenWidth": width, "screenHeight": height, "language": language}
    pages = [rng.choices(_PAGES, _ENTRY_WEIGHTS)[0]]
    # About 40% of sessions see one page (bounces unless they stay long), the rest 2-5.
    extra = 0 if rng.random() < 0.4 else rng.randint(1, 4)
    for _ in range(extra):
        pages.append(rng.choice([p for p in _PAGES if p != pages[-1]]))
    requests: list[Request] = []
    referrer = rng.choice(_REFERRERS)
    engaged = len(pages) >= 2
    for number, path in enumerate(pages):
        url = page_url + path
        requests.append(
            Request(
                pause if number else 0.0,
                {"type": "pageView", "name": path, "url": url, "referrer": referrer, **common},
            )
        )
        expected.page_views += 1
        expected.top_pages[path] += 1
        referrer = url
        if path == "/" and rng.random() < 0.25:
            requests.append(
                Request(
                    pause,
                    {
                        "type": "custom",
                        "name": "signup",
                        "url": url,
                        "customData": {"plan": rng.choice(["free", "pro"])},
                        **common,
                    },
                )
            )
            expected.custom_events["signup"] += 1
            engaged = True
        if rng.random() < 0.08:
            message, stack = rng.choice(_ERRORS)
            requests.append(
                Request(
                    pause,
                    {
                        "type": "jsError",
                        "name": "jsError",
                        "url": url,
                        "errorMessage": message,
                        "stackTrace": stack,
                        **common,
                    },
                )
            )
            expected.js_errors += 1
            expected.errors[message] += 1
        # The page is left: seconds it was visible, as the dashboard's page exit reports it.
        seconds = rng.choice([2, 4, 6, 9, 14, 25, 48, 95])
        engaged = engaged or seconds > 10
        requests.append(
            Request(
                pause,
                {
                    "type": "custom",
                    "name": "exit",
                    "url": url,
                    "customData": {"duration": seconds},
                    **common,
                },
            )
        )
    expected.sessions += 1
    expected.events += sum(1 for r in requests if r.payload["type"] != "jsError")
    non_exit = sum(
        1 for r in requests if r.payload["type"] != "jsError" and r.payload.get("name") != "exit"
    )
    expected.bounced_sessions += non_exit == 1
    expected.engaged_sessions += engaged
    expected.entry_pages[pages[0]] += 1
    expected.exit_pages[pages[-1]] += 1
    return requests


def plan_traffic(
    visitors: int,
    *,
    page_url: str,
    seed: int = 0,
    bot_share: float = 0.1,
    return_share: float = 0.15,
    return_after: float = 4.0,
    pause: float = 0.15,
) -> TrafficPlan:
    """``visitors`` simulated visitors of the site at ``page_url`` (scheme and host, e.g.
    ``http://127.0.0.1:8000``): ``bot_share`` of them crawlers, ``return_share`` of the
    humans back for a second session after ``return_after`` seconds (longer than the app's
    session timeout); ``pause`` seconds between a visitor's requests.

    >>> plan = plan_traffic(20, page_url="http://127.0.0.1:8000", seed=3)
    >>> plan.expected.sessions >= sum(v.human for v in plan.visitors)
    True
    """
    rng = random.Random(seed)
    origin = page_url.rstrip("/")
    expected = Expected()
    planned: list[VisitorPlan] = []
    for index in range(visitors):
        if rng.random() < bot_share:
            agent = rng.choice(_BOTS)
            headers = {
                "User-Agent": agent,
                "Accept": "*/*",
                "Content-Type": "text/plain;charset=UTF-8",
                "X-Forwarded-For": str(ipaddress.IPv4Address(_FIRST_ADDRESS + index)),
            }
            hits = [
                Request(
                    pause if n else 0.0, {"type": "pageView", "url": origin + path, "name": path}
                )
                for n, path in enumerate(rng.sample(_PAGES, rng.randint(1, 3)))
            ]
            expected.bots += 1
            expected.bot_requests += len(hits)
            planned.append(VisitorPlan(index, False, headers, [hits]))
            continue
        headers, mobile = _browser_headers(rng, index, origin)
        sessions = [_session(rng, origin, headers, mobile, pause, expected)]
        expected.distinct_visitors += 1
        expected.new_visitors += 1
        if rng.random() < return_share:
            sessions.append(_session(rng, origin, headers, mobile, pause, expected))
            expected.returning_visitors += 1
        planned.append(VisitorPlan(index, True, headers, sessions, return_after))
    return TrafficPlan(planned, expected)


def send_traffic(
    plan: TrafficPlan,
    app_url: str,
    *,
    concurrency: int = 24,
    timeout: float = 10.0,
    progress: Callable[[int], None] | None = None,
) -> TrafficResult:
    """Send every visitor's requests to ``app_url``'s ``POST /api/event``, ``concurrency``
    visitors at a time; ``progress(requests_done)`` after each request. Never raises for
    an HTTP failure: they are counted in ``failed`` (the first few kept in ``errors``).

    Example::

        result = send_traffic(plan_traffic(50, page_url=url), url, concurrency=8)
        print(result.sent, result.failed, f"{result.seconds:.1f} s")
    """
    endpoint = app_url.rstrip("/") + "/api/event"
    lock = threading.Lock()
    state = {"sent": 0, "failed": 0}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.monotonic()

    def visit(visitor: VisitorPlan) -> None:
        for number, session in enumerate(visitor.sessions):
            if number:
                time.sleep(visitor.return_after)
            for request in session:
                if request.pause:
                    time.sleep(request.pause)
                body = json.dumps(request.payload, separators=(",", ":"))
                failure = ""
                try:
                    answer = http.post(endpoint, content=body, headers=visitor.headers)
                    if answer.status_code >= 300:
                        failure = f"HTTP {answer.status_code} from {endpoint}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__} from {endpoint}: {exc}"
                with lock:
                    state["sent"] += 1
                    if failure:
                        state["failed"] += 1
                        if len(errors) < 5:
                            errors.append(failure)
                    done = state["sent"]
                if progress is not None:
                    progress(done)

    with (
        httpx.Client(timeout=timeout, limits=limits) as http,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="skopos-visitor") as pool,
    ):
        for future in [pool.submit(visit, visitor) for visitor in plan.visitors]:
            future.result()
    return TrafficResult(state["sent"], state["failed"], time.monotonic() - started, errors)
