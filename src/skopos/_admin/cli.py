"""The ``skopos`` command line: ``setup``, ``report``, ``doctor`` and ``demo``.

Every command takes its PocketBase and credentials from ``--url``, ``--email``,
``--password``, else ``SKOPOS_POCKETBASE_URL``, ``SKOPOS_ADMIN_EMAIL``,
``SKOPOS_ADMIN_PASSWORD`` (``--site`` else ``SKOPOS_SITE_ID``): an argument wins over the
environment. Errors are one line on stderr, never a traceback. Exit codes:

- 0: done (``doctor``: nothing is a problem; warnings allowed)
- 1: an error (a missing or invalid option, an unreachable server, wrong credentials, an
  unknown site...) or, for ``doctor``, a problem found
- 2: the command line itself is malformed (an unknown option, ``--limit x``: argparse)
- 130: interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from skopos._admin.demo import DEMO_EMAIL, DEMO_PASSWORD, run_demo
from skopos._admin.setup import run_setup
from skopos._exceptions import ConfigurationError, SkoposError
from skopos._pocketbase.client import PocketBaseClient
from skopos._version import __version__

__all__ = ["DEMO_EMAIL", "DEMO_PASSWORD", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="PocketBase URL [env SKOPOS_POCKETBASE_URL]")
    common.add_argument("--email", help="superuser email [env SKOPOS_ADMIN_EMAIL]")
    common.add_argument("--password", help="superuser password [env SKOPOS_ADMIN_PASSWORD]")
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skopos",
        description="Skopos for Python: server-side analytics into PocketBase.",
        epilog="Exit codes: 0 done, 1 error (doctor: a problem found), 2 usage, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"skopos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    connection = _connection_options()

    setup = commands.add_parser(
        "setup",
        parents=[connection],
        help="apply the Skopos schema to a PocketBase server (idempotent)",
        description=(
            "Create the collections, fields and indexes the SDK needs without touching"
            " anything else, enable the batch API, and optionally create a website."
        ),
    )
    setup.add_argument("--site-name", help="create (or find) a website with this name")
    setup.add_argument("--domain", help="the website's domain, e.g. example.com")
    setup.add_argument("--owner", metavar="EMAIL", help="link the website to this dashboard user")

    report = commands.add_parser(
        "report",
        parents=[connection],
        help="a site's numbers for a period, as the Skopos Dashboard computes them",
        description=(
            "Visitors, page views, bounce and engagement rates, durations, top pages,"
            " referrers, browsers, devices, countries, custom events and JS errors of one"
            " website, read from PocketBase page by page (bounded memory) and computed with"
            " the Skopos Dashboard's definitions."
        ),
    )
    report.add_argument("--site", help="the website's tracking id [env SKOPOS_SITE_ID]")
    when = report.add_mutually_exclusive_group()
    when.add_argument(
        "--last", metavar="SPAN", help="a rolling window up to now: 24h, 7d, 30d, 2w [7d]"
    )
    when.add_argument("--from", dest="start", metavar="DATE", help="first local day, YYYY-MM-DD")
    report.add_argument("--to", dest="end", metavar="DATE", help="last local day [today]")
    report.add_argument(
        "--tz", metavar="ZONE", help="time zone of the dates, e.g. Europe/Paris [this machine's]"
    )
    report.add_argument(
        "--limit", type=int, default=10, metavar="N", help="rows per list, 0 for all [10]"
    )
    report.add_argument("--json", action="store_true", help="print one JSON object (stable)")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")

    doctor = commands.add_parser(
        "doctor",
        parents=[connection],
        help="check PocketBase, the schema, a site and a running app; say how to fix problems",
        description=(
            "Checks, each ok / warning / problem with its fix: PocketBase reachable and its"
            " latency, credentials, version, schema, batch API, realtime, clock skew, the"
            " website of --site, and with --app-url a running app's /skopos.js and"
            " /api/event (a test event, deleted afterwards). Exit code 1 on a problem."
        ),
    )
    doctor.add_argument("--site", help="the website's tracking id [env SKOPOS_SITE_ID]")
    doctor.add_argument("--app-url", metavar="URL", help="a running app using Skopos to test")
    doctor.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for a change to arrive [15]"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")

    privacy = commands.add_parser(
        "privacy",
        parents=[connection],
        help="what is stored, how ids are built, what is scrubbed, who is contacted (nobody)",
        description=(
            "A privacy statement from the live configuration (SKOPOS_* variables) and"
            " PocketBase: what each record stores, how visitor ids are built, the salts' age"
            " and where they live, what is scrubbed, and the third parties contacted (none)."
        ),
    )
    privacy.add_argument("--site", help="the website's tracking id [env SKOPOS_SITE_ID]")
    privacy.add_argument("--json", action="store_true", help="print one JSON object")

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
    demo.add_argument(
        "--traffic",
        type=int,
        metavar="N",
        help="send N simulated visitors through the app's endpoint, then print the report",
    )
    demo.add_argument("--seed", type=int, default=1, help="seed of the simulated traffic [1]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skopos`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "setup":
            return _setup(args)
        if args.command == "report":
            return _report(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "privacy":
            return _privacy(args)
        return run_demo(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (SkoposError, OSError) as exc:
        _error(args.command, str(exc))
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, never a traceback for the operator
        _error(args.command, f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _error(command: str, message: str) -> None:
    print(f"skopos {command}: error: {' '.join(message.split())}", file=sys.stderr)


def _option(value: str | None, env: str, what: str, *, secret: bool = False) -> str:
    value = value or os.environ.get(env)
    if value:
        return value
    if secret and sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    raise ConfigurationError(f"{what} is required (pass it or set {env})")


def _connection(args: argparse.Namespace) -> tuple[str, str, str]:
    url = _option(args.url, "SKOPOS_POCKETBASE_URL", "--url")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"--url must be an http(s) URL, got {url!r}")
    email = _option(args.email, "SKOPOS_ADMIN_EMAIL", "--email")
    password = _option(args.password, "SKOPOS_ADMIN_PASSWORD", "--password", secret=True)
    return url, email, password


def _setup(args: argparse.Namespace) -> int:
    url, email, password = _connection(args)
    with PocketBaseClient(url, email, password) as client:
        report = run_setup(
            client, site_name=args.site_name, domain=args.domain, owner_email=args.owner
        )
    for line in report.summary():
        print(line)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from skopos._admin.console import progress_bar
    from skopos._admin.report import Period, find_site, local_timezone, read_report
    from skopos._admin.report import resolve_timezone as zone
    from skopos._admin.report_html import render_html
    from skopos._admin.report_render import render_report

    url, email, password = _connection(args)
    site_id = _option(args.site, "SKOPOS_SITE_ID", "--site")
    if args.end and not args.start:
        raise ConfigurationError("--to needs --from")
    if args.limit < 0:
        raise ConfigurationError("--limit must be 0 (all) or more")
    tz = zone(args.tz) if args.tz else local_timezone()
    period = (
        Period.between(args.start, args.end, tz)
        if args.start
        else Period.last(args.last or "7d", tz)
    )
    limit = args.limit or None
    with PocketBaseClient(url, email, password) as client:
        client.authenticate()
        site = find_site(client, site_id)
        with progress_bar("reading PocketBase", unit="sessions") as advance:
            report = read_report(client, site, period, progress=advance)
    if args.html:
        Path(args.html).write_text(render_html(report, limit=limit), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(limit=limit), indent=2, ensure_ascii=False))
    elif not args.html:
        render_report(report, Console(), limit=limit)
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from rich.console import Console

    from skopos._admin.console import print_checks
    from skopos._admin.doctor import DoctorOptions, exit_code, run_doctor

    url, email, password = _connection(args)
    site = args.site or os.environ.get("SKOPOS_SITE_ID") or None
    if args.app_url and not args.app_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"--app-url must be an http(s) URL, got {args.app_url!r}")
    options = DoctorOptions(
        url, email, password, site=site, app_url=args.app_url, timeout=args.timeout
    )
    console = Console(stderr=True)
    if args.json:
        checks = run_doctor(options)
        verdict = exit_code(checks)
        document = {
            "ok": verdict == 0,
            "problems": sum(c.status == "problem" for c in checks),
            "warnings": sum(c.status == "warning" for c in checks),
            "checks": [c.to_json() for c in checks],
        }
        print(json.dumps(document, indent=2))
        return verdict
    with console.status("checking…") as status:
        checks = run_doctor(options, on_check=lambda c: status.update(f"checked {c.name}…"))
    print_checks(checks, Console())
    return exit_code(checks)


def _privacy(args: argparse.Namespace) -> int:
    from skopos._admin.privacy import options_from_environment, privacy_statement
    from skopos._admin.privacy import render_statement as render

    url, email, password = _connection(args)
    site = args.site or os.environ.get("SKOPOS_SITE_ID") or None
    with PocketBaseClient(url, email, password) as client:
        statement = privacy_statement(client, options_from_environment(), site=site)
    print(json.dumps(statement, indent=2) if args.json else render(statement))
    return EXIT_OK
