"""The example apps of ``examples/`` as the end-to-end tests start them, and a Chromium that
records what it sent (used by ``tests/e2e``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from skopos._admin.setup import Website, create_website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.paths import ROOT
from tests._support.pocketbase_server import PocketBaseServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class ExampleSpec:
    """How an example is started: its entry file and the arguments after the interpreter."""

    entry: str
    args: tuple[str, ...] = ()


SPECS = {
    "fastapi_app": ExampleSpec("fastapi_app/app.py"),
    "flask_app": ExampleSpec("flask_app/app.py"),
    "django_site": ExampleSpec(
        "django_site/manage.py", ("runserver", "127.0.0.1:{port}", "--noreload")
    ),
}


@dataclass(frozen=True)
class RunningExample:
    """An example server and the website it tracks into."""

    name: str
    origin: str
    port: int
    website: Website
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def example_params() -> list[Any]:
    """One parameter per example; skipped, naming the file, while its entry file is missing."""
    return [
        pytest.param(
            name,
            id=name,
            marks=pytest.mark.skipif(
                not (EXAMPLES / spec.entry).is_file(),
                reason=f"examples/{spec.entry} does not exist (yet)",
            ),
        )
        for name, spec in SPECS.items()
    ]


@dataclass(frozen=True)
class DesktopChrome:
    """The identity the browser presents: a desktop Chrome of the real Chromium's version."""

    user_agent: str
    sec_ch_ua: str


class RecordingBrowser:
    """Chromium with a network log: afterwards, the headers it actually sent, beacons included.

    The NetLog (``--log-net-log``) is written by the network service itself, so it has the
    requests Playwright never reports: beacons sent from ``pagehide``, whose page is gone.
    """

    def __init__(self, browser: Browser, identity: DesktopChrome, netlog: Path) -> None:
        self.browser = browser
        self.identity = identity
        self.netlog = netlog

    def new_context(self) -> BrowserContext:
        return self.browser.new_context(
            user_agent=self.identity.user_agent,
            locale="en-US",
            extra_http_headers={"Sec-CH-UA": self.identity.sec_ch_ua},
        )

    def close(self) -> None:
        """Close the browser, which completes the network log."""
        self.browser.close()

    def sent(self, origin: str, request_line: str) -> list[dict[str, str]]:
        """Headers (lower-case names) of each request ``request_line`` sent to ``origin``.

        Read after ``close``. Each request's headers as they went on the wire are one event
        with the request line and a ``Host`` header.
        """
        host = "host: " + origin.removeprefix("http://")
        found: list[dict[str, str]] = []
        for line in self.netlog.read_text(encoding="utf-8", errors="replace").splitlines():
            if request_line not in line:
                continue
            try:
                params = json.loads(line.rstrip().rstrip(","))["params"]
            except (ValueError, KeyError, TypeError):
                continue
            headers = params.get("headers") if isinstance(params, dict) else None
            if not isinstance(headers, list) or not str(params.get("line", "")).startswith(
                request_line
            ):
                continue
            if any(header.lower() == host for header in headers):
                pairs = (str(header).split(": ", 1) for header in headers)
                found.append({name.lower(): value for name, value in pairs})
        return found


START_TIMEOUT = 45.0  # Django's first start on a loaded 2-core machine takes a few seconds
STOP_TIMEOUT = 10.0


def new_website(pb: PocketBaseClient, name: str, domain: str) -> Website:
    """Always a new website: ``ensure_website`` would return the earlier one of this domain."""
    return create_website(pb, name, domain)


def example_environment(
    pocketbase: PocketBaseServer, website: Website, port: int
) -> dict[str, str]:
    """What an example reads: its ``SKOPOS_*`` options (defaults otherwise) and ``PORT``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SKOPOS_")}
    env.update(
        SKOPOS_POCKETBASE_URL=pocketbase.url,
        SKOPOS_SITE_ID=website.tracking_id,
        SKOPOS_ADMIN_EMAIL=pocketbase.email,
        SKOPOS_ADMIN_PASSWORD=pocketbase.password,
        SKOPOS_REALTIME="false",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_example(
    name: str, pocketbase: PocketBaseServer, website: Website, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Example ``name`` as its README runs it, in a session of its own, output in ``log``."""
    spec = SPECS[name]
    argv = [sys.executable, str(EXAMPLES / spec.entry), *(a.format(port=port) for a in spec.args)]
    with log.open("wb") as output:
        # A session of its own, so stopping it also stops anything it spawned (reloaders).
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=example_environment(pocketbase, website, port),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_example(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process group the example was started in (its own)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        process.wait(timeout=STOP_TIMEOUT)


def wait_until_serving(process: subprocess.Popen[bytes], origin: str, log: Path) -> None:
    """Until the page answers 200 and the event endpoint 204.

    The Flask and Django integrations start the SDK on the first event request (it does not
    wait for PocketBase). Beacons arriving meanwhile wait for it and are then queued in
    whatever order their threads wake up, so a later page view could overtake an earlier
    one; the example counts as ready once that start is done. ``{}`` is no valid event: the
    SDK drops it, writing nothing.
    """
    deadline = time.monotonic() + START_TIMEOUT
    probes = [
        ("GET", "/", None, 200),
        ("POST", "/api/event", b"{}", 204),
    ]
    while probes:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"the example exited with {process.returncode} while starting:\n{tail}")
        method, path, body, status = probes[0]
        try:
            answer = httpx.request(
                method,
                origin + path,
                content=body,
                headers={"Content-Type": "text/plain"} if body is not None else None,
                timeout=5.0,
            )
            if answer.status_code == status:
                probes.pop(0)
                continue
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"the example did not answer {method} {path} with {status}:\n{tail}")
        time.sleep(0.1)
