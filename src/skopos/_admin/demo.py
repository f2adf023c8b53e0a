"""``skopos demo``: an embedded PocketBase, the schema, a demo site, an example app, traffic.

Without ``--traffic`` it sets up, prints where everything is and the ``skopos report``
command to run while you click around, and serves until Ctrl-C (``--once``: stops at once).

With ``--traffic N`` the example app starts as if behind a local reverse proxy
(``SKOPOS_TRUSTED_PROXIES=127.0.0.1/32``, so each simulated visitor gets its own address
from ``X-Forwarded-For``) and with time compressed (sessions end after 3 s of inactivity
instead of 30 minutes, JS errors written every second), so returning visitors happen within
the run. ``traffic.py``'s visitors go through the app's real ``POST /api/event``; once
PocketBase holds everything they sent, the demo prints ``skopos report`` for the run next to
what the simulation knows it sent. The app is then restarted with normal settings for you.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from skopos._admin.embedded import EmbeddedPocketBase, free_port
from skopos._admin.setup import Website, run_setup
from skopos._exceptions import ConfigurationError
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

__all__ = ["DEMO_EMAIL", "DEMO_PASSWORD", "run_demo"]

DEMO_EMAIL = "demo@skopos.local"
DEMO_PASSWORD = "skopos-demo-password"
DEFAULT_APP = Path("examples") / "fastapi_app" / "app.py"
# Compressed time while simulated visitors run: a returning visitor waits this + 1 s.
TRAFFIC_SESSION_TIMEOUT = 3.0


def run_demo(args: argparse.Namespace) -> int:
    """The ``skopos demo`` command (``args`` from the CLI's parser); returns the exit code.

    Example::

        run_demo(argparse.Namespace(dir=".skopos-demo", port=0, app="examples/fastapi_app/app.py",
                                    app_port=0, once=True, traffic=50, seed=1))
    """
    if args.traffic is not None and args.traffic < 1:
        raise ConfigurationError("--traffic must be 1 or more visitors")
    script = args.app
    if args.traffic and not script:
        if not DEFAULT_APP.is_file():
            raise ConfigurationError("--traffic needs --app SCRIPT (the app the visitors use)")
        script = str(DEFAULT_APP)
    data_dir = Path(args.dir) / "pb_data"
    port = args.port if args.port and _port_is_free(args.port) else free_port()
    server = EmbeddedPocketBase(data_dir, email=DEMO_EMAIL, password=DEMO_PASSWORD, port=port)
    server.start()
    app: subprocess.Popen[bytes] | None = None
    try:
        with PocketBaseClient(server.url, DEMO_EMAIL, DEMO_PASSWORD) as client:
            report = run_setup(client, site_name="Skopos demo", domain="localhost")
        for line in report.summary():
            print(line)
        assert report.website is not None
        site = report.website
        print(f"PocketBase: {server.url}  (admin UI: {server.url}/_/)")
        print(f"superuser:  {DEMO_EMAIL} / {DEMO_PASSWORD}")
        app_port = args.app_port
        if script:
            app_port = (
                args.app_port if args.app_port and _port_is_free(args.app_port) else free_port()
            )
            simulated = bool(args.traffic)
            app, app_url = start_app(
                script, app_port, server.url, site.tracking_id, simulated_traffic=simulated
            )
            print(f"example app: {app_url}  (click around; records appear in PocketBase)")
            if args.traffic:
                _run_traffic(args.traffic, args.seed, server.url, site, app_url)
                if not args.once:
                    _stop(app)
                    app, app_url = start_app(script, app_port, server.url, site.tracking_id)
                    print(f"example app restarted with normal settings: {app_url}")
        print("see the numbers:")
        print(f"  {_report_command(server.url, site.tracking_id)}")
        if args.once:
            print("(--once: PocketBase stops now; its data stays in the demo directory)")
            return 0
        print("Press Ctrl-C to stop.")
        _wait_for_signal(app)
        return 0
    finally:
        if app is not None:
            _stop(app)
        server.stop()


def _report_command(url: str, tracking_id: str) -> str:
    env = (
        f"SKOPOS_POCKETBASE_URL={url} SKOPOS_ADMIN_EMAIL={DEMO_EMAIL}"
        f" SKOPOS_ADMIN_PASSWORD={shlex.quote(DEMO_PASSWORD)}"
    )
    return f"{env} {_skopos_command()} report --site {tracking_id} --last 24h"


def _skopos_command() -> str:
    """How to run ``skopos`` from here: the script beside this Python (``.venv/bin/skopos``
    from a clone, whose virtualenv is rarely activated), else whatever ``PATH`` finds."""
    script = Path(sys.executable).parent / "skopos"
    if not script.is_file():
        return "skopos"
    try:
        relative = script.relative_to(Path.cwd())
    except ValueError:
        return str(script)
    return str(relative)


def start_app(
    script: str,
    port: int,
    pocketbase_url: str,
    tracking_id: str,
    *,
    simulated_traffic: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    """Run an example app against the demo PocketBase; wait until it answers.

    Example::

        app, url = start_app("examples/fastapi_app/app.py", 8000, pb_url, tracking_id)
    """
    env = {
        **os.environ,
        "SKOPOS_POCKETBASE_URL": pocketbase_url,
        "SKOPOS_SITE_ID": tracking_id,
        "SKOPOS_ADMIN_EMAIL": DEMO_EMAIL,
        "SKOPOS_ADMIN_PASSWORD": DEMO_PASSWORD,
        "PORT": str(port),
    }
    if simulated_traffic:
        env.update(
            {
                # As if behind nginx on this host: visitors' addresses come from the header.
                "SKOPOS_TRUSTED_PROXIES": "127.0.0.1/32",
                "SKOPOS_SESSION_TIMEOUT": str(TRAFFIC_SESSION_TIMEOUT),
            }
        )
    app = subprocess.Popen([sys.executable, script], env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and app.poll() is None:
        try:
            httpx.get(url, timeout=1)
            return app, url
        except httpx.HTTPError:
            time.sleep(0.1)
    _stop(app)
    raise ConfigurationError(f"the example app {script} did not start on {url}")


def _run_traffic(
    visitors: int, seed: int, pocketbase_url: str, site: Website, app_url: str
) -> None:
    from rich.console import Console

    from skopos._admin.console import progress_bar
    from skopos._admin.report import Period, SiteInfo, local_timezone, read_report
    from skopos._admin.report_render import render_report
    from skopos._admin.traffic import plan_traffic, send_traffic

    origin = app_url.rstrip("/")
    plan = plan_traffic(
        visitors, page_url=origin, seed=seed, return_after=TRAFFIC_SESSION_TIMEOUT + 1.0
    )
    expected = plan.expected
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    print(
        f"sending {visitors} simulated visitors ({expected.bots} of them bots),"
        f" {plan.requests} requests, to {origin}/api/event ..."
    )
    with progress_bar("visitors' requests", unit="requests") as advance:
        result = send_traffic(plan, origin, progress=lambda done: advance(done, plan.requests))
    print(f"sent {result.sent} requests in {result.seconds:.1f} s ({result.failed} failed)")
    for error in result.errors:
        print(f"  {error}", file=sys.stderr)
    with PocketBaseClient(pocketbase_url, DEMO_EMAIL, DEMO_PASSWORD) as client:
        landed = _wait_for_writes(client, site.id, started, expected.events, expected.js_errors)
        if not landed:
            print("warning: not everything the visitors sent was in PocketBase after 60 s")
        period = Period(started, dt.datetime.now(dt.timezone.utc), local_timezone())
        info = SiteInfo(site.id, site.name, site.domain, site.tracking_id)
        report = read_report(client, info, period)
    render_report(report, Console(), limit=10)
    metrics = report.metrics
    rows = [
        ("sessions", expected.sessions, metrics.visitors),
        ("distinct visitors", expected.distinct_visitors, metrics.distinct_visitors),
        ("new visitors", expected.new_visitors, metrics.new_visitors),
        ("returning visitors", expected.returning_visitors, metrics.returning_visitors),
        ("page views", expected.page_views, metrics.page_views),
        ("bounced sessions", expected.bounced_sessions, metrics.bounced_sessions),
        ("engaged sessions", expected.engaged_sessions, metrics.engaged_sessions),
        ("js errors", expected.js_errors, metrics.js_errors),
    ]
    print("what the simulation sent vs what skopos report read back:")
    print(f"  {'':<20}{'sent':>8}{'report':>8}")
    for name, sent, read in rows:
        print(f"  {name:<20}{sent:>8}{read:>8}  {'ok' if sent == read else 'DIFFERENT'}")
    print(f"  bots sent {expected.bot_requests} requests: filtered out by the SDK, in no number")


def _wait_for_writes(
    client: PocketBaseClient,
    site_record: str,
    since: dt.datetime,
    events: int,
    js_errors: int,
    *,
    timeout: float = 60.0,
) -> bool:
    """Wait until PocketBase holds ``events`` events and ``js_errors`` error occurrences of
    the site since ``since``; the app's SDK writes in the background."""
    in_run = pb_filter("created >= {:since}", since=since)
    event_filter = pb_filter("session.website = {:s}", s=site_record) + " && " + in_run
    error_filter = pb_filter("website = {:s}", s=site_record) + " && " + in_run
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = client.list_records(
            "events", filter=event_filter, per_page=1, fields="id", with_total=True
        ).total_items
        errors = sum(
            int(record.get("count") or 0)
            for record in client.iter_records("js_errors", filter=error_filter, fields="count")
        )
        if stored >= events and errors >= js_errors:
            # The sessions' last touches (their ``updated``, so durations) follow within
            # a fraction of the compressed timeout.
            time.sleep(1.0)
            return True
        time.sleep(0.25)
    return False


def _stop(app: subprocess.Popen[bytes]) -> None:
    app.terminate()
    try:
        app.wait(10)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait(10)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_for_signal(app: subprocess.Popen[bytes] | None) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if app is not None and app.poll() is not None:
                print("the example app stopped", file=sys.stderr)
                return
    except KeyboardInterrupt:
        pass
