"""Ingest throughput: events/s from SDK calls into a real PocketBase, until ``flush()`` returns.

Two traffic mixes, each event a realistic sendBeacon body on a realistic WSGI environ:

- ``warm``: few visitors, many events. 20 visitors (caches warm, sessions open) send 10,000
  events (page views and custom events) → per event one ``events`` create, plus one session
  touch (``exitPath``, ``lastActivity``) per visitor per write.
- ``warm200``: 200 warm visitors send 20,000 events, with ``batch=True`` at a 0.5 s
  interval and 500 calls a batch (for ``batch=True``; ``batch=False`` as usual): the mix
  where each batch touches up to 200 sessions.
- ``new``: every visitor new, 5 events each (4 page views, 1 custom), 100 visitors active at a
  time → per visitor one ``visitors`` + one ``sessions`` + 5 ``events`` creates.

Reference, in the same run against the same PocketBase: PocketBase's own batch-insert ceiling
for the same record mix, with the records built ahead of time and sent by one thread through
``PocketBaseClient.batch`` in transactions of 1,000 requests (``batch.maxRequests`` as ``skopos
setup`` configures it) — what a perfect writer with zero per-event work would get. Each round
measures reference, SDK ``batch=False``, SDK ``batch=True`` (defaults: ``max_batch_size`` 100),
then the reference again; each SDK run is divided by the mean of its round's two references
(paired: the machine's drift over a run cancels), and the verdict is the median of those
ratios. The medians over all rounds are printed too.

    .venv/bin/python bench/ingest.py              # ~1-2 minutes
    .venv/bin/python bench/ingest.py --profile    # + py-spy profile of the worker (new mix)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PATHS,
    LocalPocketBase,
    PySpy,
    as_beacon,
    client_ip,
    cpu_seconds,
    custom_payload,
    environ,
    machine_line,
    page_payload,
    user_agent,
    verdict,
)

from skopos import SkoposSDK
from skopos._pocketbase.client import BatchRequest
from skopos._pocketbase.dates import pb_date
from skopos._tracking.identity import derive_record_id, random_record_id

TARGET_RATIO = 0.8
CHUNK = 1000  # requests per reference transaction


@dataclass
class Mix:
    name: str
    visitors: int
    events_per_visitor: int
    active: int  # visitors interleaved at a time
    batch_options: dict[str, Any] = field(default_factory=dict)  # with batch=True

    @property
    def warm(self) -> bool:
        return self.name.startswith("warm")

    @property
    def events_per_write(self) -> int:
        """Events per transaction of the reference: as many as the SDK's batches hold."""
        return int(self.batch_options.get("max_batch_size", CHUNK - self.visitors))

    @property
    def events(self) -> int:
        return self.visitors * self.events_per_visitor


def event_payload(step: int, domain: str) -> dict[str, Any]:
    if step % 5 == 2:
        return custom_payload(PATHS[step % len(PATHS)], "signup-click", domain)
    return page_payload(PATHS[step % len(PATHS)], domain)


def sdk_calls(mix: Mix, domain: str, salt: int) -> Iterator[tuple[dict[str, Any], bytes]]:
    """The (environ, body) of every call, visitors interleaved ``mix.active`` at a time."""
    bodies = [as_beacon(event_payload(step, domain)) for step in range(mix.events_per_visitor)]
    for first in range(0, mix.visitors, mix.active):
        group = range(first, min(first + mix.active, mix.visitors))
        envs = {v: environ(client_ip(salt + v), user_agent(v % 400)) for v in group}
        for step in range(mix.events_per_visitor):
            for visitor in group:
                yield envs[visitor], bodies[step]


# -- the reference: raw batches ------------------------------------------------------------


def _event(session: str, step: int) -> dict[str, Any]:
    custom = step % 5 == 2
    return {
        "id": random_record_id(),
        "session": session,
        "type": "custom" if custom else "pageView",
        "path": PATHS[step % len(PATHS)],
        "eventName": "signup-click" if custom else "",
        "eventData": {"plan": "pro", "step": 2} if custom else None,
    }


def _visitor_records(site: str, visitor_id: str) -> tuple[str, str, list[BatchRequest]]:
    vid = derive_record_id("visitor", site, visitor_id)
    sid = derive_record_id("session", vid, "")
    requests = [
        BatchRequest.create("visitors", {"id": vid, "website": site, "visitorId": visitor_id}),
        BatchRequest.create(
            "sessions",
            {
                "id": sid,
                "website": site,
                "visitor": vid,
                "entryPath": "/",
                "exitPath": "/",
                "referrer": "",
                "browser": "Chrome",
                "os": "Windows",
                "device": "desktop",
                "screenWidth": "1920",
                "screenHeight": "1080",
                "language": "en-US",
                "isNewVisitor": True,
            },
        ),
    ]
    return vid, sid, requests


