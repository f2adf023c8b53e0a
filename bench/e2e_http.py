"""End to end over HTTP: a visitor trace replayed against a Starlette app with the SDK, into a
real PocketBase, everything on this machine.

- App: ``_host_app.asgi_app`` (Starlette, what FastAPI runs on) under uvicorn (``--workers``
  processes), ``POST /api/event`` calling ``track_api_event(request, await request.body())``.
  The app trusts 127.0.0.1 as its reverse proxy (``SKOPOS_TRUSTED_PROXIES``) so each synthetic
  visitor's address comes from ``X-Forwarded-For``.
- Trace: ``--visitors`` (2,000) visitors x 5 events (4 page views, 1 custom), 200 realistic
  user agents, replayed by a load generator of 4 processes x 4 keep-alive connections
  (raw sockets, requests prepared ahead), each connection replaying its own visitors 100 at
  a time, every visitor's events in order.
- Measured: events/s stored, from the first request until every app process's SDK
  ``flush()`` returned (every event in PocketBase, or dropped and counted by the SDK, e.g.
  ``queue_full`` when the bounded queue overflows), PocketBase requests per 1,000 events
  (counted in PocketBase's own request log, ``/api/logs``, by the SDK's User-Agent).
- Reference, same run, same PocketBase: the batch-insert ceiling for the same record mix
  (``ingest.py``'s raw ``POST /api/batch`` writer, new-visitor mix).

Targets: events/s >= 0.5 x ceiling; <= 20 PocketBase requests per 1,000 events with batch=True.

    .venv/bin/python bench/e2e_http.py                     # batch=True and False, ~2 minutes
    .venv/bin/python bench/e2e_http.py --batch true --visitors 10000 --workers 4
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PATHS,
    LocalPocketBase,
    as_beacon,
    client_ip,
    cpu_seconds,
    custom_payload,
    machine_line,
    page_payload,
    sdk_requests,
    user_agent,
    verdict,
)
from host_overhead import Server, tree_cpu
from ingest import Mix, run_reference

TARGET_RATIO = 0.5
TARGET_REQUESTS = 20.0
EVENTS_PER_VISITOR = 5
ACTIVE = 100
PROCESSES = 4  # load-generator processes
THREADS = 4  # keep-alive connections per process


def _request_bytes(port: int, visitor: int, first_ip: int, body: bytes) -> bytes:
    head = (
        f"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: text/plain;charset=UTF-8\r\n"
        f"User-Agent: {user_agent(visitor % 200)}\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        f"X-Forwarded-For: {client_ip(first_ip + visitor)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one HTTP/1.1 response (keep-alive) from ``sock``; return its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    del buffer[: end + length]
    return int(head.split(" ", 2)[1])


def _replay_share(job: tuple[int, int, str, int, int]) -> tuple[int, int]:
    """One load-generator process: ``THREADS`` keep-alive connections, each replaying its
    visitors (``v % lanes == lane``) ``ACTIVE`` at a time, their events in order."""
    port, visitors, domain, first_ip, first_lane = job
    lanes = THREADS * PROCESSES
    bodies = [
        as_beacon(
            custom_payload(PATHS[s], "signup-click", domain)
            if s == 2
            else page_payload(PATHS[s], domain)
        )
        for s in range(EVENTS_PER_VISITOR)
    ]
    plans: list[list[bytes]] = []
    for index in range(first_lane, first_lane + THREADS):
        mine = list(range(index, visitors, lanes))
        plan = []
        for first in range(0, len(mine), ACTIVE):
            group = mine[first : first + ACTIVE]
            for step in range(EVENTS_PER_VISITOR):
                plan += [_request_bytes(port, v, first_ip, bodies[step]) for v in group]
        plans.append(plan)
    done = [0, 0]  # answered 204, anything else
    lock = threading.Lock()

    def lane(plan: list[bytes]) -> None:
        ok = bad = 0
        buffer = bytearray()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                for request in plan:
                    sock.sendall(request)
                    if _read_response(sock, buffer) == 204:
                        ok += 1
                    else:
                        bad += 1
        except OSError:
            bad = len(plan) - ok  # the rest of this lane never got an answer
        with lock:
            done[0] += ok
            done[1] += bad

    workers = [threading.Thread(target=lane, args=(plan,)) for plan in plans]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0], done[1]


def replay(port: int, visitors: int, domain: str, first_ip: int) -> tuple[int, int, float]:
    """Replay the trace with PROCESSES x THREADS connections; (ok, failed, generator CPU s).

    Raw sockets with prepared request bytes keep the generator's own CPU small."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    jobs = [(port, visitors, domain, first_ip, p * THREADS) for p in range(PROCESSES)]
    context = multiprocessing.get_context("fork")  # no re-import: the generator starts fast
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        results = list(pool.map(_replay_share, jobs))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return sum(r[0] for r in results), sum(r[1] for r in results), cpu


