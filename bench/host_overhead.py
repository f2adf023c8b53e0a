"""Host overhead: requests/s of an endpoint that calls ``track_api_event`` vs the same without.

The app (``_host_app.py``) serves, in one server process, ``POST /api/event`` (tracked),
``POST /api/plain`` (the reference), ``POST /api/control`` (identical to plain: plain vs
control is the noise floor of the run) and ``POST /api/call-only`` (builds what a tracking
call queues and drops it: the call's own cost inside a server), so every run shares the
process, its imports and its warm-up. Servers: Starlette under uvicorn (1 process) and Flask
under gunicorn (1 ``gthread`` worker, 4 threads). Load: ``wrk`` (Debian package; 1 thread, 16
connections, keep-alive) posting a realistic sendBeacon body with 200 rotating browser user
agents and an Accept-Language header; everything on 127.0.0.1.

Short runs, many rounds: each round runs the four endpoints once (3 s each, in an order that
rotates from round to round) and each endpoint's rate is divided by the plain rate of its own
round, so the machine's slow drifts cancel; the verdict is the median of those paired ratios.
After each tracked run the SDK is flushed (untimed) so its backlog never steals CPU from the
next run. The SDK writes to the no-op
PocketBase of ``_common.py`` (its own process), so the comparison is the host's CPU with vs
without the SDK in it; ``--pocketbase real`` writes to a real PocketBase instead (which then
also competes for the two cores).

Reports requests/s, the paired ratios (target >= 0.95 for tracked/plain), the CPU of the
server, of its own process (per request), of wrk and of the PocketBase side, and what the SDK
did with the tracked requests (written, or dropped as ``queue_full`` when the worker could not
keep up).

    .venv/bin/python bench/host_overhead.py                  # ~4 minutes
    .venv/bin/python bench/host_overhead.py --server uvicorn --worker-process --pin
    .venv/bin/python bench/host_overhead.py --server uvicorn --seconds 5 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    DOMAIN,
    LocalPocketBase,
    NoopPocketBase,
    PySpy,
    as_beacon,
    cpu_seconds,
    machine_line,
    page_payload,
    stop_process,
    user_agent,
    verdict,
)

from skopos._admin.embedded import free_port

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 0.95


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (gunicorn master + worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(current)
        todo.extend(children.get(current, []))
    return total


def thread_cpu(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU of each live thread of ``pid`` (``/proc/<pid>/task/*/schedstat``:
    exact, where ``stat``'s ticks are 10 ms)."""
    found: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    return found


def split_cpu(pid: int, before: dict[int, int], requests: int) -> tuple[float, float]:
    """Microseconds a request on ``pid``'s main thread and on its other threads since
    ``before`` (a thread that ended meanwhile is not counted)."""
    after = thread_cpu(pid)
    main = after.get(pid, 0) - before.get(pid, 0)
    others = sum(ns - before.get(tid, 0) for tid, ns in after.items() if tid != pid)
    return main / 1e3 / max(requests, 1), others / 1e3 / max(requests, 1)


def wrk_script(directory: Path) -> Path:
    agents = ",\n".join(json.dumps(user_agent(i)) for i in range(200))
    body = as_beacon(page_payload("/pricing", DOMAIN)).decode()
    script = directory / "post_event.lua"
    script.write_text(
        f"""
local agents = {{
{agents}
}}
local body = {json.dumps(body)}
local i = 0
request = function()
  i = i + 1
  local headers = {{}}
  headers["Content-Type"] = "text/plain;charset=UTF-8"
  headers["User-Agent"] = agents[(i % #agents) + 1]
  headers["Accept-Language"] = "en-US,en;q=0.9"
  return wrk.format("POST", nil, headers, body)
end
"""
    )
    return script


class Server:
    """The host app in a child process, stopped on exit."""

    def __init__(
        self, kind: str, env: dict[str, str], workers: int = 1, proxy_headers: bool = True
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        if kind == "uvicorn":
            argv = [str(bin_dir / "uvicorn"), "_host_app:asgi_app", "--app-dir", str(HERE)]
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
            argv += ["--no-access-log", "--log-level", "warning", "--workers", str(workers)]
            if not proxy_headers:  # let the SDK's trusted_proxies resolve X-Forwarded-For
                argv.append("--no-proxy-headers")
        else:
            argv = [str(bin_dir / "gunicorn"), "--chdir", str(HERE), "-w", "1"]
            argv += ["-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{self.port}"]
            argv += ["--log-level", "warning", "_host_app:wsgi_app"]
        self.argv = argv
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at startup")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/__bench/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{self.kind} did not start")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        import httpx

        result: dict[str, Any] = httpx.get(f"{self.url}/__bench/flush", timeout=150).json()
        return result

    def __exit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        stop_process(process, grace=15)


