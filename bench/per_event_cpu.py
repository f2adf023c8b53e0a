"""Per-event CPU of the hot paths: the working tree against another revision, in the same run.

Microbenchmarks (``timeit``, best of ``--repeat``) of what runs once per tracking call: on the
request thread (``track_api_event`` as a whole, with raw and parsed bodies; ASGI and WSGI
snapshots, ``WorkQueue.put``) and in the worker (payload validation, host checks, client
IP, ids, and ``Pipeline.prepare`` as a whole over 1,000 returning visitors, with and without
an IP blacklist, and for the official client script's ``/collect`` page views in trees that
have it). ``track_api_event`` runs against the no-op PocketBase of ``_common``, its worker
stopped after ``init`` so that only the call is timed: with a short queue, and behind a
backlog of 100 queued calls.
``git archive REV src`` is unpacked into a temporary directory, and one child process per
source tree runs every item; the two trees alternate for ``--rounds`` rounds and the best of
each is kept, so both see the same noise of a shared machine. The worker's items need no
server: the site rules come from a stub registry.

    .venv/bin/python bench/per_event_cpu.py --against 40d116d   # ~20 s
    .venv/bin/python bench/per_event_cpu.py --against /some/other/src
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    DOMAIN,
    PATHS,
    NoopPocketBase,
    as_beacon,
    as_collect,
    client_ip,
    collect_body,
    environ,
    machine_line,
    page_payload,
    user_agent,
)
from _common import scope as asgi_scope

ROOT = Path(__file__).resolve().parent.parent
VISITORS = 1000


def _first_module(*names: str) -> Any:
    """The first of ``names`` that imports."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"none of {names} in this tree")


def measure(repeat: int) -> dict[str, float]:
    """Microseconds per call of every item, with whichever ``skopos`` is on sys.path."""
    from skopos._queue import WorkQueue

    # This tree's module names, or (--against an older revision) the flat layout before them.
    snapshot = _first_module("skopos._tracking.snapshot", "skopos._snapshot")
    TrackCall = _first_module("skopos._tracking.activity", "skopos._activity").TrackCall
    client_ips = _first_module("skopos._tracking.client_ip", "skopos._client_ip")
    TrustedProxies, resolve_client_ip = client_ips.TrustedProxies, client_ips.resolve_client_ip
    identity = _first_module("skopos._tracking.identity", "skopos._identity")
    VisitorHasher, derive_record_id = identity.VisitorHasher, identity.derive_record_id
    random_record_id = identity.random_record_id
    hosts = _first_module("skopos._tracking.hosts", "skopos._payload")
    host_matches_domain, is_localhost = hosts.host_matches_domain, hosts.is_localhost
    validate_payload = _first_module("skopos._tracking.payload", "skopos._payload").validate_payload
    Pipeline = _first_module("skopos._tracking.pipeline", "skopos._pipeline").Pipeline
    SiteRules = _first_module("skopos._tracking.site_rules", "skopos._site_rules").SiteRules

    # capture_request since 2026-12-02; older trees (--against) snapshot on the request thread.
    capture: Any = getattr(snapshot, "capture_request", snapshot.take_snapshot)
    take_snapshot = snapshot.take_snapshot

    def best(function: Callable[[], object], number: int = 2000) -> float:
        return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6

    class Sites:
        def __init__(self, rules: Any) -> None:
            self.rules = rules

        def get(self, tracking_id: str) -> Any:
            return self.rules

    def cycle(pipeline: Any, calls: list[Any]) -> Callable[[], object]:
        state = [0]

        def run() -> object:
            index = state[0]
            state[0] = (index + 1) % len(calls)
            return pipeline.prepare(calls[index])

        return run

    record = {"id": "benchsite000001", "trackingId": "bench", "domain": DOMAIN}
    site = SiteRules.from_record(record)
    listed = SiteRules.from_record({**record, "ipBlacklist": ["10.0.0.0/8", "203.0.113.7"]})
    calls = [
        TrackCall(
            "api",
            "bench",
            capture(asgi_scope(client_ip(i), user_agent(i))),
            as_beacon(page_payload(PATHS[i % len(PATHS)])),
        )
        for i in range(VISITORS)
    ]
    hasher = VisitorHasher(b"bench-salt" * 4)
    # A stub registry: Pipeline only calls .get (SiteRegistry's other methods need a server).
    stub: Any = Sites
    plain, blacklisted = Pipeline(stub(site), hasher), Pipeline(stub(listed), hasher)
    for pipeline in (plain, blacklisted):
        pipeline.warm_up()
        for call in calls:  # returning visitors: user-agent and bot caches warm
            pipeline.prepare(call)

    collect: dict[str, float] = {}
    if importlib.util.find_spec("skopos._tracking.collect_activities") is not None:
        # The official script's page views (/collect), on the same requests: trees since #17.
        collect_calls = []
        for i in range(VISITORS):
            body = collect_body(PATHS[i % len(PATHS)], "bench")
            request = as_collect(asgi_scope(client_ip(i), user_agent(i), body=body), body)
            collect_calls.append(TrackCall("collect", "bench", capture(request), body))
        collecting = Pipeline(stub(site), hasher, collect_sites=["bench"])
        for call in collect_calls:
            collecting.prepare(call)
        collect["worker: Pipeline.prepare, /collect page view (1,000 visitors)"] = best(
            cycle(collecting, collect_calls)
        )

    scope = asgi_scope(client_ip(7), user_agent(7))
    wsgi = environ(client_ip(7), user_agent(7))
    queue: WorkQueue[int] = WorkQueue(10**9)
    body = as_beacon(page_payload("/pricing"))
    peer, trusted = client_ip(7), TrustedProxies()
    agent = user_agent(7)
    calls_items = _track_calls(scope, wsgi, body, page_payload("/pricing"), repeat)
    return {
        **calls_items,
        "request: capture (ASGI scope, 16 headers)": best(lambda: capture(scope)),
        "request: capture (WSGI environ)": best(lambda: capture(wsgi)),
        "capture + reduce to a snapshot (ASGI scope)": best(lambda: take_snapshot(scope)),
        "request: WorkQueue.put": best(lambda: queue.put(1), number=20000),
        "worker: validate_payload (beacon bytes)": best(lambda: validate_payload(body)),
        "worker: is_localhost": best(lambda: is_localhost(DOMAIN)),
        "worker: host_matches_domain": best(lambda: host_matches_domain(DOMAIN, DOMAIN)),
        "worker: host_matches_domain (subdomain)": best(
            lambda: host_matches_domain("www." + DOMAIN, DOMAIN)
        ),
        "worker: resolve_client_ip (no proxies)": best(
            lambda: resolve_client_ip(peer, {}, trusted)
        ),
        "worker: random_record_id": best(random_record_id),
        "worker: derive_record_id": best(lambda: derive_record_id("visitor", "s" * 15, "v" * 32)),
        "worker: VisitorHasher.visitor_id": best(lambda: hasher.visitor_id("s" * 15, peer, agent)),
        "worker: Pipeline.prepare (1,000 visitors)": best(cycle(plain, calls)),
        "worker: Pipeline.prepare (with a blacklist)": best(cycle(blacklisted, calls)),
        **collect,
    }


