"""Report memory: peak RSS of ``skopos report`` over 1,000,000 events against 100,000.

Two websites in one real PocketBase: a reference site with ``--reference`` events (100,000)
and a big one with ``--events`` (1,000,000), filled fast with raw ``POST /api/batch``
transactions of 1,000 creates (not through the SDK): visitors, their sessions (two each)
and ``--events-per-session`` events per session (page views, custom events, page exits with
a duration), 200 distinct paths, 20 referrers. Then each site is reported by
``read_report`` (exactly what ``skopos report`` runs) in a fresh child process (reference,
big, reference again); the child prints its RSS after imports and login (base) and its peak
(``VmHWM``) after the report. Reading streams sessions by key and events per 100 sessions,
so the peak must not grow with the number of events; the child also samples its RSS at every
tenth of the sessions, so the big read shows its curve (a warm-up of a few MB over the first
~15,000 sessions, then flat).

    .venv/bin/python bench/report_memory.py                       # ~6-8 minutes here
    .venv/bin/python bench/report_memory.py --events 300000       # ~2-3 minutes

Filling is PocketBase's speed (~3,500-4,000 records/s on this 2-core machine), so the full
million takes longer than the five minutes other benchmarks keep to; ``--events`` trades
size for time.

RESULT: peak RSS of the big report / peak RSS of the reference report, target <= 1.10; and
the RSS over the second half of the big read within 3 MB (flat).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_EMAIL, ADMIN_PASSWORD, LocalPocketBase, machine_line, rss_mb, verdict

TARGET_RATIO = 1.10
FLAT_MB = 3.0
SESSIONS_PER_VISITOR = 2
_BROWSERS = ("Chrome", "Firefox", "Safari", "Edge", "Chrome Mobile", "Mobile Safari")
_OS = ("Windows", "macOS", "Linux", "Android", "iOS")
_REFERRERS = ("", "https://www.google.com/", *(f"https://site{n}.example/" for n in range(18)))


def peak_rss_mb() -> float:
    """The process's high-water mark of resident memory (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def records(
    site_id: str, prefix: str, events: int, per_session: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(collection, body) in dependency order: a visitor, its sessions, their events."""
    sessions = max(1, events // per_session)
    made = 0
    for s in range(sessions):
        visitor = f"{prefix}v{s // SESSIONS_PER_VISITOR:013d}"
        if s % SESSIONS_PER_VISITOR == 0:
            yield "visitors", {"id": visitor, "website": site_id, "visitorId": visitor}
        session = f"{prefix}s{s:013d}"
        yield (
            "sessions",
            {
                "id": session,
                "website": site_id,
                "visitor": visitor,
                "browser": _BROWSERS[s % len(_BROWSERS)],
                "os": _OS[s % len(_OS)],
                "device": "mobile" if s % 3 == 0 else "desktop",
                "language": ("en-US", "de-DE", "fr-FR")[s % 3],
                "country": ("DE", "US", "FR", "")[s % 4],
                "referrer": _REFERRERS[s % len(_REFERRERS)],
                "entryPath": f"/page/{s % 200}",
                "exitPath": f"/page/{(s + 1) % 200}",
                "isNewVisitor": s % SESSIONS_PER_VISITOR == 0,
            },
        )
        count = per_session if s < sessions - 1 else events - made
        for e in range(count):
            body: dict[str, Any] = {"id": f"{prefix}e{made:013d}", "session": session}
            if e % 5 == 4:
                body.update(type="custom", eventName="exit", eventData={"duration": e * 3})
            elif e % 5 == 3:
                body.update(type="custom", eventName="signup", eventData={"plan": "pro"})
            else:
                body.update(type="pageView", path=f"/page/{(s + e) % 200}")
            yield "events", body
            made += 1


def fill(pb: LocalPocketBase, site_id: str, prefix: str, events: int, per_session: int) -> float:
    """Write the site's records with 1,000-create transactions; returns records/s."""
    from skopos._pocketbase.client import BatchRequest

    started = time.monotonic()
    batch: list[BatchRequest] = []
    written = 0
    for collection, body in records(site_id, prefix, events, per_session):
        batch.append(BatchRequest.create(collection, body))
        if len(batch) == 1000:
            pb.client.batch(batch)
            written += len(batch)
            batch = []
            if written % 100_000 == 0:
                rate = written / (time.monotonic() - started)
                print(f"  {prefix}: {written:,} records, {rate:,.0f}/s", flush=True)
    pb.client.batch(batch)
    written += len(batch)
    return written / (time.monotonic() - started)