def reference_chunks(mix: Mix, site: str) -> tuple[list[list[BatchRequest]], list[BatchRequest]]:
    """(timed transactions, untimed setup) with the same records the SDK writes."""
    setup: list[BatchRequest] = []
    chunks: list[list[BatchRequest]] = []
    if mix.warm:
        sessions = []
        for _ in range(mix.visitors):
            _, sid, requests = _visitor_records(site, uuid.uuid4().hex)
            setup.extend(requests)
            sessions.append(sid)
        events = [(sessions[i % len(sessions)], i) for i in range(mix.events)]
        per_chunk = mix.events_per_write  # and each write touches every live session
        touch = {"exitPath": "/about", "lastActivity": pb_date(time.time())}
        for start in range(0, len(events), per_chunk):
            chunk = [
                BatchRequest.create("events", _event(s, i))
                for s, i in events[start : start + per_chunk]
            ]
            chunk += [BatchRequest.update("sessions", s, touch) for s in sessions]
            chunks.append(chunk)
        return chunks, setup
    chunk = []
    per_visitor = 2 + mix.events_per_visitor
    for _ in range(mix.visitors):
        _, sid, requests = _visitor_records(site, uuid.uuid4().hex)
        requests += [
            BatchRequest.create("events", _event(sid, step))
            for step in range(mix.events_per_visitor)
        ]
        if len(chunk) + per_visitor > CHUNK:
            chunks.append(chunk)
            chunk = []
        chunk.extend(requests)
    if chunk:
        chunks.append(chunk)
    return chunks, setup


def run_reference(pb: LocalPocketBase, mix: Mix, label: str) -> dict[str, float]:
    site = pb.website(f"ingest ref {label}", f"ref-{label}.bench.example.com")
    chunks, setup = reference_chunks(mix, site.id)
    if setup:
        pb.client.batch(setup)
    pb_cpu = cpu_seconds(pb.pid)
    started = time.perf_counter()
    for chunk in chunks:
        pb.client.batch(chunk)
    elapsed = time.perf_counter() - started
    records = sum(len(c) for c in chunks)
    return {
        "events_per_s": mix.events / elapsed,
        "seconds": elapsed,
        "records": records,
        "requests": len(chunks),
        "pb_cpu_ms_per_record": (cpu_seconds(pb.pid) - pb_cpu) * 1000 / records,
    }


# -- the SDK --------------------------------------------------------------------------------


def feed(sdk: SkoposSDK, calls: Iterator[tuple[dict[str, Any], bytes]]) -> int:
    """Call ``track_api_event`` for every call, pausing while the queue is nearly full."""
    count = 0
    limit = sdk.options.max_queue_size * 8 // 10
    for request, body in calls:
        sdk.track_api_event(request, body)
        count += 1
        if count % 500 == 0:
            while sdk.stats().queue_depth > limit:
                time.sleep(0.002)
    return count


