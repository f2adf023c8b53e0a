"""Memory under hostile but valid input, one holder at a time, in a fresh process:
``python -m tests._support.memory_probe SCENARIO`` prints ``{"growth": bytes, ...}``, the
resident set's growth while the scenario fills its holder as far as the SDK lets it.

- ``queue``: an SDK that cannot reach PocketBase (so nothing leaves the queue) is sent calls
  with 16 KiB bodies and 8 KiB headers, each call its own strings, until the queue refuses;
- ``sessions``: the sessionizer's cache is fed visitors whose exit paths are 2,048 bytes;
- ``errors``: the JS error groups are fed distinct errors with messages, stack traces and
  URLs at their bounds, in 4-byte characters, until the aggregator is ``full``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

from skopos._admin.embedded import free_port
from skopos._delivery.js_errors import ErrorAggregator
from skopos._delivery.sessions import Sessionizer
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.activity import Activity
from skopos._tracking.identity import derive_record_id
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules

SITE = SiteRules("site0000000000a", "track", "example.test", False, False, False, IpBlacklist(None))
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36"


def rss() -> int:
    """This process's resident set, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _queue() -> dict[str, Any]:
    from skopos import SkoposSDK

    sdk = SkoposSDK.init(
        pocketbase_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: never connected
        site_id="probe",
        admin_email="a@b.c",
        admin_password="x",
        realtime=False,
        handle_sigterm=False,
    )
    gc.collect()
    before = rss()
    calls = 0
    while not sdk.stats().dropped.get("queue_full") and calls < 12_000:
        tag = f"{calls:08d}"
        environ = {
            "REMOTE_ADDR": "203.0.113.9",
            "PATH_INFO": "/api/event",
            "HTTP_USER_AGENT": CHROME + "x" * 8192 + tag,
            "HTTP_ACCEPT_LANGUAGE": "en" + "x" * 8192 + tag,
            "HTTP_SEC_CH_UA": "x" * 8192 + tag,
            "HTTP_X_FORWARDED_FOR": "6.6.6.6, " * 900 + tag,
        }
        body = (b'{"type":"pageView","url":"https://example.test/' + tag.encode()).ljust(
            16 * 1024, b"x"
        )
        sdk.track_api_event(environ, body)
        calls += 1
    gc.collect()
    growth = rss() - before
    stats = sdk.stats()
    sdk.shutdown(timeout=0.1)
    return {"growth": growth, "calls": calls, "accepted": stats.accepted}


def _sessions() -> dict[str, Any]:
    client = PocketBaseClient("http://127.0.0.1:1", "a@b.c", "x")  # assign() does no I/O
    sessionizer = Sessionizer(client, session_timeout=1800.0)
    gc.collect()
    before = rss()
    for batch in range(60):
        activities = []
        for number in range(batch * 1000, batch * 1000 + 1000):
            visitor_id = f"{number:032x}"
            activities.append(
                Activity(
                    "pageView",
                    SITE,
                    visitor_id,
                    derive_record_id("visitor", SITE.record_id, visitor_id),
                    1_700_000_000.0,
                    path="/" + f"{number:08d}" + "x" * 2039,  # 2,048 characters, as allowed
                )
            )
        sessionizer.assign(activities)
        del activities
    gc.collect()
    return {"growth": rss() - before, "cached": len(sessionizer._sessions)}


def _errors() -> dict[str, Any]:
    errors = ErrorAggregator()
    gc.collect()
    before = rss()
    added = 0
    while not errors.full and added < 10_000:
        tag = f"{added:08d}"
        activity = Activity(
            "jsError",
            SITE,
            "0" * 32,
            "visitor00000000",
            1_700_000_000.0,
            url="https://example.test/" + tag + "x" * 2000,
            error_message=tag + "\U0001f600" * 990,  # 4 bytes a character in memory
            stack_trace=f"at f (app.js:{tag}:1)\n" + "\U0001f600" * 7970,
            session_id="session00000000",
        )
        errors.add(activity)
        added += 1
    gc.collect()
    return {"growth": rss() - before, "groups": added}


SCENARIOS = {"queue": _queue, "sessions": _sessions, "errors": _errors}


def probe(scenario: str) -> dict[str, Any]:
    """Run ``scenario`` in a fresh interpreter; what it printed."""
    import subprocess

    from tests._support.paths import ROOT, subprocess_env

    result = subprocess.run(
        [sys.executable, "-m", "tests._support.memory_probe", scenario],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
