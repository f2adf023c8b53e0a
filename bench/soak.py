"""Soak: many events through injected faults; every one must land exactly once.

Run: .venv/bin/python bench/soak.py [EVENTS] [--spool]   (default 200,000; prints a JSON summary)
With ``--spool`` the SDK journals to a temporary ``spool_dir``.

A real PocketBase behind the fault proxy: every 7th batch's answer is lost after
the commit, every 11th batch gets a 500, and PocketBase itself is stopped for
3 s and restarted halfway. The producer paces itself on the queue depth (this
measures durability, not overload). At the end every event is read back.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# The fault proxy and request builders of the tests (tests/_support), from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skopos import SkoposSDK
from skopos._admin.embedded import EmbeddedPocketBase
from skopos._admin.setup import ensure_website, run_setup
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from tests._support.fault_proxy import FaultProxy
from tests._support.tracking_helpers import environ, page_view

EMAIL, PASSWORD = "soak@skopos.test", "soak-password-123"


def main(total: int, spool: bool) -> int:
    visitors = 2000
    batches = itertools.count(1)

    def plan(method: str, path: str, number: int) -> str:
        if path != "/api/batch":
            return "pass"
        n = next(batches)
        return "drop" if n % 7 == 0 else "error" if n % 11 == 0 else "pass"

    with tempfile.TemporaryDirectory() as data:
        spool_dir = Path(data) / "spool" if spool else None
        server = EmbeddedPocketBase(Path(data) / "pb", email=EMAIL, password=PASSWORD).start()
        try:
            with PocketBaseClient(server.url, EMAIL, PASSWORD) as admin:
                run_setup(admin)
                site = ensure_website(admin, "soak", "soak.example.test")
            with FaultProxy(server.url, plan) as proxy:
                sdk = SkoposSDK.init(
                    pocketbase_url=proxy.url,
                    site_id=site.tracking_id,
                    admin_email=EMAIL,
                    admin_password=PASSWORD,
                    realtime=False,
                    batch=True,
                    batch_interval=0.5,
                    max_batch_size=500,
                    spool_dir=spool_dir,
                )
                started = time.monotonic()
                restarted = False
                for n in range(total):
                    visitor = n % visitors
                    request = environ(f"10.{visitor // 250}.{visitor % 250}.1")
                    sdk.track_api_event(request, page_view(site.domain, f"/v{visitor}/{n}"))
                    if n % 1000 == 0:
                        while sdk.stats().queue_depth > 8000:
                            time.sleep(0.01)
                    if not restarted and n >= total // 2:
                        restarted = True
                        server.stop()
                        time.sleep(3)
                        server.start()
                flushed = sdk.flush(timeout=300)
                elapsed = time.monotonic() - started
                stats = sdk.stats()
                sdk.shutdown(timeout=30)
            with PocketBaseClient(server.url, EMAIL, PASSWORD) as admin:
                sessions = list(
                    admin.iter_records(
                        "sessions", filter=pb_filter("website = {:w}", w=site.id), fields="id"
                    )
                )
                paths: Counter[str] = Counter()
                for session in sessions:
                    for event in admin.iter_records(
                        "events",
                        filter=pb_filter("session = {:s}", s=session["id"]),
                        fields="path",
                        per_page=1000,
                    ):
                        paths[event["path"]] += 1
        finally:
            server.stop()
    expected = {f"/v{n % visitors}/{n}" for n in range(total)}
    summary = {
        "events_sent": total,
        "spool": spool,
        "flushed": flushed,
        "seconds": round(elapsed, 1),
        "events_per_second": round(total / elapsed),
        "events_in_pocketbase": sum(paths.values()),
        "lost": len(expected - set(paths)),
        "duplicated": sum(count - 1 for count in paths.values() if count > 1),
        "unexpected": len(set(paths) - expected),
        "sessions": len(sessions),
        "injected": dict(proxy.actions),
        "stats": {
            "accepted": stats.accepted,
            "written": stats.written,
            "dropped": stats.dropped,
            "retries": stats.retries,
            "spooled": stats.spooled,
        },
    }
    print(json.dumps(summary, indent=2))
    ok = flushed and summary["lost"] == summary["duplicated"] == summary["unexpected"] == 0
    return 0 if ok and stats.written == total and not stats.dropped else 1


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--spool"]
    sys.exit(main(int(arguments[0]) if arguments else 200_000, "--spool" in sys.argv[1:]))