def server_pid(server: Server) -> int:
    """The process that runs the app: uvicorn itself, or gunicorn's (only) worker."""
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if server.kind == "gunicorn" and children else pid


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if match is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "rps": float(match.group(1)),
        "requests": int(total.group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "wrk_cpu": cpu / seconds,
    }


def descendants(pid: int) -> list[int]:
    """Every process started by any thread of ``pid``, recursively."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def pin_cores(server: Server, pb_pid: int) -> str:
    """The app process on CPU 0, everything else (SDK worker process, gunicorn master,
    PocketBase, this process and so wrk) on CPU 1."""
    app = server_pid(server)
    assert server.process is not None
    others = {server.process.pid, pb_pid, *descendants(server.process.pid)} - {app}
    for pid in {app, *others}:
        cpu = {0} if pid == app else {1}
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cpu)
    os.sched_setaffinity(0, {1})
    return f"pinned: the app (pid {app}) to CPU 0; pids {sorted(others)}, wrk to CPU 1"


ENDPOINTS = ("plain", "event", "control", "call-only")


def rotated(round_index: int) -> tuple[str, ...]:
    """Round r runs the endpoints starting at the r-th: each endpoint takes every place in
    the order equally often, so no endpoint always follows (or precedes) a tracked run."""
    shift = round_index % len(ENDPOINTS)
    return ENDPOINTS[shift:] + ENDPOINTS[:shift]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def measure(kind: str, env: dict[str, str], pb_pid: int, args: argparse.Namespace) -> bool:
    scratch = tempfile.TemporaryDirectory(prefix="skopos-bench-wrk-")
    script = wrk_script(Path(scratch.name))
    rates: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
    costs: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
    # uvicorn: the main thread is the event loop, so the request thread; the rest is ours.
    splits: dict[str, list[tuple[float, float]]] = {path: [] for path in ENDPOINTS}
    with scratch, contextlib.ExitStack() as stack, Server(kind, env) as server:
        # Warm-up (untimed): imports, caches, connections.
        for path in ENDPOINTS:
            run_wrk(f"{server.url}/api/{path}", script, 2, args.connections)
        if args.pin:
            stack.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
            print("  " + pin_cores(server, pb_pid))
        before = server.stats()
        for round_index in range(args.rounds):
            for path in rotated(round_index):
                app_pid = server_pid(server)
                server_cpu, pb_cpu = tree_cpu(server.process.pid), cpu_seconds(pb_pid)  # type: ignore[union-attr]
                app_cpu = cpu_seconds(app_pid)
                threads = thread_cpu(app_pid)
                result = run_wrk(f"{server.url}/api/{path}", script, args.seconds, args.connections)
                server_cpu = (tree_cpu(server.process.pid) - server_cpu) / args.seconds  # type: ignore[union-attr]
                app_cpu = (cpu_seconds(app_pid) - app_cpu) / args.seconds
                splits[path].append(split_cpu(app_pid, threads, int(result["requests"])))
                pb_cpu = (cpu_seconds(pb_pid) - pb_cpu) / args.seconds
                rates[path].append(result["rps"])
                app_cost = app_cpu * 1e6 / result["rps"] if result["rps"] else float("nan")
                costs[path].append(app_cost)
                note = ""
                if path == "event":
                    # Untimed: the SDK's backlog never steals CPU from the next run. Its
                    # threads still poll for POLL_AFTER_CALLS: 0.6 us of CPU a request of
                    # the next run (measured, uvicorn); a pause here would cost more, as a
                    # run after an idle pause runs faster on this VM (control/plain 1.12).
                    stats = server.stats()
                    accepted = stats["accepted"] - before["accepted"]
                    written = stats["written"] - before["written"]
                    queue_full = stats["dropped"].get("queue_full", 0) - before["dropped"].get(
                        "queue_full", 0
                    )
                    note = f"; SDK: accepted {accepted}, written {written}, queue_full {queue_full}"
                    before = stats
                errors = result["socket_errors"]
                cost = server_cpu * 1e6 / result["rps"] if result["rps"] else float("nan")
                print(
                    f"  {kind:<8} round {round_index + 1} /api/{path:<9} {result['rps']:8.0f} req/s"
                    f" ({result['requests']} requests, non-2xx {result['non_2xx']}"
                    f"{', socket errors ' + errors if errors else ''});"
                    f" CPU: server {server_cpu:.2f} ({cost:.0f} us/request; the app's own"
                    f" process {app_cpu:.2f}, {app_cost:.0f} us/request), wrk"
                    f" {result['wrk_cpu']:.2f}, PocketBase side {pb_cpu:.2f} cores{note}"
                )
        if args.profile:
            for gil in (False, True):
                with PySpy(pid=server_pid(server), gil=gil) as spy:
                    run_wrk(f"{server.url}/api/event", script, args.seconds, args.connections)
                server.stats()
                shares = ", ".join(f"{k} {v:.0%}" for k, v in spy.thread_shares().items())
                what = "GIL holder" if gil else "non-idle (incl. waiting for the GIL)"
                print(f"  py-spy of the {kind} server during a tracked run, {what}: {shares}")
                for thread in ("skopos-worker", "skopos-feeder", "MainThread"):
                    print("    " + spy.report(thread, 12).replace("\n", "\n    "))
    # Each run against the untracked run of its own round: slow drifts of the machine cancel.
    paired = {
        path: [rate / plain for rate, plain in zip(rates[path], rates["plain"], strict=True)]
        for path in ENDPOINTS
    }
    plain_cost = statistics.median(costs["plain"])
    print(
        f"  {kind}: per-round ratios to /api/plain, median (min-max) of {args.rounds}:"
        f" control {spread(paired['control'])} (the noise floor: the same endpoint),"
        f" call-only {spread(paired['call-only'])}, tracked {spread(paired['event'])}"
    )
    print(
        f"  {kind}: the app process's CPU per request, median: plain {plain_cost:.1f} us,"
        + "".join(
            f" {path} {statistics.median(costs[path]) - plain_cost:+.1f} us"
            for path in ENDPOINTS[1:]
        )
    )
    if kind == "uvicorn":
        main = {path: statistics.median(m for m, _ in splits[path]) for path in ENDPOINTS}
        rest = {path: statistics.median(o for _, o in splits[path]) for path in ENDPOINTS}
        print(
            f"  {kind}: CPU per request by thread, median: the event loop (request thread)"
            f" plain {main['plain']:.1f} us,"
            + "".join(f" {path} {main[path] - main['plain']:+.1f} us" for path in ENDPOINTS[1:])
            + f"; the other threads (the SDK's) plain {rest['plain']:.1f} us,"
            + "".join(f" {path} {rest[path] - rest['plain']:+.1f} us" for path in ENDPOINTS[1:])
        )
    ratio = statistics.median(paired["event"])
    ok = ratio >= TARGET_RATIO
    print(
        f"RESULT host_overhead {kind}: tracked {statistics.median(rates['event']):.0f} req/s vs"
        f" plain {statistics.median(rates['plain']):.0f} req/s, ratio {ratio:.3f} (median of"
        f" {args.rounds} paired rounds; noise floor {statistics.median(paired['control']):.3f})"
        f" (target >= {TARGET_RATIO}): {verdict(ok)}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=("uvicorn", "gunicorn", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=3, help="per run (wrk takes whole seconds)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pocketbase", choices=("noop", "real"), default="noop")
    parser.add_argument("--profile", action="store_true", help="py-spy the server, tracked")
    parser.add_argument("--batch", action="store_true", help="SKOPOS_BATCH=true (default off)")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="SKOPOS_WORKER_PROCESS=true: the SDK's worker in a child process",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the app process on CPU 0, the rest (SDK worker process, wrk, PocketBase) on CPU 1",
    )
    args = parser.parse_args()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    print(f"host_overhead: {machine_line()}")
    print(f"load generator: {wrk_version.splitlines()[0] if wrk_version else 'wrk'}")
    kinds = ("uvicorn", "gunicorn") if args.server == "both" else (args.server,)
    with contextlib.ExitStack() as stack:
        if args.pocketbase == "noop":
            pb: Any = stack.enter_context(NoopPocketBase())
            tracking_id = pb.tracking_id
        else:
            pb = stack.enter_context(LocalPocketBase())
            tracking_id = pb.website("host overhead bench").tracking_id
        env = {
            **os.environ,
            "SKOPOS_POCKETBASE_URL": pb.url,
            "SKOPOS_SITE_ID": tracking_id,
            "SKOPOS_ADMIN_EMAIL": ADMIN_EMAIL,
            "SKOPOS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SKOPOS_REALTIME": "false",
            "SKOPOS_BATCH": "true" if args.batch else "false",
            "SKOPOS_WORKER_PROCESS": "true" if args.worker_process else "false",
        }
        print(
            f"PocketBase: {args.pocketbase}; SDK batch={args.batch};"
            f" worker_process={args.worker_process};"
            f" wrk -t1 -c{args.connections} -d{args.seconds:g}s"
        )
        results = [measure(kind, env, pb.pid, args) for kind in kinds]
        if args.pocketbase == "noop":
            counts = pb.counts()
            events = counts["records"].get("events", 0)
            print(
                f"PocketBase requests per 1,000 events:"
                f" {1000 * counts['requests'] / max(events, 1):.1f}"
                f" ({counts['requests']} requests: {counts['batch_requests']} batches,"
                f" {counts['lookups']} lookups; {events} events)"
            )
    del results  # the verdicts are printed; the exit code reports only crashes
    return 0


if __name__ == "__main__":
    sys.exit(main())