def run_e2e(pb: LocalPocketBase, batch: bool, args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    domain = f"e2e-{tag}.bench.example.com"
    site = pb.website(f"e2e {tag}", domain)
    env = {
        **os.environ,
        "SKOPOS_POCKETBASE_URL": pb.url,
        "SKOPOS_SITE_ID": site.tracking_id,
        "SKOPOS_ADMIN_EMAIL": ADMIN_EMAIL,
        "SKOPOS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SKOPOS_REALTIME": "false",
        "SKOPOS_BATCH": "true" if batch else "false",
        "SKOPOS_TRUSTED_PROXIES": "127.0.0.1/32",
        "SKOPOS_MAX_QUEUE_SIZE": str(args.max_queue_size),
    }
    events = args.visitors * EVENTS_PER_VISITOR
    server = Server("uvicorn", env, workers=args.workers, proxy_headers=False)
    with server:
        time.sleep(1.0)  # every worker process up
        server_cpu, pb_cpu = tree_cpu(server.pid), cpu_seconds(pb.pid)
        started = time.time()
        ok, failed, generator_cpu = replay(
            server.port, args.visitors, domain, int(tag[:4], 16) * 1000
        )
        replayed = time.time()
        # Every request was answered, so every worker process has accepted its calls: a flush
        # answered by each process (a new connection each time reaches them in turn) means
        # everything is written or dropped.
        flushed: dict[int, dict[str, Any]] = {}
        while len(flushed) < args.workers and time.time() - replayed < 120:
            stats = server.stats()
            if stats["flushed"]:
                flushed[stats["pid"]] = stats
        finished = time.time()
        server_cpu = tree_cpu(server.pid) - server_cpu
        pb_cpu = cpu_seconds(pb.pid) - pb_cpu
    stored = pb.count("events", f"session.website = '{site.id}'")
    dropped: dict[str, int] = {}
    for stats in flushed.values():
        for reason, count in stats["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    requests = sdk_requests(pb, started - 1, finished + 1)
    return {
        "batch": batch,
        "events": events,
        "stored": stored,
        "seconds": finished - started,
        "replay_seconds": replayed - started,
        "events_per_s": stored / (finished - started),
        "dropped": dropped,
        "requests": requests,
        "per_1000": 1000 * requests["all"] / events,
        "server_cpu": server_cpu,
        "pb_cpu": pb_cpu,
        "answered": ok,
        "failed": failed,
        "generator_cpu": generator_cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--batch", choices=("true", "false", "both"), default="both")
    parser.add_argument("--max-queue-size", type=int, default=10_000, help="the SDK's option")
    args = parser.parse_args()
    print(f"e2e_http: {machine_line()}")
    modes = {"true": [True], "false": [False], "both": [True, False]}[args.batch]
    with LocalPocketBase() as pb:
        mix = Mix("new", 1500, EVENTS_PER_VISITOR, ACTIVE)
        refs = [run_reference(pb, mix, f"e2eref{uuid.uuid4().hex[:6]}")["events_per_s"]]
        print(f"reference ceiling (raw batches, new-visitor mix): {refs[0]:.0f} events/s")
        results = []
        for batch in modes:
            run = run_e2e(pb, batch, args)
            results.append(run)
            print(
                f"  batch={batch!s:<5} {run['events']} events from {args.visitors} visitors,"
                f" uvicorn x{args.workers}, max_queue_size {args.max_queue_size}:"
                f" {run['events_per_s']:.0f} events/s stored"
                f" ({run['seconds']:.1f} s, replay {run['replay_seconds']:.1f} s, answered 204"
                f" {run['answered']}, failed {run['failed']}); stored {run['stored']},"
                f" dropped by the SDK {run['dropped'] or 0};"
                f" PocketBase requests {run['requests']['all']} ({run['requests']['batch']}"
                f" batches, {run['requests']['visitors']} visitor and"
                f" {run['requests']['sessions']} session lookups)"
                f" = {run['per_1000']:.1f} per 1,000 events; PocketBase execTime s: "
                + ", ".join(f"{k} {v / 1000:.1f}" for k, v in run["requests"]["exec_ms"].items())
                + ";"
                f" CPU s: app {run['server_cpu']:.1f}, PocketBase {run['pb_cpu']:.1f},"
                f" load generator {run['generator_cpu']:.1f}"
            )
        refs.append(run_reference(pb, mix, f"e2eref{uuid.uuid4().hex[:6]}")["events_per_s"])
        ceiling = sum(refs) / len(refs)
        print(f"reference ceiling again: {refs[1]:.0f} events/s; mean {ceiling:.0f} events/s")
        for run in results:
            ratio = run["events_per_s"] / ceiling
            complete = run["stored"] == run["events"]
            ok_rate = ratio >= TARGET_RATIO and complete
            line = (
                f"RESULT e2e_http batch={run['batch']} workers={args.workers}:"
                f" {run['events_per_s']:.0f} events/s = {ratio:.2f} x ceiling"
                f" (target >= {TARGET_RATIO}): {verdict(ok_rate)};"
                f" {run['per_1000']:.1f} PocketBase requests per 1,000 events"
            )
            if run["batch"]:
                line += f" (target <= {TARGET_REQUESTS:.0f}): " + verdict(
                    run["per_1000"] <= TARGET_REQUESTS
                )
            print(line + ("" if complete else f"; only {run['stored']} events stored"))
        print(
            f"projection at the ceiling: {ceiling * 86400 / 1e6:.0f} million events/day"
            f" ({ceiling:.0f} events/s x 86,400 s) for this mix on this machine"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
