"""Shared pieces of the benchmarks: servers, synthetic requests, statistics.

- ``LocalPocketBase``: a real PocketBase (the ``server`` extra's binary) in a temporary
  directory, Skopos schema applied, stopped on exit (also on failure).
- ``NoopPocketBase``: a tiny PocketBase look-alike in a *separate process* that answers
  what the SDK asks (login, settings, the website, the salt, empty lookups) and acknowledges
  every ``POST /api/batch`` with synthetic success. It counts requests and records, so a
  benchmark can isolate the SDK's own cost from PocketBase's. Run as
  ``python bench/_common.py noop-server --port N ...`` by ``NoopPocketBase``.
- Request builders: realistic browser WSGI environs and ASGI scopes, sendBeacon payloads.
- ``percentile``, ``machine_line``, ``cpu_seconds``: reporting helpers.

Nothing here is imported by the package or the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # `timeout` and CI send SIGTERM: unwind, so every server a benchmark started is stopped.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)
ADMIN_EMAIL = "bench@skopos.test"
ADMIN_PASSWORD = "bench-password-123"
DOMAIN = "bench.example.com"

# -- synthetic browsers ----------------------------------------------------------------------

_UA_TEMPLATES = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/{major}.0.{build}.{patch} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/{major}.0.{build}.{patch} Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/{major}.0.{build}.{patch} Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/{major}.0.{build}.{patch} Safari/537.36 Edg/{major}.0.{build}.{patch}",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{major}.0) Gecko/20100101 Firefox/{major}.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{major}.0) Gecko/20100101 Firefox/{major}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{patch} like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.{patch} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.{patch} Safari/605.1.15",
)
COMMON_AGENTS = tuple(
    t.format(major=131, build=6778, patch=85 if "Chrome" in t else 5) for t in _UA_TEMPLATES
)


def user_agent(index: int) -> str:
    """The ``index``-th of many distinct, realistic browser user agents."""
    template = _UA_TEMPLATES[index % len(_UA_TEMPLATES)]
    n = index // len(_UA_TEMPLATES)
    return template.format(major=100 + n % 40, build=4000 + n // 40 % 3000, patch=n // 120000)


def client_ip(index: int) -> str:
    """A distinct IPv4 address string per index (only ever a string, never contacted)."""
    value = 0x0B000000 + index  # 11.0.0.0 onwards
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


PATHS = ("/", "/pricing", "/blog/why-privacy", "/docs/getting-started", "/about", "/signup")


def page_payload(path: str, domain: str = DOMAIN, referrer: str | None = None) -> dict[str, Any]:
    """What skopos.js sends for a page view."""
    body: dict[str, Any] = {
        "type": "pageView",
        "url": f"https://{domain}{path}",
        "screenWidth": 1920,
        "screenHeight": 1080,
        "language": "en-US",
    }
    if referrer:
        body["referrer"] = referrer
    return body


def custom_payload(path: str, name: str, domain: str = DOMAIN) -> dict[str, Any]:
    """What skopos.js sends for a custom event."""
    return {
        "type": "custom",
        "url": f"https://{domain}{path}",
        "name": name,
        "customData": {"plan": "pro", "step": 2},
    }


def as_beacon(payload: dict[str, Any]) -> bytes:
    """The raw text/plain body ``navigator.sendBeacon`` posts."""
    return json.dumps(payload, separators=(",", ":")).encode()


def collect_body(path: str, tracking_id: str, domain: str = DOMAIN) -> bytes:
    """What the official client script posts to /collect for a page view (a ``batch`` of one
    ``pv``, with the envelope it always sends): the message XORed and base64-encoded."""
    from skopos._tracking.collect_codec import xor_code_units  # only in trees that have it

    message = {
        "type": "batch",
        "sid": tracking_id,
        "vid": "v_m5x2k9q1w8",
        "ssid": "s_m5x2l0a7c3",
        "url": f"https://{domain}{path}",
        "ref": "https://www.google.com/",
        "sw": 1920,
        "sh": 1080,
        "vw": 1280,
        "vh": 720,
        "dpr": 1.5,
        "cn": "4g",
        "lang": "en-US",
        "tz": "Europe/Berlin",
        "ts": 1_767_225_600_000,
        "sv": "1.3.0",
        "events": [{"t": "pv"}],
    }
    text = xor_code_units(json.dumps(message, separators=(",", ":")))
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return json.dumps({"_d": encoded, "_v": 1}).encode()


def as_collect(request: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The same browser's request as the official script's fetch to /collect makes it."""
    if request.get("type") == "http":
        headers = [
            (name, b"application/json" if name == b"content-type" else value)
            for name, value in request["headers"]
            if name not in (b"content-length", b"sec-fetch-mode")
        ]
        headers += [(b"content-length", str(len(body)).encode()), (b"sec-fetch-mode", b"cors")]
        return {**request, "path": "/collect", "raw_path": b"/collect", "headers": headers}
    return {
        **request,
        "PATH_INFO": "/collect",
        "RAW_URI": "/collect",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_SEC_FETCH_MODE": "cors",
    }


