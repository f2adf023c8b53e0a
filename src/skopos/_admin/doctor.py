"""``skopos doctor``: check everything between a host app and the dashboard, say how to fix it.

Each check ends ``ok``, ``warning`` or ``problem`` (or ``skipped`` when an earlier problem
makes it meaningless), with a one-line summary and, when not ok, the command or change that
fixes it. In order:

1. **pocketbase**: ``/api/health`` answers; its latency (median of three).
2. **credentials**: the superuser login works.
3. **version**: PocketBase's version, read from its admin UI (the API does not say it).
4. **schema**: missing collections, fields or indexes (``schema.plan_schema``, the plan
   ``skopos setup`` would apply), and conflicts it cannot fix.
5. **batch**: the batch API is on, with the limits the SDK wants.
6. **realtime**: subscribe to ``skopos_config``, create a throw-away record there, see the
   change arrive within the timeout, delete the record.
7. **clock**: this host's clock against PocketBase's (the probe record's ``created`` against
   the middle of the request that created it); the SDK's sessions compare both clocks.
8. **site** (``--site``): the website exists, is not archived; localhost tracking and the
   IP blacklist's size are reported.
9. **app** (``--app-url``): ``GET /skopos.js`` serves the script, and a test event posted to
   ``POST /api/event`` with a browser's headers reaches PocketBase; it is then deleted, with
   the session and visitor it created (the probe's user agent is unique, so they are its own).

Example::

    checks = run_doctor(DoctorOptions(url, email, password, site="TRACKING_ID"))
    sys.exit(exit_code(checks))
"""

from __future__ import annotations

import json
import re
import secrets
import statistics
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from skopos._admin.schema import load_schema, plan_schema
from skopos._admin.setup import BATCH_MAX_REQUESTS, BATCH_TIMEOUT, list_collections
from skopos._exceptions import (
    PocketBaseAuthError,
    PocketBaseError,
    PocketBaseNotFound,
    PocketBaseVersionError,
)
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date
from skopos._pocketbase.filter import pb_filter
from skopos._pocketbase.realtime import RealtimeEvent, RealtimeSubscription
from skopos._tracking.hosts import is_localhost
from skopos._tracking.site_rules import SiteRules

__all__ = ["Check", "DoctorOptions", "Status", "exit_code", "run_doctor"]

Status = Literal["ok", "warning", "problem", "skipped"]
PROBE_EVENT = "skopos-doctor"
_PROBE_KEY_PREFIX = "skopos-doctor-probe-"
_SLOW_MS = 250.0
_SKEW_WARNING = 2.0  # seconds
_SKEW_PROBLEM = 30.0
_UI_VERSION = re.compile(r"PocketBase v(\d+\.\d+\.\d+)")
_SETUP = "skopos setup --url URL --email EMAIL --password PASSWORD"


