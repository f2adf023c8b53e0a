"""Sessions as the Skopos Dashboard reads them: durations against the truth, and the
PocketBase requests it costs to decide them, against a real PocketBase.

1. **Durations.** The dashboard's session duration is ``updated - created`` (PocketBase
   stamps both at commit). 20 visitors each view three pages 3 s apart (true duration
   6 s) while background visitors keep the site busy (a page view every 100 ms); each
   session's duration is read back and compared with 6 s. Reference: the truth, known by
   construction. Targets: every error within 1 s with ``batch=False``, within
   ``batch_interval`` (2 s here) with ``batch=True``; no session with ``updated`` before
   ``created``.
2. **Requests on a returning-visitor trace.** 1,000 visitors, 3 events a visit, two visits
   3 s apart with ``session_timeout=2``: every second visit opens a new session of a visitor
   the SDK knows. PocketBase requests the SDK made (PocketBase's own request log), per 1,000
   events. Target: <= 20. The sessions must come out exact: 2,000.

    .venv/bin/python bench/sessions.py        # ~1 minute
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LocalPocketBase,
    as_beacon,
    client_ip,
    environ,
    machine_line,
    page_payload,
    sdk_requests,
    user_agent,
    verdict,
)

from skopos import SkoposSDK
from skopos._pocketbase.dates import parse_pb_date
from skopos._pocketbase.filter import pb_filter

TRUE_DURATION = 6.0
PAGES = ("/", "/pricing", "/signup")
TARGET_REQUESTS = 20.0


def start_sdk(pb: LocalPocketBase, site: Any, **options: Any) -> SkoposSDK:
    return SkoposSDK.init(
        pocketbase_url=pb.url,
        site_id=site.tracking_id,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        realtime=False,
        **options,
    )


def sessions_of(pb: LocalPocketBase, site_id: str) -> list[dict[str, Any]]:
    return list(
        pb.client.iter_records(
            "sessions",
            filter=pb_filter("website = {:w}", w=site_id),
            fields="id,visitor,created,updated",
        )
    )


def durations(pb: LocalPocketBase, batch: bool, visitors: int) -> dict[str, Any]:
    """Sessions of ``visitors`` measured visitors while background visitors keep sending."""
    tag = uuid.uuid4().hex[:8]
    domain = f"durations-{tag}.bench.example.com"
    site = pb.website(f"durations {tag}", domain)
    options: dict[str, Any] = {"batch": True, "batch_interval": 2.0} if batch else {}
    sdk = start_sdk(pb, site, **options)
    salt = int(tag, 16) % 1_000_000 * 1000
    stop = threading.Event()

    def background() -> None:
        step = 0
        while not stop.wait(0.1):
            visitor = 900 + step % 10  # 10 background visitors, a page view each 100 ms
            env = environ(client_ip(salt + visitor), user_agent(visitor % 400))
            sdk.track_api_event(env, as_beacon(page_payload(PAGES[step % 3], domain)))
            step += 1

    def visit(visitor: int, delay: float) -> None:
        time.sleep(delay)
        env = environ(client_ip(salt + visitor), user_agent(visitor % 400))
        for index, path in enumerate(PAGES):
            if index:
                time.sleep(TRUE_DURATION / (len(PAGES) - 1))
            sdk.track_api_event(env, as_beacon(page_payload(path, domain)))

    noise = threading.Thread(target=background, daemon=True)
    noise.start()
    try:
        time.sleep(1.0)
        threads = [
            threading.Thread(target=visit, args=(v, v * 0.1), daemon=True) for v in range(visitors)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(3.0)  # the background goes on past the last page view
    finally:
        stop.set()
        noise.join()
        assert sdk.flush(60)
        sdk.shutdown(10)
    records = sessions_of(pb, site.id)
    spans = {r["id"]: parse_pb_date(r["updated"]) - parse_pb_date(r["created"]) for r in records}
    negative = sum(1 for span in spans.values() if span < 0)
    measured = _measured_sessions(pb, site.id, len(PAGES))
    errors = [spans[session] - TRUE_DURATION for session in measured]
    return {"errors": errors, "negative": negative, "sessions": len(records)}


def _measured_sessions(pb: LocalPocketBase, site_id: str, pages: int) -> list[str]:
    """Sessions with exactly ``pages`` events: the measured visitors' (background visitors
    view a page every second for the whole run, so theirs hold more)."""
    counts: dict[str, int] = {}
    for event in pb.client.iter_records(
        "events", filter=pb_filter("session.website = {:w}", w=site_id), fields="session"
    ):
        counts[event["session"]] = counts.get(event["session"], 0) + 1
    return [session for session, count in counts.items() if count == pages]


def returning_visitors(pb: LocalPocketBase, batch: bool, visitors: int) -> dict[str, Any]:
    """Two visits per visitor, a session timeout apart: PocketBase requests per 1,000 events."""
    tag = uuid.uuid4().hex[:8]
    domain = f"returning-{tag}.bench.example.com"
    site = pb.website(f"returning {tag}", domain)
    sdk = start_sdk(pb, site, session_timeout=2.0, batch=batch)
    salt = int(tag, 16) % 1_000_000 * 1000
    envs = [environ(client_ip(salt + v), user_agent(v % 400)) for v in range(visitors)]
    bodies = [as_beacon(page_payload(path, domain)) for path in PAGES]
    sent = 0
    try:
        started = time.time()
        for visit in range(2):
            if visit:
                time.sleep(3.0)  # past the 2 s session timeout
            for body in bodies:
                for env in envs:
                    sdk.track_api_event(env, body)
                    sent += 1
            assert sdk.flush(120)
        finished = time.time()
        stats = sdk.stats()
    finally:
        sdk.shutdown(10)
    requests = sdk_requests(pb, started - 0.5, finished + 0.5)
    sessions = len(sessions_of(pb, site.id))
    return {
        "events": sent,
        "written": stats.written,
        "requests": requests,
        "per_1000": requests["all"] * 1000 / sent,
        "sessions": sessions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=20, help="measured visitors (part 1)")
    parser.add_argument("--returning", type=int, default=1000, help="visitors (part 2)")
    args = parser.parse_args()
    print(f"sessions: {machine_line()}")
    failures = 0
    with LocalPocketBase() as pb:
        print(f"PocketBase at {pb.url}")
        for batch, allowance in ((False, 1.0), (True, 2.0)):
            run = durations(pb, batch, args.visitors)
            errors = run["errors"]
            worst = max((abs(e) for e in errors), default=float("inf"))
            ok = len(errors) == args.visitors and worst <= allowance and not run["negative"]
            failures += not ok
            print(
                f"  batch={batch}: {len(errors)} measured sessions of {run['sessions']};"
                f" duration - truth: median {statistics.median(errors):+.2f} s,"
                f" min {min(errors):+.2f} s, max {max(errors):+.2f} s;"
                f" sessions with updated before created: {run['negative']}"
            )
            print(
                f"RESULT sessions durations batch={batch}: worst error {worst:.2f} s, ratio"
                f" {worst / allowance:.2f} of the allowance {allowance:.0f} s"
                f" (target <= 1.00, none negative): {verdict(ok)}"
            )
        for batch in (False, True):
            run = returning_visitors(pb, batch, args.returning)
            expected = 2 * args.returning
            ok = (
                run["per_1000"] <= TARGET_REQUESTS
                and run["sessions"] == expected
                and run["written"] == run["events"]
            )
            failures += not ok
            counts = run["requests"]
            print(
                f"  batch={batch}: {run['events']} events, {run['written']} written,"
                f" {run['sessions']} sessions (expected {expected}); PocketBase requests"
                f" {counts['all']}: batch {counts['batch']}, visitors {counts['visitors']},"
                f" sessions {counts['sessions']}"
            )
            print(
                f"RESULT sessions returning batch={batch}: {run['per_1000']:.1f} PocketBase"
                f" requests per 1,000 events, ratio {run['per_1000'] / TARGET_REQUESTS:.2f}"
                f" of the target {TARGET_REQUESTS:.0f} (target <= 1.00, sessions exact):"
                f" {verdict(ok)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
