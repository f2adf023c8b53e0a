"""Memory: the SDK's resident set size as 1,000,000 visitors' events flow through it.

Default settings (``batch=False``, default caches and queue). PocketBase writes go to the
no-op PocketBase of ``_common.py`` (a separate process that answers lookups with "nothing
found" and acknowledges every batch), so a million events take minutes and only the SDK's own
memory is measured. Every event is a realistic sendBeacon body (4 page views to 1 custom event
with ``customData``) on a realistic WSGI environ; 95% of visitors share 300 popular user
agents and 5% come from a long tail of 20,000, so the user-agent and bot caches (2,048 each)
churn too.

- default: 1,000,000 distinct visitors, one event each (so also 1,000,000 events): every
  visitor is new, which fills the visitor cache (100,000) and the session cache (50,000).
- ``--events-per-visitor 5``: 1,000,000 events from 200,000 visitors, 5 each, 100 visitors
  active at a time (sessions continue).

RSS is sampled every 100,000 events after the queue drained; the baseline is taken after
init and 20,000 warm-up events (imports done, worker running). Growth at the end must be
<= 100 MB and flat once the caches are full (last five samples within 10 MB).

    .venv/bin/python bench/memory.py                          # <= ~4.5 minutes
    .venv/bin/python bench/memory.py --events-per-visitor 5   # <= ~4.5 minutes
    .venv/bin/python bench/memory.py --max-seconds 900        # all 1,000,000 (~6-7 min here)

The feeding stops after ``--max-seconds`` (240) so one command stays under five minutes; on
this 2-core machine the SDK's worker handles ~2,600-3,100 new-visitor events/s against the
no-op PocketBase, so the default run covers ~650,000 events, well past the point where every
cache is full (100,000 visitors); ``--max-seconds 900`` runs the whole million.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PATHS,
    NoopPocketBase,
    as_beacon,
    client_ip,
    custom_payload,
    environ,
    machine_line,
    page_payload,
    rss_mb,
    user_agent,
    verdict,
)

from skopos import SkoposSDK

TARGET_GROWTH_MB = 100.0
FLAT_MB = 10.0
SAMPLE_EVERY = 100_000
AGENTS = 20_000


def calls(
    total: int, per_visitor: int, first_visitor: int
) -> Iterator[tuple[dict[str, Any], bytes]]:
    bodies = [
        as_beacon(custom_payload(PATHS[s % len(PATHS)], "signup-click"))
        if s % 5 == 4
        else as_beacon(page_payload(PATHS[s % len(PATHS)]))
        for s in range(5)
    ]
    active = 100 if per_visitor > 1 else 1
    visitor = first_visitor
    sent = 0
    while sent < total:
        group = range(visitor, visitor + active)
        envs = [environ(client_ip(v), agent_for(v)) for v in group]
        for step in range(per_visitor):
            for env in envs:
                yield env, bodies[(step if per_visitor > 1 else sent) % 5]
                sent += 1
                if sent >= total:
                    return
        visitor += active


def agent_for(visitor: int) -> str:
    """95% of visitors share 300 popular user agents; 5% come from a long tail of 20,000."""
    if visitor % 20 == 0:
        return user_agent(300 + (visitor // 20) % AGENTS)
    return user_agent(visitor % 300)


def feed(
    sdk: SkoposSDK,
    stream: Iterator[tuple[dict[str, Any], bytes]],
    count: int,
    deadline: float = float("inf"),
) -> int:
    """Send up to ``count`` calls (fewer if ``deadline`` passes); return how many were sent."""
    limit = sdk.options.max_queue_size * 8 // 10
    sent = 0
    for request, body in stream:
        sdk.track_api_event(request, body)
        sent += 1
        if sent >= count:
            break
        if sent % 500 == 0:
            while sdk.stats().queue_depth > limit:
                time.sleep(0.002)
            if time.monotonic() > deadline:
                break
    return sent


def cache_sizes() -> list[str]:
    """Every bounded cache of the SDK in this process, found by type name (no private paths)."""
    found = []
    for obj in gc.get_objects():
        module = type(obj).__module__ or ""
        if not module.startswith("skopos"):
            continue
        bound = getattr(obj, "capacity", None) or getattr(obj, "maxsize", None)
        if isinstance(bound, int) and hasattr(obj, "__len__"):
            found.append(f"{module}.{type(obj).__name__} {len(obj)}/{bound}")
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-per-visitor", type=int, default=1, choices=(1, 5))
    parser.add_argument("--max-seconds", type=float, default=240.0, help="stop feeding after")
    args = parser.parse_args()

    print(f"memory: {machine_line()}")
    visitors = args.events // args.events_per_visitor
    print(
        f"{args.events} events from {visitors} distinct visitors"
        f" ({args.events_per_visitor} each), {300 + AGENTS} distinct user agents, default settings"
    )
    with NoopPocketBase() as noop:
        sdk = SkoposSDK.init(
            pocketbase_url=noop.url,
            site_id=noop.tracking_id,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            realtime=False,
        )
        try:
            feed(sdk, calls(20_000, args.events_per_visitor, 50_000_000), 20_000)
            sdk.flush(120)
            gc.collect()
            baseline = rss_mb()
            print(f"baseline RSS after init + 20,000 warm-up events: {baseline:.1f} MB")
            print(f"{'events':>10}{'RSS MB':>9}{'growth':>9}{'events/s':>10}")
            stream = calls(args.events, args.events_per_visitor, 0)
            samples: list[float] = []
            done = 0
            started = time.monotonic()
            deadline = started + args.max_seconds
            while done < args.events and time.monotonic() < deadline:
                t0 = time.monotonic()
                step = feed(sdk, stream, min(SAMPLE_EVERY, args.events - done), deadline)
                if not sdk.flush(60):
                    print("flush timed out")
                done += step
                rate = step / (time.monotonic() - t0)
                samples.append(rss_mb())
                print(f"{done:>10}{samples[-1]:>9.1f}{samples[-1] - baseline:>+9.1f}{rate:>10.0f}")
            elapsed = time.monotonic() - started
            stats = sdk.stats()
            print(f"caches at the end: {', '.join(cache_sizes())}")
            gc.collect()
            after_gc = rss_mb()
        finally:
            sdk.shutdown(30)
        counts = noop.counts()
    growth = samples[-1] - baseline
    tail = samples[-5:]
    flat = max(tail) - min(tail)
    if done < args.events:
        print(f"TIME BUDGET: stopped after {done} of {args.events} events (--max-seconds)")
    print(
        f"{done} events in {elapsed:.0f} s; accepted {stats.accepted}, written"
        f" {stats.written}, dropped {stats.dropped}; RSS after gc.collect() {after_gc:.1f} MB"
    )
    print(
        f"no-op PocketBase saw {counts['requests']} requests ({counts['batch_requests']} batches,"
        f" {counts['lookups']} lookups), records {counts['records']}"
    )
    flat_verdict = (
        f"last {len(tail)} samples within {flat:.1f} MB (flat: <= {FLAT_MB:.0f} MB):"
        f" {verdict(flat <= FLAT_MB)}"
        if len(tail) == 5
        else f"flatness not judged (only {len(tail)} samples; needs 5)"
    )
    print(
        f"RESULT memory growth {growth:+.1f} MB (target <= {TARGET_GROWTH_MB:.0f} MB):"
        f" {verdict(growth <= TARGET_GROWTH_MB)}; {flat_verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