def run_sdk(
    pb: LocalPocketBase, mix: Mix, batch: bool, label: str, profile: bool = False
) -> dict[str, Any]:
    domain = f"sdk-{label}.bench.example.com"
    site = pb.website(f"ingest sdk {label}", domain)
    sdk = SkoposSDK.init(
        pocketbase_url=pb.url,
        site_id=site.tracking_id,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        batch=batch,
        realtime=False,
        **(mix.batch_options if batch else {}),
    )
    salt = hash(label) % 1_000_000 * 1000
    try:
        if mix.warm:  # open every session first: the caches are warm
            for visitor in range(mix.visitors):
                env = environ(client_ip(salt + visitor), user_agent(visitor % 400))
                sdk.track_api_event(env, as_beacon(page_payload("/", domain)))
            assert sdk.flush(60)
        before = sdk.stats()
        with contextlib.ExitStack() as stack:
            spy = stack.enter_context(PySpy()) if profile else None
            pb_cpu = cpu_seconds(pb.pid)
            own_cpu = time.process_time()
            started = time.perf_counter()
            calls = feed(sdk, sdk_calls(mix, domain, salt))
            done = sdk.flush(120)
            elapsed = time.perf_counter() - started
            own_cpu = time.process_time() - own_cpu
            pb_cpu = cpu_seconds(pb.pid) - pb_cpu
            stats = sdk.stats()
    finally:
        sdk.shutdown(30)
    written = stats.written - before.written
    records = {k: v - before.records.get(k, 0) for k, v in stats.records.items()}
    ok = done and written == calls and not stats.dropped
    result: dict[str, Any] = {
        "events_per_s": calls / elapsed,
        "seconds": elapsed,
        "ok": ok,
        "written": written,
        "dropped": dict(stats.dropped),
        "records": records,
        "pb_cpu_ms_per_event": pb_cpu * 1000 / calls,
        "sdk_cpu_ms_per_event": own_cpu * 1000 / calls,
    }
    if spy is not None:
        result["profile"] = spy.report("skopos-worker") + "\n" + spy.report("MainThread", 8)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile the worker (new mix)")
    parser.add_argument("--mix", choices=("warm", "warm200", "new", "all"), default="all")
    args = parser.parse_args()
    mixes = [
        Mix("warm", 20, 500, 20),
        Mix("warm200", 200, 100, 200, {"batch_interval": 0.5, "max_batch_size": 500}),
        Mix("new", 1500, 5, 100),
    ]
    if args.mix != "all":
        mixes = [m for m in mixes if m.name == args.mix]
    print(f"ingest: {machine_line()}")
    failures = 0
    with LocalPocketBase() as pb:
        print(f"PocketBase 0.40.6 at {pb.url}, batch.maxRequests 1000")
        for mix in mixes:
            print(
                f"\nmix {mix.name}: {mix.visitors} visitors x {mix.events_per_visitor} events"
                f" = {mix.events} events"
            )
            refs: list[float] = []
            sdk_runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            # Each SDK run against the mean of its own round's references (before and after):
            # the machine's slow drifts cancel, which the medians over all rounds do not.
            paired: dict[bool, list[float]] = {False: [], True: []}
            for r in range(args.rounds):
                tag = f"{mix.name}{r}{uuid.uuid4().hex[:6]}"
                ref = run_reference(pb, mix, tag + "a")
                refs.append(ref["events_per_s"])
                print(
                    f"  reference raw batches: {ref['events_per_s']:8.0f} events/s"
                    f" ({ref['records']} records in {ref['requests']} transactions,"
                    f" {ref['seconds']:.2f} s, PocketBase {ref['pb_cpu_ms_per_record']:.3f}"
                    " ms CPU/record)"
                )
                for batch in (False, True):
                    run = run_sdk(pb, mix, batch, f"{tag}{int(batch)}")
                    sdk_runs[batch].append(run)
                    print(
                        f"  SDK batch={batch!s:<5}       : {run['events_per_s']:8.0f} events/s"
                        f" ({run['seconds']:.2f} s, records {run['records']},"
                        f" all written {run['ok']}, dropped {run['dropped']};"
                        f" CPU/event: SDK process {run['sdk_cpu_ms_per_event']:.3f} ms,"
                        f" PocketBase {run['pb_cpu_ms_per_event']:.3f} ms)"
                    )
                ref = run_reference(pb, mix, tag + "b")
                refs.append(ref["events_per_s"])
                print(f"  reference raw batches: {ref['events_per_s']:8.0f} events/s")
                round_ceiling = (refs[-2] + refs[-1]) / 2
                for batch in (False, True):
                    paired[batch].append(sdk_runs[batch][-1]["events_per_s"] / round_ceiling)
            ceiling = statistics.median(refs)
            for batch in (False, True):
                rate = statistics.median(r["events_per_s"] for r in sdk_runs[batch])
                ratio = statistics.median(paired[batch])
                ok = ratio >= TARGET_RATIO and all(r["ok"] for r in sdk_runs[batch])
                failures += not ok
                print(
                    f"RESULT ingest {mix.name} batch={batch}: {rate:.0f} events/s vs ceiling"
                    f" {ceiling:.0f} events/s (medians of all rounds: {rate / ceiling:.2f});"
                    f" ratio {ratio:.2f}, median of {args.rounds} rounds each against its own"
                    f" references ({min(paired[batch]):.2f}-{max(paired[batch]):.2f})"
                    f" (target >= {TARGET_RATIO}): {verdict(ok)}"
                )
        if args.profile:
            mix = next(m for m in mixes if m.name == "new") if len(mixes) > 1 else mixes[0]
            run = run_sdk(pb, mix, False, f"profile{uuid.uuid4().hex[:6]}", profile=True)
            print(f"\nprofile of the SDK process, mix {mix.name}, batch=False:")
            print(run["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
