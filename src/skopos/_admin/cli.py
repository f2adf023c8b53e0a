"""The ``skopos`` command line: ``skopos setup`` and ``skopos demo``."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from skopos._admin.embedded import EmbeddedPocketBase, free_port
from skopos._admin.setup import SetupReport, run_setup
from skopos._exceptions import ConfigurationError, SkoposError
from skopos._pocketbase.client import PocketBaseClient
from skopos._version import __version__

__all__ = ["main"]

DEMO_EMAIL = "demo@skopos.local"
DEMO_PASSWORD = "skopos-demo-password"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skopos", description="Skopos for Python: server-side analytics into PocketBase."
    )
    parser.add_argument("--version", action="version", version=f"skopos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    setup = commands.add_parser(
        "setup",
        help="apply the Skopos schema to a PocketBase server (idempotent)",
        description=(
            "Create the collections, fields and indexes the SDK needs without touching"
            " anything else, enable the batch API, and optionally create a website."
        ),
    )
    setup.add_argument("--url", help="PocketBase URL [env SKOPOS_POCKETBASE_URL]")
    setup.add_argument("--email", help="superuser email [env SKOPOS_ADMIN_EMAIL]")
    setup.add_argument("--password", help="superuser password [env SKOPOS_ADMIN_PASSWORD]")
    setup.add_argument("--site-name", help="create (or find) a website with this name")
    setup.add_argument("--domain", help="the website's domain, e.g. example.com")
    setup.add_argument("--owner", metavar="EMAIL", help="link the website to this dashboard user")

    demo = commands.add_parser(
        "demo",
        help="run an embedded PocketBase with the Skopos schema and a demo website",
    )
    demo.add_argument("--dir", default=".skopos-demo", help="data directory [.skopos-demo]")
    demo.add_argument("--port", type=int, default=8090, help="PocketBase port [8090, or free]")
    demo.add_argument("--once", action="store_true", help="set up, print, stop (no serving)")
    demo.add_argument(
        "--app",
        metavar="SCRIPT",
        help="also run this example app (e.g. examples/fastapi_app/app.py) wired to the demo",
    )
    demo.add_argument("--app-port", type=int, default=8000, help="the app's port [8000, or free]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skopos`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "setup":
            return _setup(args)
        return _demo(args)
    except SkoposError as exc:
        print(f"skopos {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _option(value: str | None, env: str, what: str, *, secret: bool = False) -> str:
    value = value or os.environ.get(env)
    if value:
        return value
    if secret and sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    raise ConfigurationError(f"{what} is required (pass it or set {env})")


def _print_report(report: SetupReport) -> None:
    for line in report.lines():
        print(line)
    site = report.website
    if site is not None:
        state = "created" if site.created else "exists"
        print(f"website {site.name!r} ({site.domain}) {state}; tracking id: {site.tracking_id}")


def _setup(args: argparse.Namespace) -> int:
    url = _option(args.url, "SKOPOS_POCKETBASE_URL", "--url")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"--url must be an http(s) URL, got {url!r}")
    email = _option(args.email, "SKOPOS_ADMIN_EMAIL", "--email")
    password = _option(args.password, "SKOPOS_ADMIN_PASSWORD", "--password", secret=True)
    with PocketBaseClient(url, email, password) as client:
        report = run_setup(
            client, site_name=args.site_name, domain=args.domain, owner_email=args.owner
        )
    _print_report(report)
    return 0


def _demo(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir) / "pb_data"
    port = args.port if _port_is_free(args.port) else free_port()
    server = EmbeddedPocketBase(data_dir, email=DEMO_EMAIL, password=DEMO_PASSWORD, port=port)
    server.start()
    app: subprocess.Popen[bytes] | None = None
    try:
        with PocketBaseClient(server.url, DEMO_EMAIL, DEMO_PASSWORD) as client:
            report = run_setup(client, site_name="Skopos demo", domain="localhost")
        _print_report(report)
        print(f"PocketBase: {server.url}  (admin UI: {server.url}/_/)")
        print(f"superuser:  {DEMO_EMAIL} / {DEMO_PASSWORD}")
        if args.app:
            assert report.website is not None
            app, app_url = _start_app(
                args.app, args.app_port, server.url, report.website.tracking_id
            )
            print(f"example app: {app_url}  (click around; records appear in PocketBase)")
        if args.once:
            return 0
        print("Press Ctrl-C to stop.")
        _wait_for_signal(app)
        return 0
    finally:
        if app is not None:
            app.terminate()
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
        server.stop()


def _start_app(
    script: str, wanted_port: int, pocketbase_url: str, tracking_id: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Run an example app against the demo PocketBase; wait until it answers."""
    port = wanted_port if _port_is_free(wanted_port) else free_port()
    env = {
        **os.environ,
        "SKOPOS_POCKETBASE_URL": pocketbase_url,
        "SKOPOS_SITE_ID": tracking_id,
        "SKOPOS_ADMIN_EMAIL": DEMO_EMAIL,
        "SKOPOS_ADMIN_PASSWORD": DEMO_PASSWORD,
        "SKOPOS_JS_ERROR_BATCH_INTERVAL": "5",  # see errors within seconds, not minutes
        "PORT": str(port),
    }
    app = subprocess.Popen([sys.executable, script], env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and app.poll() is None:
        try:
            httpx.get(url, timeout=1)
            return app, url
        except httpx.HTTPError:
            time.sleep(0.1)
    app.kill()
    raise ConfigurationError(f"the example app {script} did not start on {url}")


def _port_is_free(port: int) -> bool:
    import socket

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