def read_child(url: str, tracking_id: str) -> dict[str, Any]:
    """``read_report`` in a fresh process; its base and peak RSS and what it counted."""
    result = subprocess.run(
        [sys.executable, __file__, "--read", url, tracking_id],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def child(url: str, tracking_id: str) -> int:
    from skopos._admin.report import Period, find_site, read_report
    from skopos._pocketbase.client import PocketBaseClient

    with PocketBaseClient(url, ADMIN_EMAIL, ADMIN_PASSWORD, timeout=120) as client:
        client.authenticate()
        site = find_site(client, tracking_id)
        base = rss_mb()
        samples: list[float] = []

        def progress(done: int, total: int) -> None:
            # RSS at every tenth of the sessions read: the curve, not just its peak.
            if total and done * 10 // total > len(samples) - 1:
                samples.append(round(rss_mb(), 1))

        started = time.monotonic()
        report = read_report(client, site, Period.last("24h"), progress=progress)
        seconds = time.monotonic() - started
    metrics = report.metrics
    print(
        json.dumps(
            {
                "base_mb": base,
                "peak_mb": peak_rss_mb(),
                "samples_mb": samples,
                "seconds": seconds,
                "sessions": metrics.visitors,
                "distinct_visitors": metrics.distinct_visitors,
                "page_views": metrics.page_views,
                "custom_events": sum(row.count for row in metrics.custom_events),
            }
        )
    )
    return 0


def expected_page_views(events: int, per_session: int) -> int:
    return sum(
        1 for _, body in records("x", "x", events, per_session) if body.get("type") == "pageView"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--events-per-session", type=int, default=8)
    parser.add_argument("--read", nargs=2, metavar=("URL", "TRACKING_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        return child(*args.read)

    print(f"report memory: {machine_line()}")
    per_session = args.events_per_session
    with LocalPocketBase() as pb:
        sites = {
            "reference": (pb.website("reference", "reference.example.com"), args.reference, "r"),
            "big": (pb.website("big", "big.example.com"), args.events, "b"),
        }
        for name, (site, events, prefix) in sites.items():
            sessions = max(1, events // per_session)
            print(
                f"filling {name}: {events:,} events in {sessions:,} sessions of"
                f" {sessions // SESSIONS_PER_VISITOR:,} visitors"
            )
            rate = fill(pb, site.id, prefix, events, per_session)
            print(f"  {name} filled at {rate:,.0f} records/s")
        print(
            f"{'site':>10}{'events':>11}{'base MB':>9}{'peak MB':>9}{'seconds':>9}{'events/s':>10}"
        )
        results: dict[str, list[dict[str, Any]]] = {"reference": [], "big": []}
        for name in ("reference", "big", "reference"):
            site, events, _ = sites[name]
            data = read_child(pb.url, site.tracking_id)
            results[name].append(data)
            print(
                f"{name:>10}{events:>11,}{data['base_mb']:>9.1f}{data['peak_mb']:>9.1f}"
                f"{data['seconds']:>9.1f}{events / data['seconds']:>10,.0f}"
            )
    for name, (_, events, _) in sites.items():
        want = expected_page_views(events, per_session)
        got = {run["page_views"] for run in results[name]}
        if got != {want}:
            print(f"WRONG: {name} reported page views {got}, expected {want}")
            return 1
    reference = min(run["peak_mb"] for run in results["reference"])
    big = min(run["peak_mb"] for run in results["big"])
    growth = big - reference
    ratio = big / reference
    curve = results["big"][0]["samples_mb"]
    half = curve[len(curve) // 2 :]
    spread = max(half) - min(half)
    print(f"RSS while reading the big site, at every tenth of its sessions (MB): {curve}")
    print(
        f"page views as written: reference {results['reference'][0]['page_views']:,}, big"
        f" {results['big'][0]['page_views']:,}"
    )
    print(
        f"RESULT report memory: peak RSS {big:.1f} MB for {args.events:,} events vs"
        f" {reference:.1f} MB for {args.reference:,} ({growth:+.1f} MB), ratio {ratio:.3f}"
        f" (target <= {TARGET_RATIO:.2f}); second half of the big read within {spread:.1f} MB"
        f" (target <= {FLAT_MB:.0f} MB): {verdict(ratio <= TARGET_RATIO and spread <= FLAT_MB)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
