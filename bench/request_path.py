"""Request-path cost: how long ``track_api_event`` takes to return, per call.

Times each call with ``time.perf_counter_ns`` over realistic browser requests (a gunicorn-like
WSGI environ and a uvicorn-like ASGI scope, each with the 16 headers Chrome sends with a
sendBeacon POST; 1,000 distinct visitors; raw ``bytes`` bodies as ``request.get_data()`` /
``await request.body()`` give them, and parsed ``dict`` bodies), while the SDK's worker is
running and writing. The reference is posthog-python's ``capture()`` with ``send=False``
(everything but the enqueue: property merging, uuid, timestamp, cleaning), timed the same way
in the same process, interleaved round by round with the Skopos calls so both see the same
machine noise. Two modes: ``busy`` (2,000 calls in a row while the worker processes them,
competing for the GIL), ``quiet`` (bursts of 100 calls, the worker idle when they start) and
``spread`` (an idle 0.5 ms before every call, as requests reach a real server: each Skopos call
then wakes the sleeping worker, and both libraries run with cold caches).

``/collect`` (the official client script's endpoint) must cost the request thread no more than
``/api/event``. The same run times both, call by call in alternation so that they see the same
worker and the same noise: ``track_collect`` with the body that script posts for a page view
(``{"_d": ..., "_v": 1}``, ``application/json``) against ``track_api_event`` with ours, on the
same browser's WSGI and ASGI requests, in the three modes; and whole requests through the WSGI
middleware (precheck, CORS, reading the body, queueing), ``POST /collect`` from the site's page
(answered with CORS headers) against ``POST /api/event`` (same origin, as ``skopos.js`` posts),
``busy`` and ``quiet``. It prints the collect/api ratios of the median and p99.

PocketBase: by default the worker writes to the no-op PocketBase of ``_common.py`` (a separate
process that acknowledges batches), so the numbers are the caller's cost with a worker that is
really validating, hashing, sessionizing and encoding batches in the same process (competing
for the GIL, as it would in a host app) without a real PocketBase taking one of the two cores.
``--pocketbase real`` runs the same against a real PocketBase.

    .venv/bin/python bench/request_path.py            # ~2 minutes (1 before /collect)
    .venv/bin/python bench/request_path.py --profile  # also: cProfile of the call itself
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    DOMAIN,
    PATHS,
    LocalPocketBase,
    NoopPocketBase,
    as_beacon,
    as_collect,
    client_ip,
    collect_body,
    environ,
    machine_line,
    page_payload,
    percentile,
    scope,
    user_agent,
    verdict,
)

from skopos import SkoposSDK
from skopos.integrations.endpoint import EndpointConfig
from skopos.integrations.wsgi import SkoposMiddleware

TARGET_RATIO = 0.1
# /collect against /api/event, alternating in the same run: "no more than", within noise.
COLLECT_TARGET_RATIO = 1.05
COLLECT_VARIANTS = ("wsgi call", "asgi call", "wsgi endpoint", "wsgi endpoint cors", "asgi control")
# Variants whose ratio is information, not the verdict: the noise floor, and /api/event
# answering CORS headers too (as it does for a cross-origin page with cors_origins).
REFERENCE_VARIANTS = ("asgi control", "wsgi endpoint cors")
VISITORS = 1000
CHUNK = 2000  # calls per timed chunk; the queue (10,000) never fills
BURST = 100  # calls per burst in the "quiet" mode
SPREAD = 200  # calls per variant and round in the "spread" mode
GAP = 0.0005  # seconds of idle before each "spread" call


def build_requests(kind: str, count: int) -> list[tuple[Any, Any]]:
    """(request, payload) pairs: ``kind`` is ``wsgi-bytes``, ``asgi-bytes`` or ``asgi-dict``."""
    pairs = []
    for i in range(count):
        visitor = i % VISITORS
        payload = page_payload(PATHS[i % len(PATHS)])
        body = as_beacon(payload)
        ip, agent = client_ip(visitor), user_agent(visitor)
        request = environ(ip, agent, body=body) if kind == "wsgi-bytes" else scope(ip, agent)
        pairs.append((request, payload if kind == "asgi-dict" else body))
    return pairs


Call = Callable[[], object]


def collect_calls(
    sdk: SkoposSDK, endpoint: SkoposMiddleware, tracking_id: str, count: int
) -> dict[str, tuple[list[Call], list[Call]]]:
    cors = SkoposMiddleware(None, sdk, EndpointConfig(cors_origins=[f"https://{DOMAIN}"]))
    """By variant: (the /api/event calls, the /collect calls) for the same ``count`` requests,
    built ahead (whole WSGI requests take fresh inputs: build them anew for every pass)."""

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        pass

    def track(method: Callable[[Any, Any], None], request: Any, body: Any) -> Call:
        return lambda: method(request, body)

    def whole(request: dict[str, Any], body: bytes, app: SkoposMiddleware = endpoint) -> Call:
        request = {**request, "wsgi.input": io.BytesIO(body)}
        return lambda: app(request, start_response)

    calls: dict[str, tuple[list[Call], list[Call]]] = {v: ([], []) for v in COLLECT_VARIANTS}
    for i in range(count):
        visitor = i % VISITORS
        ip, agent, path = client_ip(visitor), user_agent(visitor), PATHS[i % len(PATHS)]
        ours, theirs = as_beacon(page_payload(path)), collect_body(path, tracking_id)
        for variant, build in (("wsgi call", environ), ("asgi call", scope)):
            api, collect = calls[variant]
            api.append(track(sdk.track_api_event, build(ip, agent, body=ours), ours))
            request = as_collect(build(ip, agent, path="/collect", body=theirs), theirs)
            collect.append(track(sdk.track_collect, request, theirs))
        # The noise floor: /api/event against itself, timed the same way.
        control, twin = calls["asgi control"]
        control.append(track(sdk.track_api_event, scope(ip, agent, body=ours), ours))
        twin.append(track(sdk.track_api_event, scope(ip, agent, body=ours), ours))
        api, collect = calls["wsgi endpoint"]
        api.append(whole(environ(ip, agent, body=ours), ours))
        request = as_collect(environ(ip, agent, path="/collect", body=theirs), theirs)
        collect.append(whole(request, theirs))
        api, collect = calls["wsgi endpoint cors"]
        api.append(whole(environ(ip, agent, body=ours), ours, cors))
        collect.append(whole(request, theirs))
    return calls


def time_alternating(
    api: list[Call],
    collect: list[Call],
    out_api: list[int],
    out_collect: list[int],
    gap: float = 0.0,
    first: int = 0,
) -> None:
    """Each pair in turn, the one or the other first, so both see the same moment. (``first``
    decides which ends a burst: its last call is the one that wakes the worker.)"""
    clock = time.perf_counter_ns
    sleep = time.sleep
    for index, (ours, theirs) in enumerate(zip(api, collect, strict=True), first):
        order = ((ours, out_api), (theirs, out_collect))
        for call, out in order if index % 2 else order[::-1]:
            if gap:
                sleep(gap)
            start = clock()
            call()
            out.append(clock() - start)


def posthog_arguments(count: int) -> list[tuple[str, dict[str, Any]]]:
    """What a host would pass to ``capture`` for the same page views (built ahead, untimed)."""
    arguments = []
    for i in range(count):
        visitor = i % VISITORS
        arguments.append(
            (
                f"visitor-{visitor}",
                {
                    "$current_url": f"https://{DOMAIN}{PATHS[i % len(PATHS)]}",
                    "$ip": client_ip(visitor),
                    "$user_agent": user_agent(visitor),
                    "$request_method": "POST",
                },
            )
        )
    return arguments


def time_skopos(
    sdk: SkoposSDK, pairs: list[tuple[Any, Any]], out: list[int], gap: float = 0.0
) -> None:
    track = sdk.track_api_event
    clock = time.perf_counter_ns
    sleep = time.sleep
    for request, payload in pairs:
        if gap:
            sleep(gap)
        start = clock()
        track(request, payload)
        out.append(clock() - start)


def time_posthog(
    client: Any, arguments: list[tuple[str, dict[str, Any]]], out: list[int], gap: float = 0.0
) -> None:
    capture = client.capture
    clock = time.perf_counter_ns
    sleep = time.sleep
    for distinct_id, properties in arguments:
        if gap:
            sleep(gap)
        start = clock()
        capture("$pageview", distinct_id=distinct_id, properties=properties)
        out.append(clock() - start)


def summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median": percentile(ordered, 0.5) / 1000,
        "p90": percentile(ordered, 0.9) / 1000,
        "p99": percentile(ordered, 0.99) / 1000,
        "p999": percentile(ordered, 0.999) / 1000,
        "max": ordered[-1] / 1000,
    }


def profile_calls(sdk: SkoposSDK, pairs: list[tuple[Any, Any]]) -> str:
    profiler = cProfile.Profile()
    track = sdk.track_api_event
    for _ in range(10):
        profiler.enable()
        for request, payload in pairs:
            track(request, payload)
        profiler.disable()
        sdk.flush(60)  # outside the profile; keeps the queue from filling
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=30_000, help="timed calls per variant")
    parser.add_argument("--pocketbase", choices=("noop", "real"), default="noop")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="the SDK's worker_process=True: the worker in a child process, off this GIL",
    )
    args = parser.parse_args()

    import posthog

    print(f"request_path: {machine_line()}")
    print(f"posthog-python {version('posthog')}, skopos {version('skopos-analytics')}")
    kinds = ("wsgi-bytes", "asgi-bytes", "asgi-dict")
    with contextlib.ExitStack() as stack:
        if args.pocketbase == "noop":
            server: Any = stack.enter_context(NoopPocketBase())
            tracking_id = server.tracking_id
        else:
            server = stack.enter_context(LocalPocketBase())
            tracking_id = server.website("request path bench").tracking_id
        print(f"PocketBase: {args.pocketbase} at {server.url}")
        sdk = SkoposSDK.init(
            pocketbase_url=server.url,
            site_id=tracking_id,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            realtime=False,
            worker_process=args.worker_process,
        )
        stack.callback(sdk.shutdown, 30)
        reference = posthog.Posthog("phc_bench_key", host="http://127.0.0.1:9", send=False)
        stack.callback(reference.shutdown)

        requests = {kind: build_requests(kind, CHUNK) for kind in kinds}
        endpoint = SkoposMiddleware(None, sdk)
        arguments = posthog_arguments(CHUNK)
        # Warm-up, untimed: imports, caches, the first batches.
        for kind in kinds:
            time_skopos(sdk, requests[kind], [])
            sdk.flush(60)
        time_posthog(reference, arguments, [])
        for api, collect in collect_calls(sdk, endpoint, tracking_id, CHUNK // 2).values():
            time_alternating(api, collect, [], [])
            sdk.flush(60)

        modes = ("quiet", "busy", "spread")
        samples: dict[tuple[str, str], list[int]] = {
            (mode, name): [] for mode in modes for name in (*kinds, "posthog")
        }
        # (mode, variant, "api" or "collect") → per-call nanoseconds
        paired: dict[tuple[str, str, str], list[int]] = {
            (mode, variant, side): []
            for mode in modes
            for variant in COLLECT_VARIANTS
            for side in ("api", "collect")
        }
        rounds = max(1, args.calls // CHUNK)
        started = time.monotonic()
        for _ in range(rounds):
            # Interleaved so both sides see the same noise. "busy": 2,000 calls in a row, the
            # worker processing them meanwhile (it competes for the GIL, as in a loaded host).
            # "quiet": bursts of 100 calls, each followed by an untimed flush, so the worker
            # is idle when a call starts, as for a host whose requests are spread out.
            for kind in kinds:
                time_skopos(sdk, requests[kind], samples["busy", kind])
                sdk.flush(60)
                for start in range(0, CHUNK, BURST):
                    time_skopos(sdk, requests[kind][start : start + BURST], samples["quiet", kind])
                    sdk.flush(60)
            time_posthog(reference, arguments, samples["busy", "posthog"])
            for start in range(0, CHUNK, BURST):
                time_posthog(
                    reference, arguments[start : start + BURST], samples["quiet", "posthog"]
                )
            # "spread": one call every ~0.5 ms (an untimed sleep before each), as requests
            # arrive at a real server: every Skopos call finds the worker asleep and wakes it.
            for kind in kinds:
                time_skopos(sdk, requests[kind][:SPREAD], samples["spread", kind], gap=GAP)
            time_posthog(reference, arguments[:SPREAD], samples["spread", "posthog"], gap=GAP)
            # /collect against /api/event, alternating: 1,000 pairs in a row ("busy"), bursts
            # of 50 pairs ("quiet"), 100 pairs with an idle gap before each call ("spread").
            calls = collect_calls(sdk, endpoint, tracking_id, CHUNK // 2)
            for variant, (api, collect) in calls.items():
                busy = (paired["busy", variant, "api"], paired["busy", variant, "collect"])
                time_alternating(api, collect, *busy)
                sdk.flush(60)
            calls = collect_calls(sdk, endpoint, tracking_id, CHUNK // 2)
            for variant, (api, collect) in calls.items():
                quiet = (paired["quiet", variant, "api"], paired["quiet", variant, "collect"])
                for burst, start in enumerate(range(0, CHUNK // 2, BURST // 2)):
                    end = start + BURST // 2
                    time_alternating(api[start:end], collect[start:end], *quiet, first=burst)
                    sdk.flush(60)
                if "endpoint" not in variant:
                    spread = (
                        paired["spread", variant, "api"],
                        paired["spread", variant, "collect"],
                    )
                    half = SPREAD // 2
                    time_alternating(api[:half], collect[:half], *spread, gap=GAP)
            gc.collect()
        elapsed = time.monotonic() - started
        stats = sdk.stats()

        print(f"{rounds} rounds x {CHUNK} calls per variant and mode in {elapsed:.1f} s")
        header = f"{'mode variant':<28}{'n':>7}{'median':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}"
        print(header + f"{'max':>9}   (microseconds)")
        for mode in modes:
            for name in (*kinds, "posthog"):
                st = summary(samples[mode, name])
                label = f"{mode} " + ("posthog capture" if name == "posthog" else f"skopos {name}")
                print(
                    f"{label:<28}{st['n']:>7}{st['median']:>9.2f}{st['p90']:>9.2f}"
                    f"{st['p99']:>9.2f}{st['p999']:>9.2f}{st['max']:>9.0f}"
                )
        worst: dict[str, tuple[float, float]] = {}
        for mode in modes:
            ref = summary(samples[mode, "posthog"])
            worst_median = worst_p99 = 0.0
            for kind in kinds:
                st = summary(samples[mode, kind])
                median_ratio = st["median"] / ref["median"]
                p99_ratio = st["p99"] / ref["p99"]
                worst_median = max(worst_median, median_ratio)
                worst_p99 = max(worst_p99, p99_ratio)
                print(
                    f"ratio skopos/posthog {mode} {kind}: median {median_ratio:.3f},"
                    f" p99 {p99_ratio:.3f}"
                )
            worst[mode] = (worst_median, worst_p99)
        for mode in modes:
            median_ratio, p99_ratio = worst[mode]
            print(
                f"RESULT request_path {mode}: worst ratio median {median_ratio:.3f}, p99"
                f" {p99_ratio:.3f} (target <= {TARGET_RATIO}):"
                f" {verdict(max(median_ratio, p99_ratio) <= TARGET_RATIO)}"
            )
        print(
            f"{'/collect vs /api/event':<36}{'n':>7}{'median':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}"
        )
        worst_collect = (0.0, 0.0)
        for mode in modes:
            for variant in COLLECT_VARIANTS:
                if not paired[mode, variant, "api"]:
                    continue  # no whole requests in the "spread" mode
                both = {side: summary(paired[mode, variant, side]) for side in ("api", "collect")}
                for side, st in both.items():
                    name = "/collect" if side == "collect" else "/api/event"
                    if variant == "asgi control":
                        name = "/api/event" + (" twin" if side == "collect" else "")
                    label = f"{mode} {variant} {name}"
                    print(
                        f"{label:<36}{st['n']:>7}{st['median']:>9.2f}{st['p90']:>9.2f}"
                        f"{st['p99']:>9.2f}{st['p999']:>9.2f}"
                    )
                median_ratio = both["collect"]["median"] / both["api"]["median"]
                p99_ratio = both["collect"]["p99"] / both["api"]["p99"]
                if variant in REFERENCE_VARIANTS:
                    what = (
                        "noise floor /api/event / itself"
                        if "control" in variant
                        else ("ratio /collect / /api/event with CORS too")
                    )
                    print(f"{what} {mode}: median {median_ratio:.3f}, p99 {p99_ratio:.3f}")
                    continue
                worst_collect = (
                    max(worst_collect[0], median_ratio),
                    max(worst_collect[1], p99_ratio),
                )
                print(
                    f"ratio /collect / /api/event {mode} {variant}: median {median_ratio:.3f},"
                    f" p99 {p99_ratio:.3f}"
                )
        print(
            "RESULT request_path /collect vs /api/event: worst ratio median"
            f" {worst_collect[0]:.3f}, p99 {worst_collect[1]:.3f} (target: median <="
            f" {COLLECT_TARGET_RATIO}):"
            f" {verdict(worst_collect[0] <= COLLECT_TARGET_RATIO)}"
        )
        print(
            f"skopos stats: accepted {stats.accepted}, written {stats.written},"
            f" dropped {stats.dropped}, queue depth {stats.queue_depth}"
        )
        if args.profile:
            print("cProfile of 20,000 asgi-bytes calls (tottime):")
            print(profile_calls(sdk, requests["asgi-bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