def _track_calls(
    scope: Any, wsgi: Any, body: bytes, parsed: dict[str, Any], repeat: int
) -> dict[str, float]:
    """``track_api_event`` as a whole, with the worker stopped: timed with a short queue (the
    worker keeping up: 50 calls after a drain) and behind a backlog (100 calls queued first),
    where a tree that measures what calls hold does so."""
    url = os.environ.get("SKOPOS_BENCH_POCKETBASE")
    if not url:
        return {}
    from skopos import SkoposSDK

    sdk = SkoposSDK.init(
        pocketbase_url=url,
        site_id=os.environ["SKOPOS_BENCH_SITE"],
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        realtime=False,
        max_queue_size=10_000_000,
    )
    runtime: Any = sdk._runtime
    runtime.worker.stop(1.0)
    runtime.worker.running = True  # what the call reads: no restart attempt per call

    def timed(call: Callable[[], object], backlog: int) -> float:
        def setup() -> None:
            runtime.queue.drain()
            for _ in range(backlog):
                call()

        runs = timeit.repeat(call, setup=setup, number=50, repeat=repeat * 40)
        return min(runs) / 50 * 1e6

    items: dict[str, float] = {}
    calls: list[tuple[str, Callable[[], object]]] = [
        ("ASGI scope, bytes", lambda: sdk.track_api_event(scope, body)),
        ("ASGI scope, dict", lambda: sdk.track_api_event(scope, parsed)),
        ("WSGI environ, bytes", lambda: sdk.track_api_event(wsgi, body)),
    ]
    for _ in range(2000):  # warm: every path taken, caches filled, before anything is timed
        for _, call in calls:
            call()
    runtime.queue.drain()
    for label, call in calls:
        items[f"request: track_api_event ({label})"] = timed(call, 0)
        items[f"request: track_api_event ({label}, backlog)"] = timed(call, 100)
    runtime.queue.drain()
    return items


def unpack(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_child(source: Path, repeat: int, pocketbase: NoopPocketBase) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(source),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SKOPOS_BENCH_POCKETBASE": pocketbase.url,
        "SKOPOS_BENCH_SITE": pocketbase.tracking_id,
        # Trees that have a byte budget for the queue: none that binds here.
        "SKOPOS_MAX_QUEUE_BYTES": str(1 << 36),
    }
    output = subprocess.run(
        [sys.executable, __file__, "--child", "--repeat", str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(output.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against", default="HEAD", help="git revision (or a src/ directory) to compare with"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=9, help="timeit repeats per round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeat)))
        return

    print(f"per_event_cpu: {machine_line()}")
    print(f"working tree vs {args.against}; {args.rounds} rounds, best of {args.repeat} each")
    with tempfile.TemporaryDirectory() as scratch, NoopPocketBase() as pocketbase:
        against = Path(args.against)
        if not against.is_dir():
            against = unpack(args.against, Path(scratch))
        trees = {"against": against, "tree": ROOT / "src"}
        best: dict[str, dict[str, float]] = {"against": {}, "tree": {}}
        for _ in range(args.rounds):
            for name, source in trees.items():
                for item, micros in run_child(source, args.repeat, pocketbase).items():
                    best[name][item] = min(micros, best[name].get(item, micros))
    width = max(len(item) for item in best["tree"])
    print(f"{'item':{width}}  {'against':>10}  {'tree':>8}  ratio   (µs per call)")
    for item, micros in best["tree"].items():
        before = best["against"].get(item)
        if before is None:
            print(f"{item:{width}}  {'-':>10}  {micros:8.2f}")
        else:
            print(f"{item:{width}}  {before:10.2f}  {micros:8.2f}  {micros / before:5.2f}")


if __name__ == "__main__":
    main()