def environ(ip: str, agent: str, path: str = "/api/event", body: bytes = b"") -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for a browser's sendBeacon POST."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": DOMAIN,
        "SERVER_PORT": "443",
        "REMOTE_ADDR": ip,
        "REMOTE_PORT": "51234",
        "CONTENT_TYPE": "text/plain;charset=UTF-8",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": DOMAIN,
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_SEC_CH_UA": '"Chromium";v="131", "Not_A Brand";v="24"',
        "HTTP_SEC_CH_UA_MOBILE": "?0",
        "HTTP_SEC_CH_UA_PLATFORM": '"Windows"',
        "HTTP_USER_AGENT": agent,
        "HTTP_ACCEPT": "*/*",
        "HTTP_ORIGIN": f"https://{DOMAIN}",
        "HTTP_SEC_FETCH_SITE": "same-origin",
        "HTTP_SEC_FETCH_MODE": "no-cors",
        "HTTP_SEC_FETCH_DEST": "empty",
        "HTTP_REFERER": f"https://{DOMAIN}/pricing",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd",
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def scope(ip: str, agent: str, path: str = "/api/event", body: bytes = b"") -> dict[str, Any]:
    """An ASGI scope as uvicorn builds it for the same request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": (ip, 51234),
        "scheme": "https",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", DOMAIN.encode()),
            (b"connection", b"keep-alive"),
            (b"content-length", str(len(body)).encode()),
            (b"sec-ch-ua", b'"Chromium";v="131", "Not_A Brand";v="24"'),
            (b"content-type", b"text/plain;charset=UTF-8"),
            (b"sec-ch-ua-mobile", b"?0"),
            (b"user-agent", agent.encode()),
            (b"sec-ch-ua-platform", b'"Windows"'),
            (b"accept", b"*/*"),
            (b"origin", f"https://{DOMAIN}".encode()),
            (b"sec-fetch-site", b"same-origin"),
            (b"sec-fetch-mode", b"no-cors"),
            (b"sec-fetch-dest", b"empty"),
            (b"referer", f"https://{DOMAIN}/pricing".encode()),
            (b"accept-encoding", b"gzip, deflate, br, zstd"),
            (b"accept-language", b"en-US,en;q=0.9"),
        ],
    }


# -- statistics and reporting ----------------------------------------------------------------


def percentile(sorted_values: list[float] | list[int], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def machine_line() -> str:
    """Date, cores and load average, for every benchmark's header."""
    load = os.getloadavg()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" Python {sys.version.split()[0]}; {source_line()}"
    )


def source_line() -> str:
    """The commit measured, and whether src/ had uncommitted changes (a shared checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {commit or '?'}{' + uncommitted src/ changes' if dirty else ''}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int | None = None) -> float:
    """Resident set size in MiB (``/proc/<pid>/status`` VmRSS)."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# -- a real PocketBase -------------------------------------------------------------------------