@dataclass(frozen=True)
class Check:
    """One check's verdict; ``fix`` says what to run or change when it is not ok.

    >>> Check("batch", "problem", "the batch API is off", "skopos setup").to_json()["status"]
    'problem'
    """

    name: str
    status: Status
    summary: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The check as it appears in ``skopos doctor --json``."""
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass(frozen=True)
class DoctorOptions:
    """What to check: a PocketBase and its superuser, optionally a site and a running app.

    >>> DoctorOptions("http://127.0.0.1:8090", "a@b.test", "secret", site="k3x9").timeout
    15.0
    """

    url: str
    email: str
    password: str
    site: str | None = None
    app_url: str | None = None
    timeout: float = 15.0


def exit_code(checks: list[Check]) -> int:
    """0 when nothing is a problem (warnings allowed), 1 otherwise.

    >>> exit_code([Check("x", "warning", "slow")]), exit_code([Check("x", "problem", "down")])
    (0, 1)
    """
    return 1 if any(check.status == "problem" for check in checks) else 0


class _Doctor:
    def __init__(self, options: DoctorOptions, report: Callable[[Check], None]) -> None:
        self.options = options
        self.report = report
        self.checks: list[Check] = []
        self.client = PocketBaseClient(
            options.url, options.email, options.password, timeout=min(10.0, options.timeout)
        )
        self.site_record: dict[str, Any] | None = None

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        self.report(check)
        return check

    def skip(self, *names: str, why: str) -> None:
        for name in names:
            self.add(Check(name, "skipped", why))

    def run(self) -> list[Check]:
        try:
            self._run()
        finally:
            self.client.close()
        return self.checks

    def _run(self) -> None:
        server_checks = ("credentials", "version", "schema", "batch", "realtime", "clock", "site")
        if not self.reachable():
            self.skip(*server_checks, why="PocketBase is not reachable")
            self.app(pocketbase_ok=False)
            return
        if not self.credentials():
            self.skip(*server_checks[1:], why="no superuser login")
            self.app(pocketbase_ok=False)
            return
        self.version()
        self.guarded("schema", self.schema)
        self.guarded("batch", self.batch)
        self.guarded("realtime", self.realtime_and_clock)
        self.guarded("site", self.site)
        self.app(pocketbase_ok=True)

    def guarded(self, name: str, check: Callable[[], None]) -> None:
        """Run a check; PocketBase failing under it is that check's problem, not a crash."""
        try:
            check()
        except PocketBaseError as exc:
            self.add(Check(name, "problem", _one_line(str(exc)), "check PocketBase's log"))

    # -- PocketBase -----------------------------------------------------------------------

    def reachable(self) -> bool:
        timings: list[float] = []
        for _ in range(3):
            started = time.perf_counter()
            if not self.client.health():
                self.add(
                    Check(
                        "pocketbase",
                        "problem",
                        f"cannot reach PocketBase at {self.options.url}",
                        "start PocketBase, or pass --url / set SKOPOS_POCKETBASE_URL",
                    )
                )
                return False
            timings.append((time.perf_counter() - started) * 1000)
        latency = statistics.median(timings)
        slow = latency > _SLOW_MS
        self.add(
            Check(
                "pocketbase",
                "warning" if slow else "ok",
                f"reachable at {self.options.url}, {latency:.1f} ms per request",
                "PocketBase answers slowly: check its host's load and network" if slow else "",
                {"latency_ms": round(latency, 2)},
            )
        )
        return True

    def credentials(self) -> bool:
        try:
            self.client.authenticate()
        except PocketBaseVersionError as exc:
            self.add(Check("credentials", "problem", _one_line(str(exc)), "upgrade PocketBase"))
            return False
        except PocketBaseNotFound as exc:
            self.add(
                Check(
                    "credentials", "problem", _one_line(str(exc)), "check --url: is it PocketBase?"
                )
            )
            return False
        except PocketBaseAuthError:
            self.add(
                Check(
                    "credentials",
                    "problem",
                    f"PocketBase refused the superuser login of {self.options.email!r}",
                    "check --email/--password (SKOPOS_ADMIN_EMAIL, SKOPOS_ADMIN_PASSWORD); create"
                    " a superuser with `pocketbase superuser upsert EMAIL PASSWORD`",
                )
            )
            return False
        self.add(Check("credentials", "ok", f"superuser {self.options.email} logged in"))
        return True

    def version(self) -> None:
        # Not an API call: the admin UI's bundle is the one place that names the version.
        version = None
        try:
            with httpx.Client(base_url=self.client.url, timeout=5.0) as http:
                page = http.get("/_/")
                asset = re.search(r'src="\./(assets/index-[^"]+\.js)"', page.text)
                if asset is not None:
                    found = _UI_VERSION.search(http.get(f"/_/{asset.group(1)}").text)
                    version = found.group(1) if found else None
        except httpx.HTTPError:
            version = None
        if version is None:
            self.add(
                Check(
                    "version",
                    "ok",
                    "PocketBase 0.23 or newer (the exact version is not exposed: admin UI off?)",
                )
            )
            return
        self.add(Check("version", "ok", f"PocketBase {version}", details={"version": version}))

    def schema(self) -> None:
        plan = plan_schema(load_schema(), list_collections(self.client))
        missing = [f"collection {name}" for name in plan.created] + [
            f"{name}: {what}" for name, additions in plan.added.items() for what in additions
        ]
        details = {"missing": missing, "conflicts": plan.conflicts}
        if plan.conflicts:
            self.add(
                Check(
                    "schema",
                    "problem",
                    "conflicts with what Skopos writes: " + "; ".join(plan.conflicts),
                    f"change or remove those fields by hand (PocketBase admin UI), then `{_SETUP}`",
                    details,
                )
            )
        elif missing:
            self.add(Check("schema", "problem", "missing " + "; ".join(missing), _SETUP, details))
        else:
            self.add(Check("schema", "ok", "every Skopos collection, field and index is there"))

    def batch(self) -> None:
        settings = self.client.request("GET", "/api/settings", params={"fields": "batch"})
        batch = settings.get("batch") or {}
        limits = {key: batch.get(key) for key in ("enabled", "maxRequests", "timeout")}
        if not batch.get("enabled"):
            self.add(Check("batch", "problem", "the batch API is off", _SETUP, limits))
            return
        max_requests, timeout = int(batch.get("maxRequests") or 0), int(batch.get("timeout") or 0)
        summary = f"on, up to {max_requests} requests and {timeout} s per transaction"
        if max_requests < BATCH_MAX_REQUESTS or timeout < BATCH_TIMEOUT:
            self.add(
                Check(
                    "batch",
                    "warning",
                    summary + f" (Skopos wants >= {BATCH_MAX_REQUESTS} and >= {BATCH_TIMEOUT} s)",
                    _SETUP,
                    limits,
                )
            )
        else:
            self.add(Check("batch", "ok", summary, details=limits))

    def realtime_and_clock(self) -> None:
        arrived = threading.Event()
        # Known before the create: the change may arrive before the create's answer does.
        key = _PROBE_KEY_PREFIX + secrets.token_hex(6)

        def on_event(event: RealtimeEvent) -> None:
            if event.action == "create" and event.record.get("key") == key:
                arrived.set()

        subscription = RealtimeSubscription(
            self.client, ["skopos_config/*"], on_event, name="skopos-doctor-realtime"
        )
        subscription.start()
        try:
            connected = subscription.wait_connected(self.options.timeout)
            before = time.time()
            record = self.client.create_record("skopos_config", {"key": key, "value": "probe"})
            after = time.time()
            waited = arrived.wait(self.options.timeout) if connected else False
            delay = time.time() - after
            self.client.delete_record("skopos_config", record["id"])
        finally:
            subscription.stop()
        if not connected:
            self.add(
                Check(
                    "realtime",
                    "problem",
                    f"could not subscribe to realtime changes within {self.options.timeout:g} s",
                    "allow long-lived GET /api/realtime (SSE) through any proxy in front of"
                    " PocketBase (nginx: proxy_buffering off; proxy_read_timeout 360s)",
                )
            )
        elif not waited:
            self.add(
                Check(
                    "realtime",
                    "problem",
                    f"subscribed, but a change did not arrive within {self.options.timeout:g} s",
                    "disable response buffering for /api/realtime in any proxy in front of"
                    " PocketBase (nginx: proxy_buffering off)",
                )
            )
        else:
            self.add(
                Check(
                    "realtime",
                    "ok",
                    f"a change arrived {delay * 1000:.0f} ms after it was made",
                    details={"delay_ms": round(delay * 1000, 1)},
                )
            )
        self.clock(record.get("created", ""), before, after)

    def clock(self, created: str, before: float, after: float) -> None:
        server = parse_pb_date(created)
        if server <= 0:
            self.add(Check("clock", "skipped", "PocketBase sent no creation time to compare"))
            return
        skew = server - (before + after) / 2
        margin = (after - before) / 2
        details = {"skew_s": round(skew, 3), "uncertainty_s": round(margin, 3)}
        summary = (
            f"PocketBase's clock is {abs(skew):.3f} s {'ahead of' if skew > 0 else 'behind'}"
            f" this host's (± {margin:.3f} s)"
        )
        fix = "synchronise both clocks with NTP (e.g. `timedatectl set-ntp true`)"
        if abs(skew) - margin > _SKEW_PROBLEM:
            self.add(
                Check(
                    "clock",
                    "problem",
                    summary + ": sessions would be split or merged wrongly",
                    fix,
                    details,
                )
            )
        elif abs(skew) - margin > _SKEW_WARNING:
            self.add(
                Check("clock", "warning", summary + ": durations shift by as much", fix, details)
            )
        else:
            self.add(Check("clock", "ok", summary, details=details))

    def site(self) -> None:
        if not self.options.site:
            self.add(
                Check("site", "skipped", "no website to check: pass --site or set SKOPOS_SITE_ID")
            )
            return
        record = self.client.first_record(
            "websites", pb_filter("trackingId = {:t}", t=self.options.site)
        )
        if record is None:
            self.add(
                Check(
                    "site",
                    "problem",
                    f"no website has the tracking id {self.options.site!r}",
                    "check SKOPOS_SITE_ID, or create the website: skopos setup ... --site-name"
                    " NAME --domain DOMAIN",
                )
            )
            return
        self.site_record = record
        rules = SiteRules.from_record(record)
        details = {
            "name": record.get("name"),
            "domain": record.get("domain"),
            "archived": rules.is_archived,
            "localhost_tracking": not rules.disable_localhost,
            "blacklist_entries": len(rules.blacklist),
            "blacklist_invalid": rules.blacklist.invalid_count,
        }
        about = (
            f"{record.get('name')!r} ({record.get('domain')}); localhost tracking"
            f" {'off' if rules.disable_localhost else 'on'}; IP blacklist"
            f" {len(rules.blacklist)} entries"
        )
        if rules.is_archived:
            self.add(
                Check(
                    "site",
                    "problem",
                    f"{about}; the website is ARCHIVED: every event for it is dropped",
                    "unarchive it in the Skopos Dashboard (or set isArchived to false in"
                    " PocketBase's admin UI)",
                    details,
                )
            )
        elif rules.blacklist.invalid_count:
            self.add(
                Check(
                    "site",
                    "warning",
                    f"{about}; {rules.blacklist.invalid_count} blacklist entries are invalid",
                    "correct the IP blacklist in the Skopos Dashboard (IPs or CIDR ranges)",
                    details,
                )
            )
        else:
            self.add(Check("site", "ok", about, details=details))

    # -- the app ------------------------------------------------------------------------

    def app(self, *, pocketbase_ok: bool) -> None:
        app_url = self.options.app_url
        if not app_url:
            return
        base = app_url.rstrip("/")
        with httpx.Client(timeout=min(10.0, self.options.timeout)) as http:
            try:
                script = http.get(base + "/skopos.js")
            except httpx.HTTPError as exc:
                self.add(
                    Check(
                        "app script",
                        "problem",
                        f"cannot reach the app at {base}: {type(exc).__name__}",
                        "start the app, or check --app-url",
                    )
                )
                self.skip("app event", why="the app is not reachable")
                return
            kind = script.headers.get("content-type", "")
            if script.status_code != 200 or "javascript" not in kind:
                self.add(
                    Check(
                        "app script",
                        "problem",
                        f"GET {base}/skopos.js answered {script.status_code} ({kind or 'no type'})",
                        "serve the script: the Skopos integration's routes (README: Framework"
                        " integrations)",
                    )
                )
            else:
                self.add(
                    Check(
                        "app script", "ok", f"{base}/skopos.js serves {len(script.content):,} bytes"
                    )
                )
            self.app_event(http, base, pocketbase_ok=pocketbase_ok)

    def app_event(self, http: httpx.Client, base: str, *, pocketbase_ok: bool) -> None:
        # Letters only: the SDK scrubs what looks like a token (hex, digits) from event data.
        token = "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))
        page = self._probe_page(base)
        payload = {
            "type": "custom",
            "name": PROBE_EVENT,
            "url": page,
            "customData": {"probe": token},
            "screenWidth": 1280,
            "screenHeight": 800,
            "language": "en-US",
        }
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(page))
        headers = _probe_headers(origin)
        try:
            answer = http.post(
                base + "/api/event",
                content=json.dumps(payload, separators=(",", ":")),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            self.add(
                Check(
                    "app event",
                    "problem",
                    f"POST {base}/api/event failed: {type(exc).__name__}",
                    "check the app's logs",
                )
            )
            return
        if answer.status_code >= 300:
            self.add(
                Check(
                    "app event",
                    "problem",
                    f"POST {base}/api/event answered {answer.status_code}",
                    "mount the Skopos endpoint (README: Framework integrations)",
                )
            )
            return
        if not pocketbase_ok:
            self.add(
                Check(
                    "app event",
                    "warning",
                    f"the app accepted a test event ({answer.status_code}); whether it reached"
                    " PocketBase cannot be checked",
                    "fix the PocketBase problems above",
                )
            )
            return
        self._find_and_delete(token, answer.status_code)

    def _probe_page(self, base: str) -> str:
        # A page of the site's own domain, as production pages are; the app's own address
        # for a local site (or when no site was given).
        record = self.site_record or {}
        domain = str(record.get("domain") or "").strip().lower()
        if domain and not is_localhost(domain):
            return f"https://{domain}/__skopos_doctor"
        return base + "/__skopos_doctor"

    def _find_and_delete(self, token: str, status: int) -> None:
        query = pb_filter(
            "eventName = {:name} && eventData.probe = {:token}", name=PROBE_EVENT, token=token
        )
        started = time.monotonic()
        deadline = started + self.options.timeout
        event = None
        while event is None and time.monotonic() < deadline:
            event = self.client.first_record("events", query)
            if event is None:
                time.sleep(0.2)
        if event is None:
            self.add(
                Check(
                    "app event",
                    "problem",
                    f"the app accepted a test event ({status}) but it did not reach PocketBase"
                    f" within {self.options.timeout:g} s",
                    "check the app's SKOPOS_SITE_ID (the --site checked above),"
                    " SKOPOS_POCKETBASE_URL and credentials, its log and sdk.stats().dropped",
                )
            )
            return
        waited = time.monotonic() - started
        self._delete_probe(event)
        self.add(
            Check(
                "app event",
                "ok",
                f"a test event went through the app into PocketBase in {waited:.1f} s"
                " (and was deleted)",
                details={"seconds": round(waited, 2)},
            )
        )

    def _delete_probe(self, event: dict[str, Any]) -> None:
        """Delete the probe's event, then its session and visitor if nothing else uses them."""
        self.client.delete_record("events", event["id"])
        session_id = event.get("session")
        if not session_id:
            return
        others = self.client.first_record("events", pb_filter("session = {:s}", s=session_id))
        if others is not None:
            return
        try:
            session = self.client.get_record("sessions", session_id)
        except PocketBaseNotFound:
            return
        self.client.delete_record("sessions", session_id)
        visitor = session.get("visitor")
        if (
            visitor
            and self.client.first_record("sessions", pb_filter("visitor = {:v}", v=visitor)) is None
        ):
            self.client.delete_record("visitors", visitor)


def _probe_headers(origin: str) -> dict[str, str]:
    """A Chrome's headers with a build number of its own: a visitor nobody else is."""
    build = f"{secrets.randbelow(9000) + 1000}.{secrets.randbelow(900) + 100}"
    return {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/131.0.{build} Safari/537.36",
        "Accept": "*/*",
        "Accept-Language": "en-US,en;q=0.9",
        "Content-Type": "text/plain;charset=UTF-8",
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "no-cors",
        "Sec-Fetch-Dest": "empty",
        "Sec-CH-UA": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        "Sec-CH-UA-Mobile": "?0",
        "Sec-CH-UA-Platform": '"Linux"',
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_doctor(
    options: DoctorOptions, *, on_check: Callable[[Check], None] | None = None
) -> list[Check]:
    """Run every check in order; ``on_check`` sees each as it completes. Never raises for
    what it finds: a failure is a ``problem`` check.

    Example::

        for check in run_doctor(options, on_check=lambda c: print(c.name, c.status)):
            if check.status == "problem":
                print("fix:", check.fix)
    """
    return _Doctor(options, on_check or (lambda check: None)).run()