@dataclass
class LocalPocketBase:
    """A real PocketBase with the Skopos schema; use as a context manager."""

    url: str = ""

    def __enter__(self) -> LocalPocketBase:
        from skopos._admin.embedded import EmbeddedPocketBase
        from skopos._admin.setup import run_setup
        from skopos._pocketbase.client import PocketBaseClient

        self._dir = tempfile.mkdtemp(prefix="skopos-bench-pb-")
        self.process = EmbeddedPocketBase(
            Path(self._dir) / "pb", email=ADMIN_EMAIL, password=ADMIN_PASSWORD
        )
        try:
            self.process.start()
            self.url = self.process.url
            self.client = PocketBaseClient(self.url, ADMIN_EMAIL, ADMIN_PASSWORD)
            run_setup(self.client)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def pid(self) -> int:
        process = self.process._process
        assert process is not None
        return process.pid

    def website(self, name: str, domain: str = DOMAIN) -> Any:
        """``skopos._admin.setup.Website`` for ``domain`` (created on first use)."""
        from skopos._admin.setup import ensure_website

        return ensure_website(self.client, name, domain)

    def count(self, collection: str, filter: str | None = None) -> int:
        params: dict[str, str | int] = {"perPage": 1, "fields": "id"}
        if filter:
            params["filter"] = filter
        data = self.client.request("GET", f"/api/collections/{collection}/records", params=params)
        return int(data["totalItems"])

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.process.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def sdk_requests(pb: LocalPocketBase, since: float, until: float) -> dict[str, Any]:
    """PocketBase requests made by the SDK (its User-Agent) in a time window, from /api/logs,
    counted and timed (PocketBase's ``execTime``) by kind."""
    from skopos._pocketbase.dates import pb_date

    query = (  # the benchmark's own client has the same User-Agent: leave out what it reads
        f"created >= '{pb_date(since)}' && created <= '{pb_date(until)}'"
        " && data.userAgent ~ 'skopos-python' && data.url !~ '/api/logs'"
        " && data.url !~ '/api/collections/events/records'"
    )
    items: list[dict[str, Any]] = []
    previous = -1
    time.sleep(2.0)  # PocketBase writes its request log asynchronously, a little later
    for _ in range(15):
        items = _logs(pb, query)
        if len(items) == previous and items:
            break
        previous = len(items)
        time.sleep(1.0)
    counts: dict[str, Any] = {"all": len(items), "batch": 0, "visitors": 0, "sessions": 0}
    exec_ms: dict[str, float] = {"batch": 0.0, "visitors": 0.0, "sessions": 0.0, "other": 0.0}
    for item in items:
        url = str(item.get("data", {}).get("url", ""))
        kind = "other"
        if url.startswith("/api/batch"):
            kind = "batch"
        elif url.startswith("/api/collections/visitors/records"):
            kind = "visitors"
        elif url.startswith("/api/collections/sessions/records"):
            kind = "sessions"
        if kind != "other":
            counts[kind] += 1
        exec_ms[kind] += float(item.get("data", {}).get("execTime", 0.0))
    counts["exec_ms"] = exec_ms
    return counts


def _logs(pb: LocalPocketBase, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in range(1, 50):
        params: dict[str, str | int] = {"perPage": 500, "page": page, "filter": query}
        data = pb.client.request("GET", "/api/logs", params=params)
        items += data["items"]
        if len(data["items"]) < 500:
            break
    return items


# -- a no-op PocketBase ------------------------------------------------------------------------

NOOP_TRACKING_ID = "benchtrackingid1"
NOOP_SITE_RECORD = "benchsite000001"


class NoopPocketBase:
    """The no-op PocketBase look-alike in a child process; use as a context manager."""

    def __init__(self, domain: str = DOMAIN, store_raw_ip: bool = False) -> None:
        from skopos._admin.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tracking_id = NOOP_TRACKING_ID
        self._argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "noop-server",
            "--port",
            str(self.port),
            "--domain",
            domain,
        ]
        if store_raw_ip:
            self._argv.append("--store-raw-ip")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NoopPocketBase:
        import httpx

        self.process = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the no-op PocketBase exited at startup")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the no-op PocketBase did not start")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def counts(self) -> dict[str, Any]:
        """Requests and records it has seen so far."""
        import httpx

        result: dict[str, Any] = httpx.get(f"{self.url}/__noop/stats", timeout=5).json()
        return result

    def __exit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        stop_process(process, grace=5)


def _fake_token() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    exp = int(time.time()) + 30 * 86400
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': exp, 'type': 'auth'})}.sig"


def _run_noop_server(port: int, domain: str, store_raw_ip: bool) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing to clean up: just end
    token = json.dumps({"token": _fake_token(), "record": {"id": "su"}}).encode()
    settings = json.dumps(
        {"batch": {"enabled": True, "maxRequests": 1000, "timeout": 10, "maxBodySize": 0}}
    ).encode()
    website = {
        "id": NOOP_SITE_RECORD,
        "name": "bench",
        "domain": domain,
        "trackingId": NOOP_TRACKING_ID,
        "isArchived": False,
        "disableLocalhostTracking": False,
        "storeRawIp": store_raw_ip,
        "ipBlacklist": "",
    }
    salt = {"id": "saltrecord00001", "key": "visitor_salt", "value": "5a" * 32}
    ok_item = b'{"status":200,"body":{}}'
    stats: dict[str, Any] = {"requests": 0, "batch_requests": 0, "records": {}, "lookups": 0}
    collections = (b"visitors", b"sessions", b"events", b"js_errors")

    def page(items: list[dict[str, Any]]) -> bytes:
        return json.dumps({"items": items, "page": 1, "perPage": 1000}).encode()

    def route(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        stats["requests"] += 1
        path = target.split("?", 1)[0]
        if method == "POST" and path == "/api/batch":
            stats["batch_requests"] += 1
            count = body.count(b'{"method":')
            if count == 0:
                count = len(json.loads(body).get("requests", []))
            records = stats["records"]
            for name in collections:
                hits = body.count(b"/api/collections/" + name + b"/records")
                if hits:
                    records[name.decode()] = records.get(name.decode(), 0) + hits
            return 200, b"[" + b",".join([ok_item] * count) + b"]"
        if path == "/api/health":
            return 200, b'{"code":200,"message":"API is healthy."}'
        if path.startswith("/api/collections/_superusers/auth-"):
            return 200, token
        if path == "/api/settings":
            return 200, settings
        if path == "/__noop/stats":
            stats["requests"] -= 1
            return 200, json.dumps(stats).encode()
        if method == "GET" and path == "/api/collections/websites/records":
            return 200, page([website])
        if method == "GET" and path == "/api/collections/skopos_config/records":
            return 200, page([salt])
        if method == "GET" and path.endswith("/records"):
            stats["lookups"] += 1
            return 200, page([])
        return 404, b'{"status":404,"message":"not found","data":{}}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                status, answer = route(method, target, body)
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(answer), answer)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- profiling with py-spy (a sampling profiler outside the process: no SDK internals) -------


class PySpy:
    """``py-spy record`` of a process (default: this one) while the block runs.

    ``report(thread)`` gives self and inclusive sample shares per function for the threads
    whose name contains ``thread`` (``skopos-worker``, ``MainThread``). Needs ``py-spy``
    (``pip install py-spy``) and ptrace rights (root here).
    """

    def __init__(self, pid: int | None = None, rate: int = 200, gil: bool = False) -> None:
        self.pid = pid or os.getpid()
        self.rate = rate
        self.gil = gil  # sample only the thread holding the GIL: shares of the GIL
        self._dir = tempfile.mkdtemp(prefix="skopos-bench-spy-")
        self.output = Path(self._dir) / "profile.txt"
        self.raw = ""  # py-spy's collapsed stacks, read when the block ends
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        binary = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        argv = [binary, "record", "-p", str(self.pid), "-r", str(self.rate), "--threads"]
        argv += ["--nonblocking", "-f", "raw", "-o", str(self.output)]
        if self.gil:
            argv.append("--gil")
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach before the measured work starts
        return self

    def __exit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if self.output.exists():
            self.raw = self.output.read_text()
        shutil.rmtree(self._dir, ignore_errors=True)

    def thread_shares(self) -> dict[str, float]:
        """Share of all samples per thread name (with ``gil=True``: share of GIL time)."""
        counts: dict[str, int] = {}
        if self.raw:
            for line in self.raw.splitlines():
                stack, _, count_text = line.rpartition(" ")
                name = stack.split(";", 1)[0].split(": ", 1)[-1]
                counts[name] = counts.get(name, 0) + int(count_text)
        total = sum(counts.values()) or 1
        return {name: count / total for name, count in sorted(counts.items())}

    def report(self, thread: str, top: int = 20) -> str:
        if not self.raw:
            return "(no py-spy output: is py-spy installed?)"
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.raw.splitlines():
            stack, _, count_text = line.rpartition(" ")
            frames = stack.split(";")
            if not frames or thread not in frames[0]:
                continue
            count = int(count_text)
            total += count
            functions = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames[1:]]
            if functions:
                own[functions[-1]] = own.get(functions[-1], 0) + count
            for name in set(functions):
                inclusive[name] = inclusive.get(name, 0) + count
        if not total:
            return f"(no samples for thread {thread!r})"
        mode = "holding the GIL" if self.gil else "non-idle"
        lines = [f"py-spy, thread {thread!r}: {total} samples at {self.rate} Hz ({mode})"]
        lines.append("  self%  function (file)")
        for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * count / total:5.1f}  {name}")
        lines.append("  incl%  function (file)")
        for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[: top + 8]:
            lines.append(f"  {100 * count / total:5.1f}  {name}")
        return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    noop = sub.add_parser("noop-server")
    noop.add_argument("--port", type=int, required=True)
    noop.add_argument("--domain", default=DOMAIN)
    noop.add_argument("--store-raw-ip", action="store_true")
    args = parser.parse_args()
    if args.command == "noop-server":
        with contextlib.suppress(KeyboardInterrupt):
            _run_noop_server(args.port, args.domain, args.store_raw_ip)


def stop_process(process: subprocess.Popen[Any] | None, *, grace: float) -> None:
    """Terminate a child server, then kill it if it is still there after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
